using System.Diagnostics;
using System.Text.Json;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>I/O rates of one drive of one guest over one interval, from QMP query-blockstats deltas: the per-VM IOPS the blog found no tool for.</summary>
public sealed class KvmGuestIops
{
    /// <summary>The guest name.</summary>
    public string Name { get; set; } = "";
    /// <summary>The QEMU process id.</summary>
    public int Id { get; set; }
    /// <summary>The drive: its -drive id (e.g. drive0, virtio0), else the device's qdev id, else the block node name.</summary>
    public string Drive { get; set; } = "";
    /// <summary>Read requests per second.</summary>
    public double ReadOpsPerSec { get; set; }
    /// <summary>Write requests per second.</summary>
    public double WriteOpsPerSec { get; set; }
    /// <summary>Flush requests per second.</summary>
    public double FlushOpsPerSec { get; set; }
    /// <summary>Read + write + flush requests per second.</summary>
    public double Iops { get; set; }
    /// <summary>Bytes read per second.</summary>
    public double ReadBytesPerSec { get; set; }
    /// <summary>Bytes written per second.</summary>
    public double WriteBytesPerSec { get; set; }
    /// <summary>Average read latency over the interval in milliseconds (Δrd_total_time_ns / Δrd_operations); null without reads.</summary>
    public double? ReadLatencyMs { get; set; }
    /// <summary>Average write latency over the interval in milliseconds; null without writes.</summary>
    public double? WriteLatencyMs { get; set; }
    /// <summary>The exact time between the two samples, in seconds.</summary>
    public double IntervalSeconds { get; set; }
    /// <summary>When the second sample was taken (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
}

/// <summary>The counters of one drive in one query-blockstats answer.</summary>
public sealed record BlockStatsCounters(string Drive, long ReadOps, long WriteOps, long FlushOps, long ReadBytes, long WriteBytes, long ReadTimeNs, long WriteTimeNs, long FlushTimeNs);

/// <summary>Parses query-blockstats answers and turns two of them into rates.</summary>
public static class BlockStatsCalculator
{
    /// <summary>The drives of one query-blockstats "return" array (each entry's top-level "stats": the guest-visible device).</summary>
    public static List<BlockStatsCounters> Parse(JsonElement ret)
    {
        var list = new List<BlockStatsCounters>();
        if (ret.ValueKind != JsonValueKind.Array) return list;
        int index = 0;
        foreach (var e in ret.EnumerateArray())
        {
            index++;
            if (!e.TryGetProperty("stats", out var s) || s.ValueKind != JsonValueKind.Object) continue;
            list.Add(new BlockStatsCounters(DriveName(e, index),
                L(s, "rd_operations"), L(s, "wr_operations"), L(s, "flush_operations"),
                L(s, "rd_bytes"), L(s, "wr_bytes"),
                L(s, "rd_total_time_ns"), L(s, "wr_total_time_ns"), L(s, "flush_total_time_ns")));
        }
        return list;

        static long L(JsonElement o, string name) => o.TryGetProperty(name, out var v) && v.TryGetInt64(out long x) ? x : 0;
    }

    /// <summary>Parses the JSON text of a query-blockstats answer (the whole {"return": […]} or just the array).</summary>
    public static List<BlockStatsCounters> Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        return Parse(root.ValueKind == JsonValueKind.Object && root.TryGetProperty("return", out var r) ? r : root);
    }

    static string DriveName(JsonElement e, int index)
    {
        string? S(string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        var device = S("device");
        if (!string.IsNullOrEmpty(device)) return device;
        var qdev = S("qdev");
        if (!string.IsNullOrEmpty(qdev))
        {
            // "/machine/peripheral/vd0/virtio-backend" → vd0; anonymous devices keep their QOM path.
            const string peripheral = "/machine/peripheral/";
            if (qdev.StartsWith(peripheral, StringComparison.Ordinal)) return qdev.Substring(peripheral.Length).Split('/')[0];
            return qdev;
        }
        return S("node-name") ?? $"drive{index}";
    }

    /// <summary>
    /// Rates of every drive present in both samples over <paramref name="elapsed"/>. A counter that went backwards
    /// (QEMU restarted, device re-plugged) yields no row for that drive.
    /// </summary>
    public static List<KvmGuestIops> Compute(string name, int id, IReadOnlyList<BlockStatsCounters> first, IReadOnlyList<BlockStatsCounters> second, TimeSpan elapsed, DateTimeOffset timestamp)
    {
        if (elapsed <= TimeSpan.Zero) throw new KvmOcException(ErrorKind.InvalidArgument, "IntervalInvalid", "The interval between two samples must be positive.", elapsed);
        double secs = elapsed.TotalSeconds;
        var byDrive = first.GroupBy(c => c.Drive).ToDictionary(g => g.Key, g => g.First());
        var result = new List<KvmGuestIops>();
        foreach (var b in second)
        {
            if (!byDrive.TryGetValue(b.Drive, out var a)) continue;
            long dr = b.ReadOps - a.ReadOps, dw = b.WriteOps - a.WriteOps, df = b.FlushOps - a.FlushOps;
            long drb = b.ReadBytes - a.ReadBytes, dwb = b.WriteBytes - a.WriteBytes;
            long drt = b.ReadTimeNs - a.ReadTimeNs, dwt = b.WriteTimeNs - a.WriteTimeNs;
            if (dr < 0 || dw < 0 || df < 0 || drb < 0 || dwb < 0) continue;
            result.Add(new KvmGuestIops
            {
                Name = name,
                Id = id,
                Drive = b.Drive,
                ReadOpsPerSec = Math.Round(dr / secs, 2),
                WriteOpsPerSec = Math.Round(dw / secs, 2),
                FlushOpsPerSec = Math.Round(df / secs, 2),
                Iops = Math.Round((dr + dw + df) / secs, 2),
                ReadBytesPerSec = Math.Round(drb / secs, 1),
                WriteBytesPerSec = Math.Round(dwb / secs, 1),
                ReadLatencyMs = dr > 0 && drt >= 0 ? Math.Round(drt / (double)dr / 1e6, 4) : null,
                WriteLatencyMs = dw > 0 && dwt >= 0 ? Math.Round(dwt / (double)dw / 1e6, 4) : null,
                IntervalSeconds = Math.Round(secs, 6),
                Timestamp = timestamp,
            });
        }
        return result;
    }
}

