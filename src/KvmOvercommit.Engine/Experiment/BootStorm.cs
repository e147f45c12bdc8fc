using System.Diagnostics;
using System.Globalization;
using KvmOvercommit.Engine.Io;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Experiment;

/// <summary>One guest's boot: its disk I/O (query-blockstats) from QEMU's first QMP answer until the guest was ready.</summary>
public sealed class GuestBootIops
{
    /// <summary>The guest.</summary>
    public string Name { get; set; } = "";
    /// <summary>True when the guest became ready within the wait (else the figures cover the whole wait).</summary>
    public bool Ready { get; set; }
    /// <summary>What ended the boot: "ready line" (the tiny guest's serial console), "disk quiet" (no disk I/O for <see cref="BootIopsRecorder.QuietSeconds"/> s after some), "no disk I/O" (none in twice that), "guest gone" or "timeout".</summary>
    public string ReadyBy { get; set; } = "";
    /// <summary>Seconds from the launch (QEMU started) to ready.</summary>
    public double BootSeconds { get; set; }
    /// <summary>Seconds from the first QMP answer (the first blockstats) to ready: the window the operations were counted in.</summary>
    public double SampledSeconds { get; set; }
    /// <summary>Read requests in that window.</summary>
    public long ReadOps { get; set; }
    /// <summary>Write requests.</summary>
    public long WriteOps { get; set; }
    /// <summary>Flush requests.</summary>
    public long FlushOps { get; set; }
    /// <summary>ReadOps + WriteOps + FlushOps.</summary>
    public long Operations { get; set; }
    /// <summary>Operations / SampledSeconds: the guest's mean IOPS while it booted.</summary>
    public double Iops { get; set; }
}

/// <summary>
/// The boot storm: every guest's IOPS from launch to ready, and with a device capacity C the stagger that keeps the
/// boots that overlap under C: MaxOverlappingBoots = floor(C / BootIopsPerGuest), RecommendedStaggerSeconds =
/// BootSeconds / MaxOverlappingBoots (0 when every guest may boot at once).
/// </summary>
public sealed class BootStormResult
{
    /// <summary>Per guest, in start order.</summary>
    public GuestBootIops[] Guests { get; set; } = Array.Empty<GuestBootIops>();
    /// <summary>The mean over the guests of their boot IOPS.</summary>
    public double BootIopsPerGuest { get; set; }
    /// <summary>The mean over the guests of their seconds from launch to ready.</summary>
    public double BootSeconds { get; set; }
    /// <summary>What the device under the overlays sustains (IOPS), given or measured; null when unknown.</summary>
    public double? DeviceIopsCapacity { get; set; }
    /// <summary>Where the capacity came from: "-DeviceIopsCapacity" or the fio probe (Measure-DeviceIopsCapacity) on a folder.</summary>
    public string? CapacitySource { get; set; }
    /// <summary>floor(DeviceIopsCapacity / BootIopsPerGuest): how many boots may run at once under the capacity; null without a capacity or when the boots did no I/O (any number may).</summary>
    public long? MaxOverlappingBoots { get; set; }
    /// <summary>The smallest stagger keeping the overlapping boots' IOPS under the capacity; null without a capacity.</summary>
    public double? RecommendedStaggerSeconds { get; set; }
    /// <summary>The stagger the guests were started with (seconds).</summary>
    public double StaggerSeconds { get; set; }
    /// <summary>True when that stagger was chosen by -StaggerSeconds Auto (from the first guest's boot).</summary>
    public bool StaggerAuto { get; set; }
    /// <summary>The arithmetic, with its numbers.</summary>
    public string Explanation { get; set; } = "";
}

