using System.CommandLine;
using System.Reflection;

namespace KvmOvercommit.Cli;

/// <summary>
/// kvmoc: the engine's operations for hosts without pwsh. Each area contributes its commands through an
/// ICliCommandProvider in its own file; they are discovered here, so areas never edit this file.
/// </summary>
public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = BuildRoot(stdout, stderr);
        var parse = root.Parse(args);
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
    }

    public static RootCommand BuildRoot(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("kvmoc — KVM memory, CPU and disk overcommit experiments (the KvmOvercommit engine without PowerShell).");
        root.Options.Add(CliGlobal.Json);
        root.Options.Add(CliGlobal.Verbose);
        var providers = typeof(Program).Assembly.GetTypes()
            .Where(t => typeof(ICliCommandProvider).IsAssignableFrom(t) && !t.IsAbstract && !t.IsInterface)
            .Select(t => (ICliCommandProvider)Activator.CreateInstance(t)!)
            .OrderBy(p => p.GetType().Name, StringComparer.Ordinal);
        var ctx = new CliContext(stdout, stderr);
        foreach (var provider in providers)
            foreach (var command in provider.Commands(ctx))
                root.Subcommands.Add(command);
        return root;
    }
}

/// <summary>One area's contribution to the kvmoc command tree (e.g. `ksm …`, `qcow …`).</summary>
public interface ICliCommandProvider
{
    IEnumerable<Command> Commands(CliContext ctx);
}
