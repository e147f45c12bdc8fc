using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>An asynchronous QMP event (e.g. SHUTDOWN, POWERDOWN, BALLOON_CHANGE) as QEMU sent it.</summary>
public sealed class QmpEvent
{
    /// <summary>The event name, e.g. "SHUTDOWN".</summary>
    public string Event { get; set; } = "";

    /// <summary>The event's data object (a JSON object; Undefined when QEMU sent none).</summary>
    public JsonElement Data { get; set; }

    /// <summary>When QEMU says the event happened (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
}

/// <summary>
/// A small asynchronous client of the QEMU Machine Protocol over a unix socket: reads the greeting, negotiates
/// capabilities, executes commands (answers matched by id), collects asynchronous events. Errors QEMU reports become
/// <see cref="KvmOcException"/> carrying QMP's error class and description; a closed connection is ConnectionError;
/// an unanswered command is Timeout.
/// </summary>
public sealed class QmpClient : IAsyncDisposable, IDisposable
{
    readonly Socket _socket;
    readonly NetworkStream _stream;
    readonly SemaphoreSlim _writeLock = new(1, 1);
    readonly object _gate = new();
    readonly Dictionary<string, TaskCompletionSource<JsonElement>> _pending = new();
    readonly List<QmpEvent> _events = new();
    readonly List<(string Name, TaskCompletionSource<QmpEvent> Tcs)> _eventWaiters = new();
    readonly TaskCompletionSource<JsonElement> _greeting = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly CancellationTokenSource _readCts = new();
    Task? _reader;
    long _nextId;
    Exception? _closeReason;