/// <summary>The boot storm's arithmetic on explicit inputs, and the summary over recorded boots.</summary>
public static class BootStorm
{
    /// <summary>
    /// How many boots may overlap and the stagger that keeps them under <paramref name="capacity"/>:
    /// m = floor(C / b); stagger = B / m, 0 when m ≥ <paramref name="guestCount"/> (all may overlap; unknown count: always
    /// B / m), B when even one boot exceeds C (m = 0: one after another). b ≤ 0: any number may overlap, stagger 0.
    /// </summary>
    public static (long? MaxOverlap, double? StaggerSeconds, string Explanation) Recommend(double bootIopsPerGuest, double bootSeconds, double? capacity, int? guestCount)
    {
        string head = $"BootIopsPerGuest {N(bootIopsPerGuest)} IOPS for BootSeconds {N(bootSeconds)} s per boot";
        if (capacity is not double c)
            return (null, null, head + "; no device capacity (give -DeviceIopsCapacity, or install fio to have it measured): no recommendation.");
        head += $"; DeviceIopsCapacity C = {N(c)} IOPS";
        if (!(bootIopsPerGuest > 0))
            return (null, 0, head + ": the boots did no disk I/O, so any number of them may overlap: RecommendedStaggerSeconds = 0.");
        double ratio = c / bootIopsPerGuest;
        long m = ratio >= long.MaxValue ? long.MaxValue : (long)Math.Floor(ratio);
        string overlap = $"MaxOverlappingBoots = floor(C / BootIopsPerGuest) = floor({N(c)} / {N(bootIopsPerGuest)}) = {m}";
        if (m < 1)
            return (0, Up(bootSeconds), $"{head}: {overlap}: one boot alone needs more than C, so boot one after another: RecommendedStaggerSeconds = BootSeconds = {N(Up(bootSeconds))} s (each boot still exceeds C).");
        if (guestCount is int n && m >= n)
            return (m, 0, $"{head}: {overlap} ≥ {n} guest(s), so all boots may overlap: RecommendedStaggerSeconds = 0.");
        double s = Up(bootSeconds / m);
        return (m, s, $"{head}: {overlap}{(guestCount is int k ? $" < {k} guest(s)" : "")}; with a start every s seconds ceil(BootSeconds / s) boots overlap, at most {m} when s ≥ BootSeconds / MaxOverlappingBoots: RecommendedStaggerSeconds = {N(bootSeconds)} / {m} = {N(s)} s.");
    }

    /// <summary>Means over <paramref name="guests"/> and the recommendation.</summary>
    public static BootStormResult Summarize(IReadOnlyList<GuestBootIops> guests, double? capacity, string? capacitySource, int? guestCount, double staggerSeconds, bool staggerAuto)
    {
        var r = new BootStormResult
        {
            Guests = guests.ToArray(),
            BootIopsPerGuest = guests.Count == 0 ? 0 : Math.Round(guests.Average(g => g.Iops), 2),
            BootSeconds = guests.Count == 0 ? 0 : Math.Round(guests.Average(g => g.BootSeconds), 2),
            DeviceIopsCapacity = capacity,
            CapacitySource = capacitySource,
            StaggerSeconds = staggerSeconds,
            StaggerAuto = staggerAuto,
        };
        (r.MaxOverlappingBoots, r.RecommendedStaggerSeconds, r.Explanation) = Recommend(r.BootIopsPerGuest, r.BootSeconds, capacity, guestCount);
        if (guests.Count(g => !g.Ready) is int late and > 0) r.Explanation += $" ({late} guest(s) were not ready within the wait; their figures cover the whole wait.)";
        return r;
    }

    /// <summary>Rounds up to 0.01 s, so the stagger never lets one boot more overlap.</summary>
    static double Up(double seconds) => Math.Ceiling(Math.Round(seconds * 100, 6)) / 100;

    internal static string N(double d) => d.ToString("0.##", CultureInfo.InvariantCulture);
}

/// <summary>Records one guest's boot I/O: query-blockstats at the first QMP answer, then again when the guest is ready.</summary>
public static class BootIopsRecorder
{
    /// <summary>Without a ready line (any disk image): the boot ends when the disk has done no I/O for this many seconds.</summary>
    public const int QuietSeconds = 5;

