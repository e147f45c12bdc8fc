using System.Collections.ObjectModel;
using System.Collections.Concurrent;
using System.Management.Automation;
using KvmOvercommit.Engine;

namespace KvmOvercommit;

/// <summary>
/// Base of every cmdlet in the module: owns the CancellationToken cancelled by Ctrl+C (StopProcessing), turns engine
/// errors into ErrorRecords, and lets engine work run off the pipeline thread while everything it writes
/// (objects, progress, verbose, warnings) is written on the pipeline thread, as PowerShell requires.
/// </summary>
public abstract class KvmCmdlet : PSCmdlet, IDisposable
{
    readonly CancellationTokenSource _cts = new();

    /// <summary>Cancelled when the user presses Ctrl+C or the pipeline stops.</summary>
    protected CancellationToken CancelToken => _cts.Token;

    /// <inheritdoc />
    protected override void StopProcessing() => _cts.Cancel();

    /// <summary>
    /// True for cmdlets whose engine work cleans up after cancellation: when the pipeline stops (Ctrl+C) while output
    /// or progress is being written, wait for the work to finish its cleanup instead of leaving it running.
    /// </summary>
    protected virtual bool WaitForWorkOnStop => false;

    /// <summary>Writes a non-terminating error for one item; processing of the others goes on.</summary>
    protected void WriteEngineError(KvmOcException e) => WriteError(ErrorMapping.ToErrorRecord(e));

    /// <summary>Stops the cmdlet: nothing can proceed.</summary>
    protected void ThrowEngineError(KvmOcException e) => ThrowTerminatingError(ErrorMapping.ToErrorRecord(e));

