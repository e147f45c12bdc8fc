using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace KvmOvercommit.Engine.Io;

/// <summary>What Measure-DeviceIops samples.</summary>
public sealed class DeviceIopsOptions
{
    /// <summary>Device names, /dev paths or wildcards; empty = every whole disk, md and dm device (not loop, ram, zram).</summary>
    public string[]? Device { get; set; }
    /// <summary>Length of one interval.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>Number of intervals; null = until cancelled.</summary>
    public int? Count { get; set; } = 1;
    /// <summary>Adds a "Total" row per interval summing the selected devices.</summary>
    public bool Total { get; set; }
}

/// <summary>
/// Measure-DeviceIops: reads /proc/diskstats, waits, reads again and reports per-device rates from the deltas over
/// the exact elapsed time (Stopwatch). Intervals are scheduled on absolute deadlines so a long run does not drift.
/// </summary>
public sealed class DeviceIopsSampler
{
    readonly HostRoots _roots;
    readonly Func<TimeSpan, CancellationToken, Task> _delay;

    /// <summary>Creates a sampler over <paramref name="roots"/>; <paramref name="delay"/> replaces Task.Delay in tests.</summary>
    public DeviceIopsSampler(HostRoots? roots = null, Func<TimeSpan, CancellationToken, Task>? delay = null)
    {
        _roots = roots ?? HostRoots.Default;
        _delay = delay ?? ((t, ct) => Task.Delay(t, ct));
    }

