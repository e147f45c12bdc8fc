using System.Collections.ObjectModel;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Management.Automation.Runspaces;
using System.Globalization;

namespace KvmOvercommit.Module.Tests.Infrastructure;

public static class RepoPaths
{
    public static string Root
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "KvmOvercommit.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
        }
    }

    /// <summary>Release or Debug: the configuration these tests were built in (bin/&lt;config&gt;/net10.0/).</summary>
    public static string Configuration => new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name;

    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static string Fixtures => Path.Combine(Root, "tests", "KvmOvercommit.Engine.Tests", "Fixtures");

    public static string Script(string name) => Path.Combine(AppContext.BaseDirectory, "Scripts", name);

    static readonly Lazy<string> Manifest = new(() =>
    {
        var env = Environment.GetEnvironmentVariable("KVMOC_MODULE");
        if (!string.IsNullOrEmpty(env))
        {
            if (!File.Exists(env)) throw new InvalidOperationException($"KVMOC_MODULE={env} does not exist");
            return env;
        }
        // The version comes from the source manifest, read by PowerShell itself.
        using var ps = PowerShell.Create(RunspaceMode.NewRunspace);
        var data = ps.AddCommand("Import-PowerShellDataFile").AddParameter("LiteralPath", Path.Combine(Root, "module", "KvmOvercommit.psd1")).Invoke<System.Collections.Hashtable>().Single();
        var path = Path.Combine(Root, "out", "KvmOvercommit", (string)data["ModuleVersion"]!, "KvmOvercommit.psd1");
        if (!File.Exists(path))
            throw new InvalidOperationException(InCi
                ? $"{path} is missing: CI packages the module before it runs the tests"
                : $"{path} is missing: run ./build.sh package first (or set KVMOC_MODULE to a packaged KvmOvercommit.psd1)");
        return path;
    });

    /// <summary>The packaged module these tests import: $KVMOC_MODULE, else out/KvmOvercommit/&lt;version&gt;/KvmOvercommit.psd1.</summary>
    public static string PackagedManifest => Manifest.Value;

    public static string PackageDir => Path.GetDirectoryName(PackagedManifest)!;
}

/// <summary>What one script run produced: output, the error stream, warnings, and a terminating error if one ended it.</summary>
public sealed record PsResult(List<PSObject> Output, List<ErrorRecord> Errors, List<string> Warnings, List<string> Verbose, ErrorRecord? Terminating, Exception? TerminatingException)
{
    public IEnumerable<ErrorRecord> AllErrors => Terminating is null ? Errors : Errors.Append(Terminating);

    public string Describe() =>
        string.Join("\n", AllErrors.Select(e => $"{e.FullyQualifiedErrorId} [{e.CategoryInfo.Category}] {e}"));

    /// <summary>Asserts that nothing went wrong.</summary>
    public PsResult Ok()
    {
        Assert.True(Terminating is null && Errors.Count == 0, "errors:\n" + Describe());
        return this;
    }
}

/// <summary>
/// A runspace (InitialSessionState.CreateDefault2: the default pwsh session) with the packaged module imported.
/// Each <see cref="Run"/> is one PowerShell pipeline in it; the session's variables persist between runs.
/// </summary>
public sealed class PwshSession : IDisposable
{
    public Runspace Runspace { get; }

    public PwshSession(PSHost? host = null)
    {
        var iss = InitialSessionState.CreateDefault2();
        Runspace = host is null ? RunspaceFactory.CreateRunspace(iss) : RunspaceFactory.CreateRunspace(host, iss);
        Runspace.Open();
        Run("Set-Location -LiteralPath $args[0]; $ErrorActionPreference = 'Continue'", args: [RepoPaths.Root]).Ok();
        var import = Run("Import-Module -Name $args[0] -ErrorAction Stop -PassThru", args: [RepoPaths.PackagedManifest]);
        import.Ok();
        Assert.Equal("KvmOvercommit", import.Output.Single().Properties["Name"].Value);
    }

    public void Set(string name, object? value) => Runspace.SessionStateProxy.SetVariable(name, value);
    public object? Get(string name) => Runspace.SessionStateProxy.GetVariable(name);

    /// <summary>Runs a script; a terminating error is caught and returned, not thrown (any other exception is a test failure).</summary>
    public PsResult Run(string script, object?[]? args = null, TimeSpan? timeout = null)
    {
        using var ps = PowerShell.Create();
        ps.Runspace = Runspace;
        ps.AddScript(script);
        foreach (var a in args ?? []) ps.AddArgument(a);
        return Invoke(ps, timeout ?? TimeSpan.FromMinutes(2));
    }

    public static PsResult Invoke(PowerShell ps, TimeSpan timeout)
    {
        var output = new PSDataCollection<PSObject>();
        ErrorRecord? terminating = null;
        Exception? exception = null;
        try
        {
            var async = ps.BeginInvoke<PSObject, PSObject>(null, output);
            if (!async.AsyncWaitHandle.WaitOne(timeout))
            {
                ps.Stop();
                throw new TimeoutException($"the script did not finish in {timeout}");
            }
            ps.EndInvoke(async);
        }
        catch (RuntimeException e)
        {
            exception = e;
            terminating = e.ErrorRecord;
        }
        return new PsResult(output.ToList(), ps.Streams.Error.ToList(), ps.Streams.Warning.Select(w => w.Message).ToList(),
            ps.Streams.Verbose.Select(v => v.Message).ToList(), terminating, exception);
    }