    QmpClient(Socket socket, string socketPath)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        SocketPath = socketPath;
    }

    /// <summary>The unix socket this client talks to.</summary>
    public string SocketPath { get; }

    /// <summary>How long <see cref="ExecuteAsync"/> waits for an answer before it fails with Timeout.</summary>
    public TimeSpan CommandTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>QEMU's version from the greeting, e.g. "7.2.22".</summary>
    public string QemuVersion { get; private set; } = "";

    /// <summary>Completes when QEMU closes the connection (e.g. after quit or when the process exits).</summary>
    public Task Closed => _closed.Task;

    /// <summary>Every asynchronous event received so far, oldest first.</summary>
    public IReadOnlyList<QmpEvent> Events
    {
        get { lock (_gate) return _events.ToArray(); }
    }

    /// <summary>
    /// Connects to a QMP socket, reads the greeting and sends qmp_capabilities. Retries while the socket refuses
    /// connections (and, with <paramref name="waitForSocket"/>, while it does not exist yet: a guest being started),
    /// until <paramref name="connectTimeout"/> (default 5 s) has passed. Without <paramref name="waitForSocket"/> a missing
    /// socket is NotFound (QmpSocketMissing) at once. A socket the caller may not connect to is PermissionDenied
    /// (QmpPermissionDenied). A socket busy with another client (QEMU serves one at a time and never greets the next
    /// one until the first leaves) is Timeout (QmpTimeout) when the greeting does not come in time.
    /// </summary>
    public static async Task<QmpClient> ConnectAsync(string socketPath, TimeSpan? connectTimeout = null, CancellationToken cancellationToken = default, bool waitForSocket = true)
    {
        var deadline = DateTime.UtcNow + (connectTimeout ?? TimeSpan.FromSeconds(5));
        Socket socket;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            bool missing = FileKind.Of(socketPath) == PathKind.Missing;
            if (missing && !waitForSocket)
                throw Missing(socketPath);
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
                break;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.AccessDenied || e.ErrorCode is Errno.EACCES or Errno.EPERM)
            {
                socket.Dispose();
                throw new KvmOcException(ErrorKind.PermissionDenied, "QmpPermissionDenied", $"Permission denied on the QMP socket '{socketPath}'.", socketPath,
                    "The guest belongs to another user: run as root (sudo pwsh, or sudo kvmoc), or as the user who started it.", e);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.ConnectionRefused or SocketError.TryAgain || e.ErrorCode == Errno.ENOENT)
            {
                socket.Dispose();
                // .NET reports a unix socket path that does not exist as "Cannot assign requested address": say what it is.
                bool gone = FileKind.Of(socketPath) == PathKind.Missing;
                if (gone && !waitForSocket) throw Missing(socketPath);
                if (DateTime.UtcNow >= deadline)
                    throw gone
                        ? new KvmOcException(ErrorKind.NotFound, "QmpSocketMissing", $"The QMP socket '{socketPath}' did not appear within {(connectTimeout ?? TimeSpan.FromSeconds(5)).TotalSeconds:0.#} s.", socketPath,
                            "Is the guest running? Its QMP socket is in its run directory (qmp.sock).", e)
                        : new KvmOcException(ErrorKind.ConnectionError, "QmpConnectFailed", $"Cannot connect to the QMP socket '{socketPath}': {e.Message}", socketPath,
                            "Is the guest running? Its QMP socket is in its run directory (qmp.sock).", e);
                await Task.Delay(50, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
            {
                socket.Dispose();
                throw KvmOcException.FromIo(e, "QmpConnectFailed", $"Cannot connect to the QMP socket '{socketPath}'", socketPath);
            }
        }

        var client = new QmpClient(socket, socketPath);
        try
        {
            client._reader = Task.Run(client.ReadLoopAsync);
            var remaining = deadline - DateTime.UtcNow;
            if (remaining < TimeSpan.FromSeconds(2)) remaining = TimeSpan.FromSeconds(2);
            var greeting = await WaitAsync(client._greeting.Task, remaining, socketPath, "QMP greeting", cancellationToken).ConfigureAwait(false);
            if (greeting.TryGetProperty("QMP", out var qmp) && qmp.TryGetProperty("version", out var v) && v.TryGetProperty("qemu", out var q))
                client.QemuVersion = $"{q.GetProperty("major").GetInt32()}.{q.GetProperty("minor").GetInt32()}.{q.GetProperty("micro").GetInt32()}";
            await client.ExecuteAsync("qmp_capabilities", null, cancellationToken).ConfigureAwait(false);
            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    static KvmOcException Missing(string socketPath) => new(ErrorKind.NotFound, "QmpSocketMissing",
        $"The QMP socket '{socketPath}' does not exist.", socketPath,
        "The guest is not running, or its QMP socket was deleted (Get-KvmGuest lists what runs; Stop-KvmGuest ends a guest without a QMP socket with SIGTERM).");

    /// <summary>One QMP command as UTF-8 JSON: {"execute":…,"id":…,"arguments":{…}}.</summary>
    internal static byte[] Message(string command, string id, JsonObject? arguments)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(128);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("execute", command);
            w.WriteString("id", id);
            if (arguments is not null) { w.WritePropertyName("arguments"); arguments.WriteTo(w); }
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Executes a QMP command and returns its "return" value. <paramref name="arguments"/> is the command's
    /// "arguments" object (e.g. <c>new JsonObject { ["value"] = bytes }</c>), written as it is: no reflection, so kvmoc
    /// compiled ahead of time sends the same bytes. A QMP error becomes a KvmOcException
    /// whose ErrorId is "Qmp" + the error class (e.g. QmpCommandNotFound) and whose message is QEMU's description.
    /// </summary>
    public async Task<JsonElement> ExecuteAsync(string command, JsonObject? arguments = null, CancellationToken cancellationToken = default)
    {
        var id = "kvmoc-" + Interlocked.Increment(ref _nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var tcs = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (_closeReason is not null) throw Closedexception(command);
            _pending[id] = tcs;
        }
        try
        {
            var bytes = Message(command, id, arguments);
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
                await _stream.WriteAsync("\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
                await _stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                throw new KvmOcException(ErrorKind.ConnectionError, "QmpConnectionClosed", $"QMP connection to '{SocketPath}' failed while sending '{command}': {e.Message}", SocketPath, null, e);
            }
            finally
            {
                _writeLock.Release();
            }
            var response = await WaitAsync(tcs.Task, CommandTimeout, SocketPath, $"answer to '{command}'", cancellationToken).ConfigureAwait(false);
            if (response.TryGetProperty("error", out var error))
            {
                var cls = error.TryGetProperty("class", out var c) ? c.GetString() ?? "GenericError" : "GenericError";
                var desc = error.TryGetProperty("desc", out var d) ? d.GetString() ?? "" : "";
                throw new KvmOcException(KindOf(cls), "Qmp" + cls, $"QMP '{command}' failed: {desc}", SocketPath);
            }
            return response.TryGetProperty("return", out var ret) ? ret.Clone() : default;
        }
        finally
        {
            lock (_gate) _pending.Remove(id);
        }
    }

    /// <summary>
    /// Waits for the next event called <paramref name="eventName"/>. With <paramref name="includePast"/> an event
    /// already received counts too. Fails with Timeout after <paramref name="timeout"/>, with ConnectionError when
    /// the connection closes first.
    /// </summary>
    public Task<QmpEvent> WaitForEventAsync(string eventName, TimeSpan timeout, bool includePast = false, CancellationToken cancellationToken = default)
    {
        var tcs = new TaskCompletionSource<QmpEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (includePast)
            {
                var past = _events.FindLast(e => e.Event == eventName);
                if (past is not null) return Task.FromResult(past);
            }
            if (_closeReason is not null) return Task.FromException<QmpEvent>(Closedexception($"waiting for {eventName}"));
            _eventWaiters.Add((eventName, tcs));
        }
        return WaitAsync(tcs.Task, timeout, SocketPath, $"QMP event {eventName}", cancellationToken);
    }

    static ErrorKind KindOf(string qmpClass) => qmpClass switch
    {
        "CommandNotFound" => ErrorKind.InvalidOperation,
        "DeviceNotFound" => ErrorKind.NotFound,
        "DeviceNotActive" => ErrorKind.InvalidOperation,
        "KVMMissingCap" => ErrorKind.NotInstalled,
        _ => ErrorKind.InvalidOperation,
    };

    KvmOcException Closedexception(string what) => new(ErrorKind.ConnectionError, "QmpConnectionClosed",
        $"The QMP connection to '{SocketPath}' is closed ({what}): {_closeReason?.Message ?? "closed"}", SocketPath, "The guest's QEMU process has probably exited.", _closeReason);

    static async Task<T> WaitAsync<T>(Task<T> task, TimeSpan timeout, string target, string what, CancellationToken ct)
    {
        try
        {
            return await task.WaitAsync(timeout, ct).ConfigureAwait(false);
        }
        catch (TimeoutException e)
        {
            throw new KvmOcException(ErrorKind.Timeout, "QmpTimeout", $"No {what} from '{target}' within {timeout.TotalSeconds:0.#} s.", target,
                what == "QMP greeting"
                    ? "Another client may hold the guest's QMP connection (QEMU serves one at a time), or the guest is hung."
                    : "The guest may be hung; Stop-KvmGuest -Force ends it.", e);
        }
    }

    async Task ReadLoopAsync()
    {
        Exception reason = new EndOfStreamException("QEMU closed the connection");
        try
        {
            using var reader = new StreamReader(_stream, new UTF8Encoding(false), false, 65536, leaveOpen: true);
            while (true)
            {
                var line = await reader.ReadLineAsync(_readCts.Token).ConfigureAwait(false);
                if (line is null) break;
                if (line.Length == 0) continue;
                JsonElement msg;
                try { msg = JsonDocument.Parse(line).RootElement.Clone(); }
                catch (JsonException) { continue; }
                Dispatch(msg);
            }
        }
        catch (Exception e)
        {
            reason = e;
        }
        List<TaskCompletionSource<JsonElement>> pending;
        List<(string, TaskCompletionSource<QmpEvent> Tcs)> waiters;
        lock (_gate)
        {
            _closeReason = reason;
            pending = _pending.Values.ToList();
            waiters = _eventWaiters.ToList();
            _eventWaiters.Clear();
        }
        var ex = Closedexception("connection ended");
        _greeting.TrySetException(ex);
        foreach (var p in pending) p.TrySetException(ex);
        foreach (var w in waiters) w.Tcs.TrySetException(ex);
        _closed.TrySetResult();
    }

    void Dispatch(JsonElement msg)
    {
        if (msg.TryGetProperty("QMP", out _))
        {
            _greeting.TrySetResult(msg);
            return;
        }
        if (msg.TryGetProperty("event", out var ev))
        {
            var e = new QmpEvent { Event = ev.GetString() ?? "" };
            if (msg.TryGetProperty("data", out var data)) e.Data = data.Clone();
            if (msg.TryGetProperty("timestamp", out var ts) && ts.TryGetProperty("seconds", out var s) && ts.TryGetProperty("microseconds", out var us))
                e.Timestamp = DateTimeOffset.FromUnixTimeSeconds(s.GetInt64()).AddTicks(us.GetInt64() * 10);
            List<TaskCompletionSource<QmpEvent>> fire;
            lock (_gate)
            {
                _events.Add(e);
                if (_events.Count > 1000) _events.RemoveAt(0);
                fire = _eventWaiters.Where(w => w.Name == e.Event).Select(w => w.Tcs).ToList();
                _eventWaiters.RemoveAll(w => w.Name == e.Event);
            }
            foreach (var t in fire) t.TrySetResult(e);
            return;
        }
        if (msg.TryGetProperty("id", out var idEl) && idEl.ValueKind == JsonValueKind.String)
        {
            TaskCompletionSource<JsonElement>? tcs;
            lock (_gate) _pending.TryGetValue(idEl.GetString()!, out tcs);
            tcs?.TrySetResult(msg);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        _readCts.Cancel();
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        _stream.Dispose();
        if (_reader is not null)
        {
            try { await _reader.ConfigureAwait(false); } catch (Exception) { /* the read loop records its own end */ }
        }
        _readCts.Dispose();
        _writeLock.Dispose();
    }

    /// <inheritdoc />
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
