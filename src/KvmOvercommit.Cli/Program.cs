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
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error, watchStdout: true);

    /// <summary>Parses and runs one command line; the exit code (2 for a usage error, with nothing done).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) => Run(args, stdout, stderr, watchStdout: false);

    /// <summary>As <see cref="Run(string[], TextWriter, TextWriter)"/>, cancelled by <paramref name="cancel"/> (tests: a command that would run on).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancel) => Run(args, stdout, stderr, watchStdout: false, cancel);

    static int Run(string[] args, TextWriter stdout, TextWriter stderr, bool watchStdout, CancellationToken cancel = default)
    {
        var ctx = new CliContext(stdout, stderr) { WatchStdout = watchStdout, External = cancel };
        var root = BuildRoot(ctx);
        // No response files (a path may start with '@') and no bundling of short options ("-vb" is a typo, not -v -b).
        var parse = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null, EnablePosixBundling = false });
        bool helpOrVersion = parse.Action is System.CommandLine.Help.HelpAction
            || root.Options.OfType<VersionOption>().Any(v => parse.GetResult(v) is not null);
        if (!helpOrVersion)
        {
            var usage = CliUsage.Check(parse);
            if (usage.Count > 0)
            {
                foreach (var e in usage) stderr.WriteLine(ctx.FormatError(e));
                return 2;
            }
        }
        // ProcessTerminationTimeout = null: CliStop handles SIGINT/SIGTERM (System.CommandLine's handler threw a stack trace on a second signal).
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, ProcessTerminationTimeout = null });
    }

    /// <summary>The whole command tree (tests walk it: help, generated hostile input).</summary>
    public static RootCommand BuildRoot(TextWriter stdout, TextWriter stderr) => BuildRoot(new CliContext(stdout, stderr));

    static RootCommand BuildRoot(CliContext ctx)
    {
        var root = new RootCommand("kvmoc — KVM memory, CPU and disk overcommit experiments (the KvmOvercommit engine without PowerShell).");
        root.Options.Add(CliGlobal.Json);
        root.Options.Add(CliGlobal.Verbose);
        foreach (var provider in Providers())
            foreach (var command in provider.Commands(ctx))
                root.Subcommands.Add(command);
        ctx.Text = CliText.For(root);
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
