using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace KvmOvercommit.Engine.Ksm;

/// <summary>One Watch-KsmStat sample: the reading, and deltas and rates against the previous one.</summary>
public sealed class KsmSample
{
    /// <summary>Sample number, 1-based.</summary>
    public int Index { get; set; }
    /// <summary>When this sample was read (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
    /// <summary>Time since the watch started.</summary>
    public TimeSpan Elapsed { get; set; }
    /// <summary>Exact seconds between this sample and the previous one.</summary>
    public double IntervalSeconds { get; set; }
    /// <summary>run at this sample.</summary>
    public KsmRunState? Run { get; set; }
    /// <summary>pages_to_scan at this sample (changes under the advisor).</summary>
    public long? PagesToScan { get; set; }
    /// <summary>pages_shared.</summary>
    public long? PagesShared { get; set; }
    /// <summary>pages_sharing.</summary>
    public long? PagesSharing { get; set; }
    /// <summary>Bytes saved ((pages_sharing + ksm_zero_pages) × page size).</summary>
    public long? SavedBytes { get; set; }
    /// <summary>SavedBytes in MiB.</summary>
    public double? SavedMiB => Units.ToMiB(SavedBytes);
    /// <summary>Change of SavedBytes since the previous sample.</summary>
    public long? SavedBytesDelta { get; set; }
    /// <summary>Pages merged per second: change of (pages_sharing + ksm_zero_pages) per second (negative when pages unmerge).</summary>
    public double? PagesMergedPerSecond { get; set; }
    /// <summary>Pages scanned per second (pages_scanned; null on kernels before 6.7).</summary>
    public double? PagesScannedPerSecond { get; set; }
    /// <summary>Full scans completed since the previous sample.</summary>
    public long? FullScansDelta { get; set; }
    /// <summary>full_scans at this sample.</summary>
    public long? FullScans { get; set; }
    /// <summary>general_profit at this sample.</summary>
    public long? GeneralProfit { get; set; }
    /// <summary>Change of general_profit since the previous sample (bytes).</summary>
    public long? GeneralProfitDelta { get; set; }
    /// <summary>CPU the ksmd thread used since the previous sample, percent of one core (null when ksmd is not found).</summary>
    public double? KsmdCpuPercent { get; set; }
    /// <summary>CPU seconds ksmd used since the watch started.</summary>
    public double? KsmdCpuSeconds { get; set; }
    /// <summary>True on the sample that ended an -UntilStable watch.</summary>
    public bool Stable { get; set; }
    /// <summary>The full reading.</summary>
    public KsmStat Stat { get; set; } = new();
}

/// <summary>What Watch-KsmStat samples and when it stops.</summary>
public sealed class KsmWatchOptions
{
    /// <summary>Time between samples (default 1 s).</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>Stop after this many samples.</summary>
    public int? Count { get; set; }
    /// <summary>Stop after this much time.</summary>
    public TimeSpan? Duration { get; set; }
    /// <summary>Stop when the savings stop growing (see <see cref="StableSamples"/>).</summary>
    public bool UntilStable { get; set; }
    /// <summary>How many consecutive samples without growth count as stable (default 3). While KSM merges, at least one full scan must also complete in that stretch.</summary>
    public int StableSamples { get; set; } = 3;
}

/// <summary>Samples /sys/kernel/mm/ksm and the ksmd thread's CPU time; streams samples with deltas and rates.</summary>
public sealed class KsmWatcher
{
    readonly HostRoots _roots;
    readonly IOperationObserver _observer;
    static readonly double ClockTicks = GetClockTicks();

    /// <summary>A watcher over the KSM folder and /proc under <paramref name="roots"/>.</summary>
    public KsmWatcher(HostRoots? roots = null, IOperationObserver? observer = null)
    {
        _roots = roots ?? HostRoots.Default;
        _observer = observer ?? NullObserver.Instance;
    }

    /// <summary>Checks the options as Watch-KsmStat and kvmoc ksm watch do (see <see cref="Validation"/>): InvalidInterval, InvalidCount, InvalidDuration, InvalidStableSamples.</summary>
    public static void Validate(KsmWatchOptions options)
    {
        Validation.Interval(options.Interval);
        Validation.Count(options.Count);
        Validation.Duration(options.Duration);
        Validation.StableSamples(options.StableSamples);
    }