    /// <summary>
    /// Reads the guest's counters now (right after Start-KvmGuest returned: the first QMP answer), then waits until
    /// <paramref name="readyLine"/> says ready or, with <paramref name="quietRule"/>, the disk has been quiet for
    /// <see cref="QuietSeconds"/> s after some I/O (the boot then ended when the I/O stopped; a disk untouched for twice
    /// that ends the wait too), or <paramref name="timeout"/>.
    /// <paramref name="launchedTicks"/> is the Stopwatch time QEMU was launched. Null when QMP cannot be read at all.
    /// </summary>
    public static async Task<GuestBootIops?> RecordAsync(KvmGuest guest, long launchedTicks, Func<bool>? readyLine, bool quietRule, TimeSpan timeout, IOperationObserver observer, CancellationToken ct)
    {
        var first = await ReadAsync(guest, ct).ConfigureAwait(false);
        if (first is null) { observer.Warning($"Guest '{guest.Name}': no block statistics over QMP, so its boot IOPS are unknown."); return null; }
        long firstTicks = Stopwatch.GetTimestamp();
        var last = first.Value;
        long lastChange = firstTicks, lastRead = firstTicks;
        string by = "timeout";
        long endTicks;
        while (true)
        {
            await Task.Delay(250, ct).ConfigureAwait(false);
            long now = Stopwatch.GetTimestamp();
            if (readyLine is not null && readyLine())
            {
                if (await ReadAsync(guest, ct).ConfigureAwait(false) is { } c) last = c;
                endTicks = Stopwatch.GetTimestamp();
                by = "ready line";
                break;
            }
            if (quietRule && Stopwatch.GetElapsedTime(lastRead, now) >= TimeSpan.FromSeconds(1))
            {
                lastRead = now;
                var c = await ReadAsync(guest, ct).ConfigureAwait(false);
                if (c is null) { endTicks = now; by = "guest gone"; break; }
                if (c.Value.Total != last.Total) { last = c.Value; lastChange = now; }
                else if (last.Total > first.Value.Total && Stopwatch.GetElapsedTime(lastChange, now) >= TimeSpan.FromSeconds(QuietSeconds))
                {
                    endTicks = lastChange;
                    by = "disk quiet";
                    break;
                }
                else if (last.Total == first.Value.Total && Stopwatch.GetElapsedTime(firstTicks, now) >= TimeSpan.FromSeconds(2 * QuietSeconds))
                {
                    endTicks = now; // a boot that does not touch its disk (kernel and initramfs): nothing to wait for
                    by = "no disk I/O";
                    break;
                }
            }
            if (Stopwatch.GetElapsedTime(firstTicks, now) > timeout)
            {
                if (await ReadAsync(guest, ct).ConfigureAwait(false) is { } c) last = c;
                endTicks = Stopwatch.GetTimestamp();
                break;
            }
        }
        double sampled = Math.Max(1e-3, Stopwatch.GetElapsedTime(firstTicks, endTicks).TotalSeconds);
        long r = last.Read - first.Value.Read, w = last.Write - first.Value.Write, f = last.Flush - first.Value.Flush;
        var result = new GuestBootIops
        {
            Name = guest.Name,
            Ready = by is "ready line" or "disk quiet" or "no disk I/O",
            ReadyBy = by,
            BootSeconds = Math.Round(Stopwatch.GetElapsedTime(launchedTicks, endTicks).TotalSeconds, 2),
            SampledSeconds = Math.Round(sampled, 2),
            ReadOps = r,
            WriteOps = w,
            FlushOps = f,
            Operations = r + w + f,
            Iops = Math.Round((r + w + f) / sampled, 2),
        };
        observer.Verbose($"Guest '{guest.Name}' booted in {result.BootSeconds} s ({by}): {result.Operations} disk operations ({r} reads, {w} writes, {f} flushes) in {result.SampledSeconds} s = {result.Iops} IOPS.");
        return result;
    }

    readonly record struct Ops(long Read, long Write, long Flush)
    {
        public long Total => Read + Write + Flush;
    }