    /// <summary>One reading of /proc/diskstats, with the monotonic time it was taken.</summary>
    public (Dictionary<string, DiskStatRecord> Stats, long Ticks, DateTimeOffset Time) Read()
    {
        var path = _roots.ProcFile("diskstats");
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "DiskStatsNotReadable", "Cannot read /proc/diskstats", path);
        }
        long ticks = Stopwatch.GetTimestamp();
        var map = new Dictionary<string, DiskStatRecord>(StringComparer.Ordinal);
        foreach (var r in DiskStatsParser.Parse(text)) map[r.Name] = r;
        return (map, ticks, DateTimeOffset.UtcNow);
    }

    /// <summary>The devices the options select (throws NotFound for unknown literal names).</summary>
    public List<string> ResolveDevices(string[]? patterns)
    {
        var names = Read().Stats.Keys.ToList();
        return BlockDevices.Select(names, BlockDevices.ReadWholeDisks(_roots), patterns, _roots);
    }

    /// <summary>Streams one object per device per interval (plus a Total row with <see cref="DeviceIopsOptions.Total"/>).</summary>
    public async IAsyncEnumerable<DeviceIops> SampleAsync(DeviceIopsOptions options, IOperationObserver? observer = null, [EnumeratorCancellation] CancellationToken ct = default)
    {
        observer ??= NullObserver.Instance;
        Validation.Interval(options.Interval);
        Validation.Count(options.Count);
        var prev = Read();
        var devices = BlockDevices.Select(prev.Stats.Keys.ToList(), BlockDevices.ReadWholeDisks(_roots), options.Device, _roots);
        observer.Verbose($"Sampling /proc/diskstats every {options.Interval.TotalSeconds:0.###} s for {string.Join(", ", devices)}.");
        long start = prev.Ticks;
        for (int i = 1; options.Count is null || i <= options.Count; i++)
        {
            await _delay(Schedule.NextDue(start, options.Interval), ct).ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
            var cur = Read();
            double seconds = Stopwatch.GetElapsedTime(prev.Ticks, cur.Ticks).TotalSeconds;
            var rows = new List<DeviceIops>();
            foreach (var name in devices)
            {
                if (!prev.Stats.TryGetValue(name, out var a) || !cur.Stats.TryGetValue(name, out var b))
                {
                    observer.Warning($"Device {name} disappeared from /proc/diskstats.");
                    continue;
                }
                var row = Compute(name, a, b, seconds, cur.Time);
                row.Sample = i;
                rows.Add(row);
            }
            foreach (var r in rows) yield return r;
            if (options.Total && rows.Count > 0)
            {
                var t = Sum(rows);
                t.Sample = i;
                yield return t;
            }
            prev = cur;
        }
    }

    /// <summary>Rates for one device between two readings <paramref name="seconds"/> apart (iostat -x arithmetic).</summary>
    public static DeviceIops Compute(string name, DiskStatRecord a, DiskStatRecord b, double seconds, DateTimeOffset timestamp)
    {
        double Rate(ulong d) => seconds > 0 ? d / seconds : 0;
        static double Await(ulong ticks, ulong ios) => ios == 0 ? 0 : (double)ticks / ios;
        ulong rd = Delta(a.ReadIos, b.ReadIos), wr = Delta(a.WriteIos, b.WriteIos);
        ulong? dc = a.DiscardIos is not null && b.DiscardIos is not null ? Delta(a.DiscardIos.Value, b.DiscardIos.Value) : null;
        ulong? fl = a.FlushIos is not null && b.FlushIos is not null ? Delta(a.FlushIos.Value, b.FlushIos.Value) : null;
        return new DeviceIops
        {
            Device = name,
            ReadsPerSec = Rate(rd),
            WritesPerSec = Rate(wr),
            DiscardsPerSec = dc is null ? null : Rate(dc.Value),
            FlushesPerSec = fl is null ? null : Rate(fl.Value),
            Iops = Rate(rd + wr + (dc ?? 0)),
            ReadBytesPerSec = Rate(Delta(a.ReadSectors, b.ReadSectors) * 512),
            WriteBytesPerSec = Rate(Delta(a.WriteSectors, b.WriteSectors) * 512),
            DiscardBytesPerSec = dc is null ? null : Rate(Delta(a.DiscardSectors ?? 0, b.DiscardSectors ?? 0) * 512),
            ReadMergesPerSec = Rate(Delta(a.ReadMerges, b.ReadMerges)),
            WriteMergesPerSec = Rate(Delta(a.WriteMerges, b.WriteMerges)),
            ReadAwaitMs = Await(Delta(a.ReadTicks, b.ReadTicks), rd),
            WriteAwaitMs = Await(Delta(a.WriteTicks, b.WriteTicks), wr),
            DiscardAwaitMs = dc is null ? null : Await(Delta(a.DiscardTicks ?? 0, b.DiscardTicks ?? 0), dc.Value),
            FlushAwaitMs = fl is null ? null : Await(Delta(a.FlushTicks ?? 0, b.FlushTicks ?? 0), fl.Value),
            AverageQueueSize = seconds > 0 ? Delta(a.TimeInQueue, b.TimeInQueue) / (seconds * 1000) : 0,
            UtilizationPercent = seconds > 0 ? Math.Min(100, Delta(a.IoTicks, b.IoTicks) / (seconds * 10)) : 0,
            InFlight = (long)b.InFlight,
            IntervalSeconds = seconds,
            Timestamp = timestamp,
        };
    }

    /// <summary>The Total row: rates and queue sizes add up; awaits are weighted by I/O counts; utilization is the busiest device's.</summary>
    public static DeviceIops Sum(IReadOnlyList<DeviceIops> rows)
    {
        static double? SumN(IEnumerable<double?> v) => v.Any(x => x is null) ? null : v.Sum(x => x!.Value);
        static double Weighted(IEnumerable<(double Await, double Rate)> v)
        {
            double n = v.Sum(x => x.Rate);
            return n == 0 ? 0 : v.Sum(x => x.Await * x.Rate) / n;
        }
        return new DeviceIops
        {
            Device = "Total",
            ReadsPerSec = rows.Sum(r => r.ReadsPerSec),
            WritesPerSec = rows.Sum(r => r.WritesPerSec),
            DiscardsPerSec = SumN(rows.Select(r => r.DiscardsPerSec)),
            FlushesPerSec = SumN(rows.Select(r => r.FlushesPerSec)),
            Iops = rows.Sum(r => r.Iops),
            ReadBytesPerSec = rows.Sum(r => r.ReadBytesPerSec),
            WriteBytesPerSec = rows.Sum(r => r.WriteBytesPerSec),
            DiscardBytesPerSec = SumN(rows.Select(r => r.DiscardBytesPerSec)),
            ReadMergesPerSec = rows.Sum(r => r.ReadMergesPerSec),
            WriteMergesPerSec = rows.Sum(r => r.WriteMergesPerSec),
            ReadAwaitMs = Weighted(rows.Select(r => (r.ReadAwaitMs, r.ReadsPerSec))),
            WriteAwaitMs = Weighted(rows.Select(r => (r.WriteAwaitMs, r.WritesPerSec))),
            DiscardAwaitMs = rows.Any(r => r.DiscardAwaitMs is null) ? null : Weighted(rows.Select(r => (r.DiscardAwaitMs!.Value, r.DiscardsPerSec ?? 0))),
            FlushAwaitMs = rows.Any(r => r.FlushAwaitMs is null) ? null : Weighted(rows.Select(r => (r.FlushAwaitMs!.Value, r.FlushesPerSec ?? 0))),
            AverageQueueSize = rows.Sum(r => r.AverageQueueSize),
            UtilizationPercent = rows.Max(r => r.UtilizationPercent),
            InFlight = rows.Sum(r => r.InFlight),
            IntervalSeconds = rows.Max(r => r.IntervalSeconds),
            Timestamp = rows.Max(r => r.Timestamp),
        };
    }

    /// <summary>Counter delta; a counter that went backwards wrapped at 32 bits (older kernels' unsigned int) or was reset (0).</summary>
    public static ulong Delta(ulong before, ulong after)
    {
        if (after >= before) return after - before;
        return before <= uint.MaxValue ? after + ((ulong)uint.MaxValue + 1) - before : 0;
    }
}
