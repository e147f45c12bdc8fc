using System.Diagnostics;
using KvmOvercommit.Engine.Io;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Experiment;

/// <summary>One reading of the experiment's IOPS side by side: the overlays' disk, each guest (query-blockstats) and each QEMU (/proc/pid/io).</summary>
public sealed class ExperimentIopsSample
{
    /// <summary>When it was read (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
    /// <summary>Seconds since the phase (the I/O load) started.</summary>
    public double ElapsedSeconds { get; set; }
    /// <summary>The interval the rates cover, seconds.</summary>
    public double IntervalSeconds { get; set; }
    /// <summary>The overlays' disk (Measure-DeviceIops); null when it cannot be told.</summary>
    public double? DeviceIops { get; set; }
    /// <summary>The sum of the guests' IOPS (Measure-KvmGuestIops).</summary>
    public double? GuestIops { get; set; }
    /// <summary>The sum of the QEMU processes' I/O rate (Measure-ProcessIops: io.stat IOPS where the QEMU has its own cgroup, else read + write syscalls per second).</summary>
    public double? ProcessIops { get; set; }
}

/// <summary>
/// Reads the overlays' disk (/proc/diskstats), every guest (one QMP connection each, query-blockstats) and every QEMU
/// (/proc/pid/io, Measure-ProcessIops's engine) on demand; <see cref="NextAsync"/> gives the rates since the previous
/// call. Holds the QMP connections until disposed, so keep it only around a sampling loop.
/// </summary>
public sealed class ExperimentIopsTracker : IAsyncDisposable
{
    readonly string? _device;
    readonly DeviceIopsSampler _disk;
    readonly KvmGuest[] _guests;
    readonly QmpClient?[] _qmp;
    readonly List<BlockStatsCounters>?[] _counters;
    readonly ProcessIopsSampler.ProcessIoTracker?[] _processes;
    (Dictionary<string, DiskStatRecord> Stats, long Ticks, DateTimeOffset Time)? _diskPrev;
    long _ticks;

    ExperimentIopsTracker(IReadOnlyList<KvmGuest> guests, string? device, HostRoots roots)
    {
        _device = device;
        _disk = new DeviceIopsSampler(roots);
        _guests = guests.ToArray();
        _qmp = new QmpClient?[_guests.Length];
        _counters = new List<BlockStatsCounters>?[_guests.Length];
        var procs = new ProcessIopsSampler(roots);
        _processes = _guests.Select(g => procs.Track(new ProcessTarget(g.Id, g.Name))).ToArray();
    }

    /// <summary>The per-guest figure of the last <see cref="NextAsync"/>, in the guests' order (null: unknown).</summary>
    public double?[] GuestIops { get; private set; } = Array.Empty<double?>();
    /// <summary>The per-QEMU figure of the last <see cref="NextAsync"/>.</summary>
    public double?[] ProcessIops { get; private set; } = Array.Empty<double?>();
    /// <summary>The per-QEMU read and write bytes per second of the last <see cref="NextAsync"/> (/proc/pid/io read_bytes + write_bytes).</summary>
    public double?[] ProcessBytesPerSec { get; private set; } = Array.Empty<double?>();
    /// <summary>How the process figure was obtained (io.stat IOPS, or read + write syscalls).</summary>
    public string ProcessIopsSource { get; private set; } = "";

    /// <summary>Opens the QMP connections and takes the first reading.</summary>
    public static async Task<ExperimentIopsTracker> OpenAsync(IReadOnlyList<KvmGuest> guests, string? device, HostRoots? roots, CancellationToken ct)
    {
        var t = new ExperimentIopsTracker(guests, device, roots ?? HostRoots.Default);
        for (int i = 0; i < t._guests.Length; i++)
        {
            if (t._guests[i].QmpSocket is not string socket) continue;
            try
            {
                var qmp = await KvmGuestInventory.ConnectAsync(socket, TimeSpan.FromSeconds(5), ct).ConfigureAwait(false);
                qmp.CommandTimeout = TimeSpan.FromSeconds(5);
                t._qmp[i] = qmp;
            }
            catch (KvmOcException) { }
        }
        var (_, first) = await t.ReadAllAsync(ct).ConfigureAwait(false);
        Array.Copy(first, t._counters, first.Length);
        t.ReadDevice();
        return t;
    }

