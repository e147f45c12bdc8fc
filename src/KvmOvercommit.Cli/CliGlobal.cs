using System.CommandLine;
using KvmOvercommit.Engine;

namespace KvmOvercommit.Cli;

/// <summary>Options every subcommand accepts.</summary>
public static class CliGlobal
{
    public static readonly Option<bool> Json = new("--json") { Description = "Machine output: JSON whose property names are those of the PowerShell objects.", Recursive = true };
    public static readonly Option<bool> Verbose = new("--verbose", "-v") { Description = "Write what the engine does (QEMU command lines, sysfs writes) to stderr.", Recursive = true };
}

/// <summary>What a command needs to talk to the user.</summary>
public sealed class CliContext(TextWriter stdout, TextWriter stderr)
{
    public TextWriter Out { get; } = stdout;
    public TextWriter Err { get; } = stderr;

    /// <summary>The engine's PowerShell names rewritten into kvmoc's (set once the command tree is built).</summary>
    public CliText Text { get; internal set; } = null!;

    /// <summary>True when Out is the process's standard output (kvmoc itself, not a test): a closed pipe on fd 1 then stops streaming commands.</summary>
    public bool WatchStdout { get; internal set; }

    /// <summary>Cancels a running command from outside (tests); Ctrl+C and SIGTERM are handled by <see cref="CliStop"/>.</summary>
    public CancellationToken External { get; internal set; }

    /// <summary>
    /// Wraps a command body: engine errors become one stderr line "ErrorId: message" (plus the hint) and a non-zero
    /// exit code; Ctrl+C exits 130, SIGTERM 143, a closed standard output 141, after the command's own cleanup (a second
    /// signal waits for it, a third exits at once); nothing ever prints a .NET stack trace.
    /// </summary>
    public void SetAction(Command command, Func<ParseResult, CliRun, CancellationToken, Task> body)
    {
        command.SetAction(async (parse, ct) =>
        {
            var run = new CliRun(this, parse.GetValue(CliGlobal.Json), parse.GetValue(CliGlobal.Verbose));
            using var stop = new CliStop(Err, WatchStdout);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, stop.Token, External);
            try
            {
                await body(parse, run, linked.Token).ConfigureAwait(false);
                // A command that treats a signal as its normal end (the autotuner) keeps its own exit code; lost output does not.
                return stop.Reason == CliStopReason.OutputClosed ? stop.ExitCode : run.ExitCode;
            }
            catch (OperationCanceledException) when (linked.IsCancellationRequested)
            {
                return stop.Reason != CliStopReason.None ? stop.ExitCode : 130;
            }
            catch (KvmOcException e)
            {
                Err.WriteLine(FormatError(e));
                return stop.Reason != CliStopReason.None ? stop.ExitCode : ExitCode(e.Kind);
            }
            catch (Exception e)
            {
                var (kind, hint) = KvmOcException.Classify(e);
                Err.WriteLine($"Unexpected: {e.GetType().Name}: {e.Message}" + (hint is null ? "" : $" Hint: {hint}"));
                return ExitCode(kind) == 1 ? 70 : ExitCode(kind);
            }
        });
    }

    /// <summary>One stderr line "ErrorId: message Hint: hint", in kvmoc's names.</summary>
    public string FormatError(KvmOcException e) => FormatError(e, Text);

    /// <summary>One stderr line "ErrorId: message Hint: hint"; with <paramref name="text"/>, PowerShell's names become kvmoc's.</summary>
    public static string FormatError(KvmOcException e, CliText? text = null)
    {
        var line = $"{e.ErrorId}: {text?.Rewrite(e.Message) ?? e.Message}";
        if (e.Hint is not null) line += $" Hint: {text?.Rewrite(e.Hint) ?? e.Hint}";
        return line.Replace('\n', ' ').Replace('\r', ' ');
    }

    /// <summary>Exit codes by error kind (sysexits-like); 0 is success, 1 a non-terminating error on some item.</summary>
    public static int ExitCode(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidArgument => 2,
        ErrorKind.NotFound => 3,
        ErrorKind.PermissionDenied => 4,
        ErrorKind.ResourceExists => 5,
        ErrorKind.ResourceBusy => 6,
        ErrorKind.InvalidData => 7,
        ErrorKind.NotInstalled => 8,
        ErrorKind.Timeout => 9,
        ErrorKind.ConnectionError => 10,
        ErrorKind.InvalidOperation => 11,
        _ => 1,
    };
}

/// <summary>One invocation: output mode, the observer, and per-item errors that do not stop the command.</summary>
public sealed class CliRun(CliContext ctx, bool json, bool verbose) : IOperationObserver
{
    readonly List<object> _buffer = new();

    public bool Json { get; } = json;
    public bool IsVerbose { get; } = verbose;
    public int ExitCode { get; private set; }
    public TextWriter Out => ctx.Out;
    public TextWriter Err => ctx.Err;

    public void Verbose(string message) { if (IsVerbose) ctx.Err.WriteLine($"VERBOSE: {message}"); }
    public void Warning(string message) => ctx.Err.WriteLine($"WARNING: {ctx.Text.Rewrite(message)}");

    /// <summary>PowerShell's names in an engine text, rewritten into kvmoc's.</summary>
    public string Rewrite(string text) => ctx.Text.Rewrite(text);
    public void Progress(ProgressInfo progress) { if (IsVerbose && !progress.Completed) ctx.Err.WriteLine($"PROGRESS: {progress.Activity}: {progress.Status}"); }

    /// <summary>A non-terminating error for one item: reported, and the exit code becomes non-zero.</summary>
    public void Error(KvmOcException e)
    {
        ctx.Err.WriteLine(ctx.FormatError(e));
        if (ExitCode == 0) ExitCode = CliContext.ExitCode(e.Kind);
    }

    /// <summary>Writes results: JSON (one object, or an array when several) or a table.</summary>
    public void WriteResults<T>(IEnumerable<T> items, params string[] tableColumns) where T : notnull
    {
        var list = items.Cast<object>().ToList();
        if (Json) Out.WriteLine(CliOutput.ToJson(list.Count == 1 ? list[0] : list));
        else if (list.Count == 1 && tableColumns.Length == 0) CliOutput.WriteList(Out, list[0]);
        else CliOutput.WriteTable(Out, list, tableColumns);
    }

    /// <summary>Streams one result: one JSON object per line with --json, else one table row (header first).</summary>
    public void Stream(object item, params string[] tableColumns)
    {
        if (Json) { Out.WriteLine(CliOutput.ToJson(item, indented: false)); Out.Flush(); return; }
        bool header = _buffer.Count == 0;
        _buffer.Add(item);
        CliOutput.WriteTable(Out, new[] { item }, tableColumns, header);
        Out.Flush();
    }
}
