namespace KvmOvercommit.Engine.Tests.Experiment;

/// <summary>Collects progress and warnings (thread-safe) and lets a test act on a progress report.</summary>
public sealed class RecordingObserver : IOperationObserver
{
    readonly object _lock = new();
    public List<ProgressInfo> Progress { get; } = new();
    public List<string> Warnings { get; } = new();
    public Action<ProgressInfo>? OnProgress { get; set; }
    void IOperationObserver.Verbose(string message) { }
    void IOperationObserver.Warning(string message) { lock (_lock) Warnings.Add(message); }
    void IOperationObserver.Progress(ProgressInfo progress)
    {
        lock (_lock) Progress.Add(progress);
        OnProgress?.Invoke(progress);
    }
}
