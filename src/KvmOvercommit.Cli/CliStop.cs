using System.Runtime.InteropServices;

namespace KvmOvercommit.Cli;

/// <summary>Why a command was asked to stop early.</summary>
public enum CliStopReason
{
    /// <summary>Not asked to stop.</summary>
    None,
    /// <summary>Ctrl+C (SIGINT): exit code 130.</summary>
    Interrupt,
    /// <summary>SIGTERM (kill, systemctl stop): exit code 143.</summary>
    Terminate,
    /// <summary>Standard output is a pipe or socket whose reader went away (`kvmoc ksm watch | head -2`): exit code 141, as for SIGPIPE.</summary>
    OutputClosed,
}

/// <summary>
/// Stops one kvmoc command cleanly. The first SIGINT or SIGTERM cancels the command's token, so its cleanup runs (the
/// experiment stops its guests and restores KSM, the autotuner leaves the low rate); a second one says that the cleanup
/// is still running and waits for it; a third exits at once with a message. Never a .NET stack trace (kvmoc turns off
/// System.CommandLine's own handler, which threw on a second signal). When standard output is a pipe or a socket, a
/// watcher notices the reader closing it (poll: POLLERR/POLLHUP) and cancels the token too, so a streaming command in
/// `| head` ends instead of polling forever (.NET's console drops writes to a closed pipe silently).
/// </summary>
public sealed class CliStop : IDisposable
{
    readonly CancellationTokenSource _cts = new();
    readonly TextWriter _err;
    readonly PosixSignalRegistration? _int, _term;
    readonly Thread? _watcher;
    volatile bool _disposed;
    int _signals;
    int _reason;

    /// <summary>Handles SIGINT and SIGTERM; with <paramref name="watchStdout"/> also watches fd 1.</summary>
    public CliStop(TextWriter err, bool watchStdout)
    {
        _err = err;
        _int = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        if (watchStdout && StdoutIsPipeOrSocket())
        {
            _watcher = new Thread(WatchStdout) { IsBackground = true, Name = "kvmoc stdout watch" };
            _watcher.Start();
        }
    }

    /// <summary>Cancelled on the first signal or when standard output closes.</summary>
    public CancellationToken Token => _cts.Token;

    /// <summary>The first reason to stop.</summary>
    public CliStopReason Reason => (CliStopReason)Volatile.Read(ref _reason);

    /// <summary>The exit code for <see cref="Reason"/>: 130, 143 or 141 (0 when not stopped).</summary>
    public int ExitCode => Reason switch
    {
        CliStopReason.Interrupt => 130,
        CliStopReason.Terminate => 143,
        CliStopReason.OutputClosed => 141,
        _ => 0,
    };

    void Stop(CliStopReason reason)
    {
        if (Interlocked.CompareExchange(ref _reason, (int)reason, 0) != 0) return;
        try { _cts.Cancel(); } catch (AggregateException) { } catch (ObjectDisposedException) { }
    }

    void OnSignal(PosixSignalContext c)
    {
        c.Cancel = true;
        int n = Interlocked.Increment(ref _signals);
        string name = c.Signal == PosixSignal.SIGINT ? "Ctrl+C" : "SIGTERM";
        if (n == 1)
        {
            Stop(c.Signal == PosixSignal.SIGINT ? CliStopReason.Interrupt : CliStopReason.Terminate);
            return;
        }
        try
        {
            if (n == 2)
            {
                _err.WriteLine($"kvmoc: {name} again: still cleaning up (what this command started is being stopped and put back); waiting for it. A third signal exits at once without finishing the cleanup.");
                _err.Flush();
                return;
            }
            _err.WriteLine("kvmoc: exiting at once; the cleanup did not finish (check `kvmoc guest list` and `kvmoc ksm stat`).");
            _err.Flush();
        }
        catch (IOException) { }
        Environment.Exit(ExitCode == 0 ? 130 : ExitCode);
    }

    [StructLayout(LayoutKind.Sequential)]
    struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    const short POLLERR = 0x008, POLLHUP = 0x010, POLLNVAL = 0x020;

    [DllImport("libc", SetLastError = true)]
    static extern int poll(ref PollFd fds, nuint nfds, int timeout);

    static bool StdoutIsPipeOrSocket()
    {
        try
        {
            var target = new FileInfo("/proc/self/fd/1").LinkTarget ?? "";
            return target.StartsWith("pipe:", StringComparison.Ordinal) || target.StartsWith("socket:", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    void WatchStdout()
    {
        var fd = new PollFd { Fd = 1, Events = 0 };
        while (!_disposed)
        {
            fd.Revents = 0;
            int r = poll(ref fd, 1, 250);
            if (r < 0)
            {
                if (Marshal.GetLastPInvokeError() == 4 /* EINTR */) continue;
                return;
            }
            if (r == 0) continue;
            if ((fd.Revents & POLLNVAL) != 0) return;
            if ((fd.Revents & (POLLERR | POLLHUP)) != 0)
            {
                Stop(CliStopReason.OutputClosed);
                return;
            }
        }
    }

    /// <summary>Removes the signal handlers and ends the watcher.</summary>
    public void Dispose()
    {
        _disposed = true;
        _int?.Dispose();
        _term?.Dispose();
        _cts.Dispose();
    }
}