    public void Dispose() => Runspace.Dispose();
}

/// <summary>A runspace shared by one test class (xunit class fixture): runspace creation and import happen once.</summary>
public sealed class SessionFixture : IDisposable
{
    readonly Lazy<PwshSession> _session = new(() => new PwshSession());
    public PwshSession Session => _session.Value;
    public void Dispose() { if (_session.IsValueCreated) _session.Value.Dispose(); }
}

/// <summary>
/// A host whose PromptForChoice answers "No" (the -Confirm prompt), counting the prompts; everything else is a quiet
/// non-interactive host.
/// </summary>
public sealed class AnswerNoHost : PSHost
{
    public int Prompts => _ui.Prompts;
    readonly NoUi _ui = new();
    public override CultureInfo CurrentCulture => CultureInfo.InvariantCulture;
    public override CultureInfo CurrentUICulture => CultureInfo.InvariantCulture;
    public override Guid InstanceId { get; } = Guid.NewGuid();
    public override string Name => "AnswerNoHost";
    public override PSHostUserInterface UI => _ui;
    public override Version Version => new(1, 0);
    public override void EnterNestedPrompt() => throw new NotSupportedException();
    public override void ExitNestedPrompt() => throw new NotSupportedException();
    public override void NotifyBeginApplication() { }
    public override void NotifyEndApplication() { }
    public override void SetShouldExit(int exitCode) { }

    sealed class NoUi : PSHostUserInterface
    {
        public int Prompts;
        public override PSHostRawUserInterface? RawUI => null;
        public override int PromptForChoice(string caption, string message, Collection<ChoiceDescription> choices, int defaultChoice)
        {
            Interlocked.Increment(ref Prompts);
            var no = choices.ToList().FindIndex(c => c.Label.Replace("&", "").StartsWith("No", StringComparison.OrdinalIgnoreCase) && !c.Label.Contains("All", StringComparison.OrdinalIgnoreCase));
            return no >= 0 ? no : throw new InvalidOperationException($"no 'No' among {string.Join(", ", choices.Select(c => c.Label))}");
        }
        public override Dictionary<string, PSObject> Prompt(string caption, string message, Collection<FieldDescription> descriptions) => throw new InvalidOperationException($"unexpected prompt: {message}");
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) => throw new NotSupportedException();
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName, PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options) => throw new NotSupportedException();
        public override string ReadLine() => throw new InvalidOperationException("unexpected ReadLine");
        public override System.Security.SecureString ReadLineAsSecureString() => throw new NotSupportedException();
        public override void Write(string value) { }
        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) { }
        public override void WriteDebugLine(string message) { }
        public override void WriteErrorLine(string value) { }
        public override void WriteLine(string value) { }
        public override void WriteProgress(long sourceId, ProgressRecord record) { }
        public override void WriteVerboseLine(string message) { }
        public override void WriteWarningLine(string message) { }
    }
}

/// <summary>Ctrl+C in a hosted runspace: BeginInvoke, wait until the pipeline is under way, then PowerShell.Stop().</summary>
public static class CtrlC
{
    /// <summary>Runs <paramref name="script"/>, waits until <paramref name="ready"/> holds (or the output has
    /// <paramref name="outputs"/> objects), stops it and returns how long Stop() took, the output, and the state.</summary>
    public static (TimeSpan StopTook, List<PSObject> Output, PSInvocationState State, List<ErrorRecord> Errors) StopWhen(
        PwshSession s, string script, int outputs = 1, Func<bool>? ready = null, TimeSpan? within = null)
    {
        using var ps = PowerShell.Create();
        ps.Runspace = s.Runspace;
        ps.AddScript(script);
        var output = new PSDataCollection<PSObject>();
        var async = ps.BeginInvoke<PSObject, PSObject>(null, output);
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(60));
        while (DateTime.UtcNow < deadline && !(ready?.Invoke() ?? output.Count >= outputs))
        {
            if (async.IsCompleted) break;
            Thread.Sleep(50);
        }
        // (PSDataCollection's enumerator blocks while the pipeline runs: read the errors only once it has ended.)
        if (async.IsCompleted) Assert.Fail($"'{script}' ended before it was stopped: {string.Join("; ", ps.Streams.Error)}");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        // Off the test thread (xunit's synchronization context), with a limit so that a hang fails instead of blocking the run.
        var stop = Task.Run(ps.Stop);
        var stopped = stop.Wait(TimeSpan.FromSeconds(30));
        sw.Stop();
        Assert.True(stopped, $"Stop() did not return in 30 s for '{script}'");
        try { ps.EndInvoke(async); } catch (PipelineStoppedException) { } catch (RuntimeException) { }
        return (sw.Elapsed, output.ReadAll().ToList(), ps.InvocationStateInfo.State, ps.Streams.Error.ReadAll().ToList());
    }
}