/// <summary>
/// Measure-KvmGuestIops: keeps one QMP connection per guest, samples query-blockstats, waits, samples again and emits
/// one <see cref="KvmGuestIops"/> per guest and drive per interval, with the exact elapsed time of each guest's own
/// two samples. Each later interval starts from the previous sample, so a continuous run misses no I/O.
/// </summary>
public sealed class KvmGuestIopsSampler
{
    /// <summary>How long one QMP exchange may take.</summary>
    public TimeSpan QmpTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Samples <paramref name="guests"/> every <paramref name="interval"/>, <paramref name="count"/> times (null: until
    /// cancelled). A guest that cannot be reached, or goes away, is reported through <paramref name="error"/> and dropped.
    /// </summary>
    public async Task RunAsync(IReadOnlyList<KvmGuest> guests, TimeSpan interval, int? count, Action<KvmGuestIops> emit, Action<KvmOcException> error, IOperationObserver observer, CancellationToken ct)
    {
        Validation.Interval(interval, Validation.MinGuestIopsInterval);
        Validation.Count(count);
        var live = new List<Session>();
        try
        {
            foreach (var g in guests)
            {
                if (g.QmpSocket is null)
                {
                    error(new KvmOcException(ErrorKind.InvalidOperation, "GuestHasNoQmp", $"Guest '{g.Name}' (pid {g.Id}) has no QMP socket, so its block statistics cannot be read.", g.Name,
                        "Start guests with Start-KvmGuest, or by hand with -qmp unix:/path/qmp.sock,server=on,wait=off."));
                    continue;
                }
                try
                {
                    var qmp = await KvmGuestInventory.ConnectAsync(g.QmpSocket, QmpTimeout, ct).ConfigureAwait(false);
                    qmp.CommandTimeout = QmpTimeout;
                    live.Add(new Session(g, qmp));
                }
                catch (KvmOcException e) { error(e); }
            }
            if (live.Count == 0) return;

            await SampleAllAsync(live, error, ct).ConfigureAwait(false);
            long start = Stopwatch.GetTimestamp();
            for (int n = 1; count is null || n <= count; n++)
            {
                // On the grid from the first reading, skipping missed points: no interval shorter than half the one asked for.
                await Task.Delay(Io.Schedule.NextDue(start, interval), ct).ConfigureAwait(false);
                var previous = live.ToDictionary(s => s, s => (s.Counters, s.SampledAt, s.SampledTicks));
                await SampleAllAsync(live, error, ct).ConfigureAwait(false);
                foreach (var s in live)
                {
                    var (c0, _, t0) = previous[s];
                    var elapsed = Stopwatch.GetElapsedTime(t0, s.SampledTicks);
                    foreach (var row in BlockStatsCalculator.Compute(s.Guest.Name, s.Guest.Id, c0, s.Counters, elapsed, s.SampledAt)) emit(row);
                }
                if (live.Count == 0) return;
                observer.Verbose($"Interval {n}: {live.Count} guest(s) sampled.");
            }
        }
        finally
        {
            foreach (var s in live) await s.Qmp.DisposeAsync().ConfigureAwait(false);
        }
    }

    static async Task SampleAllAsync(List<Session> live, Action<KvmOcException> error, CancellationToken ct)
    {
        var results = await Task.WhenAll(live.Select(async s =>
        {
            try
            {
                long before = Stopwatch.GetTimestamp();
                var ret = await s.Qmp.ExecuteAsync("query-blockstats", null, ct).ConfigureAwait(false);
                long after = Stopwatch.GetTimestamp();
                s.Counters = BlockStatsCalculator.Parse(ret);
                s.SampledTicks = before + (after - before) / 2; // the middle of the exchange
                s.SampledAt = DateTimeOffset.UtcNow;
                return (s, (KvmOcException?)null);
            }
            catch (KvmOcException e)
            {
                return (s, e);
            }
        })).ConfigureAwait(false);
        foreach (var (s, e) in results)
        {
            if (e is null) continue;
            error(new KvmOcException(e.Kind, e.ErrorId, $"Guest '{s.Guest.Name}' (pid {s.Guest.Id}): {e.Message}", s.Guest.Name, e.Hint, e));
            live.Remove(s);
            await s.Qmp.DisposeAsync().ConfigureAwait(false);
        }
    }

    sealed class Session(KvmGuest guest, QmpClient qmp)
    {
        public KvmGuest Guest { get; } = guest;
        public QmpClient Qmp { get; } = qmp;
        public List<BlockStatsCounters> Counters { get; set; } = new();
        public long SampledTicks { get; set; }
        public DateTimeOffset SampledAt { get; set; }
    }
}