    /// <summary>
    /// Runs one engine operation for one pipeline item. Engine errors become non-terminating errors (or terminating
    /// ones with <paramref name="terminating"/>); Ctrl+C ends quietly.
    /// </summary>
    protected void Invoke(Action body, bool terminating = false)
    {
        try
        {
            body();
        }
        catch (OperationCanceledException) when (_cts.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
        catch (KvmOcException e)
        {
            if (terminating) ThrowEngineError(e); else WriteEngineError(e);
        }
    }

    /// <summary>
    /// Applies one of the engine's parameter rules (<see cref="Validation"/>, shared with kvmoc): a value it refuses
    /// stops the cmdlet with the rule's ErrorRecord (InvalidDuration, InvalidInterval, …) before anything runs.
    /// </summary>
    protected T Validate<T>(Func<T> rule)
    {
        try { return rule(); }
        catch (KvmOcException e) { ThrowEngineError(e); throw; }
    }

    /// <summary>How long a stopped cmdlet waits for its engine work to clean up.</summary>
    static readonly TimeSpan EngineCleanupTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Runs asynchronous engine work on the thread pool and pumps what it emits onto the pipeline thread.
    /// <paramref name="work"/> receives an observer (verbose/warning/progress) and an emit callback for output objects.
    /// </summary>
    protected void InvokeAsync(Func<IOperationObserver, Action<object>, CancellationToken, Task> work, bool terminating = false)
    {
        using var queue = new BlockingCollection<Action>();
        var observer = new QueueObserver(queue).Bind(this);
        var task = Task.Run(async () =>
        {
            try { await work(observer, o => queue.Add(() => Emit(o)), _cts.Token).ConfigureAwait(false); }
            finally { queue.CompleteAdding(); }
        });
        try
        {
            foreach (var action in queue.GetConsumingEnumerable())
                action();
        }
        catch
        {
            // Ctrl+C or a failed write on the pipeline thread: let the engine's finally blocks (which put host state
            // back, e.g. the autotuner's low exit rate) finish before the cmdlet ends and pwsh may exit.
            _cts.Cancel();
            // Work that cleans up after itself (stops guests, restores KSM) must finish before the pipeline stops;
            // anything else gets EngineCleanupTimeout.
            if (WaitForWorkOnStop) task.ContinueWith(_ => { }, TaskScheduler.Default).Wait();
            else try { task.Wait(EngineCleanupTimeout); } catch (AggregateException) { }
            throw;
        }
        Invoke(() => task.GetAwaiter().GetResult(), terminating);
    }

    /// <summary>
    /// Like <see cref="InvokeAsync"/>, and the work also gets a callback for per-item engine errors, written as
    /// non-terminating errors on the pipeline thread in order with the objects (e.g. one unreachable guest among many).
    /// </summary>
    protected void InvokeAsyncWithErrors(Func<IOperationObserver, Action<object>, Action<KvmOcException>, CancellationToken, Task> work, bool terminating = false)
    {
        InvokeAsync((observer, emit, ct) => work(observer, emit, e => emit(new PendingError(e)), ct), terminating);
    }

    /// <summary>Writes an object emitted by engine work; a <see cref="PendingError"/> becomes a non-terminating error instead.</summary>
    void Emit(object item)
    {
        if (item is PendingError p) WriteEngineError(p.Error);
        else WriteObject(item);
    }

    sealed record PendingError(KvmOcException Error);

    /// <summary>An observer that forwards what the engine says to the pipeline thread.</summary>
    protected IOperationObserver SyncObserver => new DirectObserver(this);

    sealed class QueueObserver(BlockingCollection<Action> queue) : IOperationObserver
    {
        KvmCmdlet? _owner;
        public void Verbose(string message) => Post(c => c.WriteVerbose(message));
        public void Warning(string message) => Post(c => c.WriteWarning(message));
        public void Progress(ProgressInfo p) => Post(c => c.WriteProgress(ToRecord(p)));
        void Post(Action<KvmCmdlet> a)
        {
            try { queue.Add(() => a(_owner!)); } catch (InvalidOperationException) { }
        }
        internal QueueObserver Bind(KvmCmdlet owner) { _owner = owner; return this; }
    }

    sealed class DirectObserver(KvmCmdlet owner) : IOperationObserver
    {
        public void Verbose(string message) => owner.WriteVerbose(message);
        public void Warning(string message) => owner.WriteWarning(message);
        public void Progress(ProgressInfo p) => owner.WriteProgress(ToRecord(p));
    }

    internal static ProgressRecord ToRecord(ProgressInfo p) => new(p.ActivityId, p.Activity, string.IsNullOrEmpty(p.Status) ? p.Activity : p.Status)
    {
        PercentComplete = p.PercentComplete,
        SecondsRemaining = p.SecondsRemaining,
        RecordType = p.Completed ? ProgressRecordType.Completed : ProgressRecordType.Processing,
    };

    /// <summary>Resolves a user path against the current PowerShell location (not the process working directory).</summary>
    protected string ResolvePath(string path) => SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);

    /// <summary>
    /// Resolves a path that may contain wildcards to the files it names; none found → ObjectNotFound. A path that names
    /// an existing file or folder as it is (e.g. `hx-[br].qcow2`, a FullName from the pipeline) is taken literally.
    /// </summary>
    protected IEnumerable<string> ResolveWildcardPath(string path)
    {
        if (!WildcardPattern.ContainsWildcardCharacters(path))
        {
            yield return ResolvePath(path);
            yield break;
        }
        string literal = ResolvePath(path);
        if (Engine.FileKind.Of(literal) != Engine.PathKind.Missing)
        {
            yield return literal;
            yield break;
        }
        Collection<string>? resolved = null;
        try
        {
            resolved = GetResolvedProviderPathFromPSPath(path, out _);
        }
        catch (ItemNotFoundException)
        {
        }
        if (resolved is null || resolved.Count == 0)
        {
            WriteEngineError(new KvmOcException(ErrorKind.NotFound, "PathNotFound", $"No file matches '{path}'.", path, "Check the path and the wildcard pattern."));
            yield break;
        }
        foreach (var r in resolved) yield return r;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _cts.Dispose();
        GC.SuppressFinalize(this);
    }
}