    /// <summary>Streams samples until Count, Duration, stability or cancellation.</summary>
    public async IAsyncEnumerable<KsmSample> WatchAsync(KsmWatchOptions options, [EnumeratorCancellation] CancellationToken ct = default)
    {
        Validate(options);
        int? ksmd = FindKsmd(_roots);
        if (ksmd is null) _observer.Warning("The ksmd kernel thread was not found in /proc; KsmdCpuPercent stays empty.");
        var clock = Stopwatch.StartNew();
        var prevStat = KsmStatReader.Read(_roots);
        double prevAt = 0;
        long? prevTicks = ksmd is null ? null : ReadCpuTicks(_roots, ksmd.Value);
        long? startTicks = prevTicks;
        int stableRun = 0;
        long? stableStartFullScans = null;
        for (int i = 1; ; i++)
        {
            // Each sample comes one interval after the previous one (rates use the exact elapsed time anyway).
            var next = options.Interval - (clock.Elapsed - TimeSpan.FromSeconds(prevAt));
            if (next > TimeSpan.Zero) await Task.Delay(next, ct).ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
            var stat = KsmStatReader.Read(_roots);
            double at = clock.Elapsed.TotalSeconds;
            long? ticks = ksmd is null ? null : ReadCpuTicks(_roots, ksmd.Value);
            double dt = at - prevAt;
            var sample = new KsmSample
            {
                Index = i,
                Timestamp = stat.Timestamp,
                Elapsed = clock.Elapsed,
                IntervalSeconds = Math.Round(dt, 4),
                Run = stat.Run,
                PagesToScan = stat.PagesToScan,
                PagesShared = stat.PagesShared,
                PagesSharing = stat.PagesSharing,
                SavedBytes = stat.SavedBytes,
                SavedBytesDelta = stat.SavedBytes - prevStat.SavedBytes,
                PagesMergedPerSecond = Rate(Merged(stat) - Merged(prevStat), dt),
                PagesScannedPerSecond = Rate(stat.PagesScanned - prevStat.PagesScanned, dt),
                FullScans = stat.FullScans,
                FullScansDelta = stat.FullScans - prevStat.FullScans,
                GeneralProfit = stat.GeneralProfit,
                GeneralProfitDelta = stat.GeneralProfit - prevStat.GeneralProfit,
                KsmdCpuPercent = ticks is null || prevTicks is null ? null : Math.Round((ticks.Value - prevTicks.Value) / ClockTicks / dt * 100, 2),
                KsmdCpuSeconds = ticks is null || startTicks is null ? null : Math.Round((ticks.Value - startTicks.Value) / ClockTicks, 2),
                Stat = stat,
            };
            if (options.UntilStable)
            {
                bool grew = (sample.SavedBytesDelta ?? 0) > 0;
                if (grew) { stableRun = 0; stableStartFullScans = stat.FullScans; }
                else
                {
                    stableRun++;
                    stableStartFullScans ??= prevStat.FullScans;
                }
                bool scanned = stat.Run != KsmRunState.Merging || stat.FullScans is null || stat.FullScans > stableStartFullScans;
                sample.Stable = stableRun >= options.StableSamples && scanned;
            }
            _observer.Progress(new ProgressInfo("Watching KSM", $"sample {i}: saved {sample.SavedMiB ?? 0:0.#} MiB, {sample.PagesMergedPerSecond ?? 0:0} pages/s merged, ksmd {sample.KsmdCpuPercent ?? 0:0.#}% CPU",
                options.Count is int c ? Math.Min(100, i * 100 / c) : options.Duration is TimeSpan d ? (int)Math.Min(100, at * 100 / Math.Max(0.001, d.TotalSeconds)) : -1));
            yield return sample;
            prevStat = stat;
            prevAt = at;
            prevTicks = ticks;
            if (sample.Stable || i >= options.Count || (options.Duration is TimeSpan dur && clock.Elapsed + options.Interval > dur + TimeSpan.FromMilliseconds(1)))
                break;
        }
        _observer.Progress(new ProgressInfo("Watching KSM", "done", Completed: true));
    }

    static long? Merged(KsmStat s) => s.PagesSharing is null ? null : s.PagesSharing + (s.KsmZeroPages ?? 0);

    static double? Rate(long? delta, double seconds) => delta is null || seconds <= 0 ? null : Math.Round(delta.Value / seconds, 1);

    /// <summary>The pid of the ksmd kernel thread (comm "ksmd"), or null.</summary>
    public static int? FindKsmd(HostRoots? roots = null)
    {
        roots ??= HostRoots.Default;
        foreach (var pid in KsmProcessReader.ProcessIds(roots))
        {
            if (KsmFile.TryRead(roots.Pid(pid, "comm"))?.Trim() == "ksmd") return pid;
        }
        return null;
    }

    /// <summary>utime + stime of a process in clock ticks (fields 14 and 15 of /proc/&lt;pid&gt;/stat), or null when it is gone.</summary>
    public static long? ReadCpuTicks(HostRoots roots, int pid)
    {
        var text = KsmFile.TryRead(roots.Pid(pid, "stat"));
        if (text is null) return null;
        int close = text.LastIndexOf(')');
        if (close < 0) return null;
        var f = text.Substring(close + 1).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // f[0] is field 3 (state); utime is field 14 → f[11], stime field 15 → f[12].
        if (f.Length < 13) return null;
        return long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture);
    }

    static double GetClockTicks()
    {
        try { long t = sysconf(2 /* _SC_CLK_TCK */); return t > 0 ? t : 100; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return 100; }
    }

    [DllImport("libc")] static extern long sysconf(int name);
}