    async Task<List<BlockStatsCounters>?[]> ReadGuestsAsync(CancellationToken ct) => await Task.WhenAll(_qmp.Select(async (q, i) =>
    {
        if (q is null) return null;
        try { return BlockStatsCalculator.Parse(await q.ExecuteAsync("query-blockstats", null, ct).ConfigureAwait(false)); }
        catch (KvmOcException)
        {
            await q.DisposeAsync().ConfigureAwait(false);
            _qmp[i] = null;
            return null;
        }
    })).ConfigureAwait(false);

    async Task<(double Seconds, List<BlockStatsCounters>?[] Guests)> ReadAllAsync(CancellationToken ct)
    {
        var guests = await ReadGuestsAsync(ct).ConfigureAwait(false);
        long now = Stopwatch.GetTimestamp();
        double seconds = _ticks == 0 ? 0 : Stopwatch.GetElapsedTime(_ticks, now).TotalSeconds;
        _ticks = now;
        return (seconds, guests);
    }

    /// <summary>The rates since the previous reading.</summary>
    public async Task<ExperimentIopsSample> NextAsync(CancellationToken ct)
    {
        var (seconds, guests) = await ReadAllAsync(ct).ConfigureAwait(false);
        var sample = new ExperimentIopsSample { Timestamp = DateTimeOffset.UtcNow, IntervalSeconds = Math.Round(seconds, 3) };
        var elapsed = TimeSpan.FromSeconds(Math.Max(seconds, 1e-3));
        GuestIops = guests.Select((now, i) =>
        {
            var before = _counters[i];
            _counters[i] = now;
            if (now is null || before is null) return (double?)null;
            return Math.Round(BlockStatsCalculator.Compute(_guests[i].Name, _guests[i].Id, before, now, elapsed, sample.Timestamp).Sum(r => r.Iops), 2);
        }).ToArray();
        var procs = _processes.Select(p => p?.Next()).ToArray();
        ProcessIops = procs.Select(p => p is null ? (double?)null : Math.Round(p.Iops ?? p.ReadSyscallsPerSec + p.WriteSyscallsPerSec, 2)).ToArray();
        ProcessBytesPerSec = procs.Select(p => p is null ? (double?)null : Math.Round(p.ReadBytesPerSec + p.WriteBytesPerSec, 1)).ToArray();
        ProcessIopsSource = procs.OfType<ProcessIops>().FirstOrDefault() is { } any
            ? any.Iops is null ? "read + write syscalls per second from /proc/<pid>/io (syscr + syscw; the QEMU has no cgroup of its own, so its network and event syscalls count too)" : "read + write requests per second from the QEMU's own cgroup io.stat (rios + wios)"
            : "";
        sample.GuestIops = GuestIops.Any(g => g is not null) ? Math.Round(GuestIops.Sum(g => g ?? 0), 2) : null;
        sample.ProcessIops = ProcessIops.Any(p => p is not null) ? Math.Round(ProcessIops.Sum(p => p ?? 0), 2) : null;
        sample.DeviceIops = ReadDevice();
        return sample;
    }

    double? ReadDevice()
    {
        if (_device is null) return null;
        try
        {
            var cur = _disk.Read();
            var prev = _diskPrev;
            _diskPrev = cur;
            if (prev is not { } p || !p.Stats.TryGetValue(_device, out var a) || !cur.Stats.TryGetValue(_device, out var b)) return null;
            return Math.Round(DeviceIopsSampler.Compute(_device, a, b, Stopwatch.GetElapsedTime(p.Ticks, cur.Ticks).TotalSeconds, cur.Time).Iops, 2);
        }
        catch (KvmOcException) { return null; }
    }

    /// <summary>Closes the QMP connections.</summary>
    public async ValueTask DisposeAsync()
    {
        for (int i = 0; i < _qmp.Length; i++)
            if (_qmp[i] is { } q) { await q.DisposeAsync().ConfigureAwait(false); _qmp[i] = null; }
    }
}