    static async Task<Ops?> ReadAsync(KvmGuest guest, CancellationToken ct)
    {
        if (guest.QmpSocket is null) return null;
        try
        {
            await using var qmp = await KvmGuestInventory.ConnectAsync(guest.QmpSocket, TimeSpan.FromSeconds(5), ct).ConfigureAwait(false);
            var counters = BlockStatsCalculator.Parse(await qmp.ExecuteAsync("query-blockstats", null, ct).ConfigureAwait(false));
            return new Ops(counters.Sum(c => c.ReadOps), counters.Sum(c => c.WriteOps), counters.Sum(c => c.FlushOps));
        }
        catch (KvmOcException) { return null; }
    }
}

/// <summary>-StaggerSeconds Auto (Start-KvmGuest, kvmoc guest start): the capacity, then the first guest's boot decides the stagger of the rest.</summary>
public static class AutoStagger
{
    /// <summary>The capacity: <paramref name="given"/>, or measured once by Measure-DeviceIopsCapacity's fio probe (5 s) in <paramref name="folder"/>; says which under -Verbose.</summary>
    public static async Task<(double Iops, string Source)> CapacityAsync(double? given, string folder, IOperationObserver observer, CancellationToken ct, string purpose = "-StaggerSeconds Auto")
    {
        if (given is double c)
        {
            observer.Verbose($"{purpose}: the device's capacity is {BootStorm.N(c)} IOPS (-DeviceIopsCapacity).");
            return (c, "-DeviceIopsCapacity");
        }
        observer.Verbose($"{purpose} needs the device's IOPS capacity and no -DeviceIopsCapacity was given: measuring it once with fio (Measure-DeviceIopsCapacity, 5 s of 4 KiB random read/write) in {folder}.");
        var m = await DeviceIopsCapacityProbe.MeasureAsync(new DeviceIopsCapacityOptions { Path = folder }, observer, ct).ConfigureAwait(false);
        observer.Verbose($"Measured capacity: {BootStorm.N(m.Iops)} IOPS on {m.Device ?? folder}.");
        return (m.Iops, $"Measure-DeviceIopsCapacity (fio) on {folder}" + (m.Device is null ? "" : $" ({m.Device})"));
    }

    /// <summary>Records the first guest's boot (its ready line, else the disk going quiet) and returns the boot storm with the stagger for the rest.</summary>
    public static async Task<BootStormResult> FromFirstGuestAsync(KvmGuest first, long launchedTicks, double capacity, string source, TimeSpan timeout, IOperationObserver observer, CancellationToken ct)
    {
        observer.Verbose($"-StaggerSeconds Auto: waiting for guest '{first.Name}' to finish booting (the tiny guest's ready line, or {BootIopsRecorder.QuietSeconds} s without disk I/O; at most {timeout.TotalSeconds:0} s) to measure its boot IOPS.");
        var boot = await BootIopsRecorder.RecordAsync(first, launchedTicks, () => SerialLogSays(first, TinyGuestInit.ReadyMarker), quietRule: true, timeout, observer, ct).ConfigureAwait(false)
            ?? throw new KvmOcException(ErrorKind.InvalidOperation, "BootIopsUnknown", $"-StaggerSeconds Auto: the block statistics of guest '{first.Name}' could not be read over QMP.", first.Name,
                "Give a number of seconds to -StaggerSeconds.");
        var storm = BootStorm.Summarize(new[] { boot }, capacity, source, null, 0, true);
        storm.StaggerSeconds = storm.RecommendedStaggerSeconds ?? 0;
        observer.Verbose($"-StaggerSeconds Auto: {storm.Explanation}");
        return storm;
    }

    /// <summary>True when the guest's serial log contains <paramref name="marker"/>.</summary>
    public static bool SerialLogSays(KvmGuest guest, string marker)
    {
        try { return guest.SerialLog is not null && File.Exists(guest.SerialLog) && File.ReadAllText(guest.SerialLog).Contains(marker, StringComparison.Ordinal); }
        catch (IOException) { return false; }
    }
}
