namespace KvmOvercommit.Engine;

/// <summary>Progress of a long-running engine operation, in the shape of PowerShell's ProgressRecord.</summary>
public sealed record ProgressInfo(string Activity, string Status, int PercentComplete = -1, int SecondsRemaining = -1, int ActivityId = 1, bool Completed = false);

/// <summary>
/// How the engine talks while it works. The module turns these into WriteVerbose/WriteWarning/WriteProgress on the
/// pipeline thread; the CLI writes them to stderr. The engine never references PowerShell.
/// </summary>
public interface IOperationObserver
{
    void Verbose(string message);
    void Warning(string message);
    void Progress(ProgressInfo progress);
}

/// <summary>An observer that ignores everything.</summary>
public sealed class NullObserver : IOperationObserver
{
    public static readonly NullObserver Instance = new();
    public void Verbose(string message) { }
    public void Warning(string message) { }
    public void Progress(ProgressInfo progress) { }
}
