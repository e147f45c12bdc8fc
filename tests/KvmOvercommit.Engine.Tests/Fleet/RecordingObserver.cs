namespace KvmOvercommit.Engine.Tests.Fleet;

/// <summary>Collects what the engine says, for assertions.</summary>
public sealed class RecordingObserver : IOperationObserver
{
    public List<string> Verbose { get; } = new();
    public List<string> Warnings { get; } = new();
    void IOperationObserver.Verbose(string message) => Verbose.Add(message);
    void IOperationObserver.Warning(string message) => Warnings.Add(message);
    void IOperationObserver.Progress(ProgressInfo progress) { }
}
