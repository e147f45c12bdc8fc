using System.CommandLine;

namespace KvmOvercommit.Cli;

/// <summary>
/// kvmoc: the engine's operations for hosts without pwsh. Each area contributes its commands through an
/// ICliCommandProvider in its own file, listed in <see cref="Providers"/>. A list, not reflection: kvmoc is compiled
/// ahead of time (Native AOT), where the trimmer removes what nothing names; CliProviderTests fails when a provider
/// class is missing from the list.
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
        var ctx = new CliContext(stdout, stderr);
        foreach (var provider in Providers())
            foreach (var command in provider.Commands(ctx))
                root.Subcommands.Add(command);
        return root;
    }

    /// <summary>Every area's provider, in the order of their class names (the order of `kvmoc --help`).</summary>
    internal static ICliCommandProvider[] Providers() =>
        new ICliCommandProvider[] { new ExperimentCli(), new FleetCli(), new GuestOpsCli(), new GuestsCli(), new HostCli(), new KsmCli(), new MemoryCli(), new QcowCli() };
}

/// <summary>One area's contribution to the kvmoc command tree (e.g. `ksm …`, `qcow …`).</summary>
public interface ICliCommandProvider
{
    IEnumerable<Command> Commands(CliContext ctx);
}
