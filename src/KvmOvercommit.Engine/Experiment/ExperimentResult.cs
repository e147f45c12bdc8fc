namespace KvmOvercommit.Engine.Experiment;

/// <summary>
/// What Invoke-OvercommitExperiment returns: the setup, one <see cref="ExperimentProfileResult"/> per KSM profile
/// (with per-guest figures and the samples), the report files and how the cleanup went. Plain data: survives
/// remoting and JSON; times are UTC, sizes are bytes with MiB convenience properties.
/// </summary>
[OutputObject]
public sealed class ExperimentResult
{
    /// <summary>-Network Isolated: the blog's loop (namespace, lease file, inventory, per guest IPAddress, AnsibleReachable, SecondsToReachable); null otherwise.</summary>
    public KvmOvercommit.Engine.Fleet.FleetReachResult? Fleet { get; set; }
    /// <summary>-IoLoadPercent: the load on a fraction of the fleet (per guest IoLoaded, IopsIdle, IopsLoaded; the device's IOPS); null otherwise.</summary>
    public ExperimentIoLoadResult? IoLoad { get; set; }

    /// <summary>The boot storm: each guest's IOPS from launch to ready, BootIopsPerGuest, BootSeconds, and with a device capacity MaxOverlappingBoots and RecommendedStaggerSeconds.</summary>
    public BootStormResult? BootStorm { get; set; }

    /// <summary>The host the experiment ran on.</summary>
    public string HostName { get; set; } = "";
    /// <summary>The run id in the guest and overlay names.</summary>
    public string RunId { get; set; } = "";
    /// <summary>When it started (UTC).</summary>
    public DateTimeOffset StartTime { get; set; }
    /// <summary>When it ended, cleanup included (UTC).</summary>
    public DateTimeOffset EndTime { get; set; }
    /// <summary>EndTime − StartTime.</summary>
    public TimeSpan Duration { get; set; }
    /// <summary>The base image of the overlays.</summary>
    public string BaseImage { get; set; } = "";
    /// <summary>True when the guests were the tiny guest (kernel + initramfs, overlay on a small empty base).</summary>
    public bool TinyGuest { get; set; }
    /// <summary>The tiny guest's kernel arguments (the fill pattern), or null.</summary>
    public string? KernelArguments { get; set; }
    /// <summary>Number of guests.</summary>
    public int GuestCount { get; set; }
    /// <summary>Guest RAM in MiB.</summary>
    public long MemoryMB { get; set; }
    /// <summary>vCPUs per guest.</summary>
    public int CpuCount { get; set; }
    /// <summary>kvm or tcg.</summary>
    public string Accelerator { get; set; } = "";
    /// <summary>Host logical CPUs.</summary>
    public int HostCpus { get; set; }
    /// <summary>Host memory (MemTotal) in bytes.</summary>
    public long HostMemoryBytes { get; set; }
    /// <summary>Guest names.</summary>
    public string[] Guests { get; set; } = Array.Empty<string>();
    /// <summary>The overlays the experiment created (deleted at the end unless KeepGuests).</summary>
    public string[] Overlays { get; set; } = Array.Empty<string>();
    /// <summary>Where the overlays were.</summary>
    public string WorkDirectory { get; set; } = "";
    /// <summary>One entry per profile, in the order run.</summary>
    public ExperimentProfileResult[] Profiles { get; set; } = Array.Empty<ExperimentProfileResult>();
    /// <summary>The profile with the largest total saving.</summary>
    public string? BestProfile { get; set; }
    /// <summary>Files written under ReportPath (JSON, CSV, SVG).</summary>
    public string[] ReportFiles { get; set; } = Array.Empty<string>();
    /// <summary>True when the guests and overlays were left in place (-KeepGuests).</summary>
    public bool GuestsKept { get; set; }
    /// <summary>True when every KSM setting was back to its value before the experiment.</summary>
    public bool KsmRestored { get; set; }
    /// <summary>KSM settings that still differed after the restore (empty when exact).</summary>
    public string[] KsmDifferences { get; set; } = Array.Empty<string>();
    /// <summary>Problems met while cleaning up (a guest that would not stop, a file that could not be deleted).</summary>
    public string[] CleanupProblems { get; set; } = Array.Empty<string>();
    /// <summary>Wall time of each phase, in the order run (network, overlays and boot, leases/inventory/Ansible, I/O load, each profile, cleanup).</summary>
    public ExperimentPhase[] Phases { get; set; } = Array.Empty<ExperimentPhase>();
    /// <summary>The memory cgroup the guests ran in, or null.</summary>
    public string? Cgroup { get; set; }
    /// <summary>The cgroup's limit.</summary>
    public long? CgroupLimitBytes { get; set; }
    /// <summary>-ValidateEstimate: the check of the estimate against the cgroup, or null.</summary>
    public ExperimentValidation? Validation { get; set; }
    /// <summary>-ValidateEstimate: the guests the estimate said would still fit in the cgroup.</summary>
    public int? PredictedAdditionalGuests => Validation?.PredictedAdditionalGuests;
    /// <summary>-ValidateEstimate: the guests that really fitted before the next one did not.</summary>
    public int? ActualAdditionalGuests => Validation?.ActualAdditionalGuests;
    /// <summary>-ValidateEstimate: (predicted − actual) / actual in percent.</summary>
    public double? EstimateErrorPercent => Validation?.ErrorPercent;
    /// <summary>Guest memory committed (sum of -m) in MiB.</summary>
    public double CommittedMiB => Units.ToMiB(GuestCount * MemoryMB * Units.MiB);
    /// <summary>The best profile's total saving in MiB.</summary>
    public double? BestTotalSavedMiB => Profiles.FirstOrDefault(p => p.Profile.ToString() == BestProfile)?.TotalSavedMiB;
    /// <summary>One line per profile: name, KSM saved and time to 90 %.</summary>
    public string Summary => string.Join("; ", Profiles.Select(p => $"{p.Profile} {p.SavedMiB:0.#} MiB" + (p.TimeTo90PercentSeconds is double t ? $" (90% in {t:0.#} s)" : "")));
}

/// <summary>One KSM profile's run: from a fresh unmerge, the savings reached, how fast, at what ksmd cost, and the samples.</summary>
public sealed class ExperimentProfileResult
{
    /// <summary>The profile.</summary>
    public ExperimentProfile Profile { get; set; }
    /// <summary>When merging started, after the unmerge (UTC).</summary>
    public DateTimeOffset StartTime { get; set; }
    /// <summary>How long the profile ran (sampling time).</summary>
    public TimeSpan Duration { get; set; }
    /// <summary>How long the fresh unmerge before it took.</summary>
    public TimeSpan UnmergeDuration { get; set; }
    /// <summary>True when it ended because the savings stopped growing (-UntilStable).</summary>
    public bool Stable { get; set; }
    /// <summary>pages_to_scan and sleep_millisecs the profile set (the adaptive tuner changes them as it goes).</summary>
    public string Tuning { get; set; } = "";
    /// <summary>Guest memory committed: sum of -m, bytes.</summary>
    public long CommittedBytes { get; set; }
    /// <summary>Sum of the guests' resident memory (RSS) after the unmerge, before merging.</summary>
    public long ResidentBaselineBytes { get; set; }
    /// <summary>Sum of the guests' RSS at the end.</summary>
    public long ResidentBytes { get; set; }
    /// <summary>ResidentBaselineBytes − ResidentBytes: what the guests gave back in RSS (e.g. zero pages dropped when KSM splits huge pages).</summary>
    public long ResidentSavingBytes { get; set; }
    /// <summary>KSM's saving at the end: (pages_sharing + ksm_zero_pages) × page size.</summary>
    public long SavedBytes { get; set; }
    /// <summary>The largest KSM saving seen.</summary>
    public long PeakSavedBytes { get; set; }
    /// <summary>What the guests really cost the host at the end: ResidentBytes − SavedBytes.</summary>
    public long EffectiveResidentBytes { get; set; }
    /// <summary>ResidentBaselineBytes − EffectiveResidentBytes: KSM's saving plus the resident saving.</summary>
    public long TotalSavedBytes { get; set; }
    /// <summary>Time from the start until KSM's saving first reached 90 % of its final value (null when nothing was saved).</summary>
    public TimeSpan? TimeTo90Percent { get; set; }
    /// <summary>CPU seconds the ksmd thread used during the profile.</summary>
    public double? KsmdCpuSeconds { get; set; }
    /// <summary>ksmd's average CPU use in percent of one core.</summary>
    public double? KsmdCpuPercent { get; set; }
    /// <summary>Overcommit achieved: memory committed / memory the guests really use (EffectiveResidentBytes).</summary>
    public double OvercommitRatio { get; set; }
    /// <summary>Guests of this kind that would still fit (Get-OvercommitReport's estimate over the experiment's guests at the end).</summary>
    public int? EstimatedAdditionalGuests { get; set; }
    /// <summary>How the estimate was computed, with its numbers.</summary>
    public string? EstimateExplanation { get; set; }
    /// <summary>Adaptive only: rate changes the tuner made.</summary>
    public int? TunerDecisions { get; set; }
    /// <summary>Per guest at the end of the profile.</summary>
    public ExperimentGuestResult[] Guests { get; set; } = Array.Empty<ExperimentGuestResult>();
    /// <summary>The samples, the first at time 0 (right after the unmerge).</summary>
    public ExperimentSample[] Samples { get; set; } = Array.Empty<ExperimentSample>();

    /// <summary>CommittedBytes in MiB.</summary>
    public double CommittedMiB => Units.ToMiB(CommittedBytes);
    /// <summary>ResidentBytes in MiB.</summary>
    public double ResidentMiB => Units.ToMiB(ResidentBytes);
    /// <summary>ResidentSavingBytes in MiB.</summary>
    public double ResidentSavingMiB => Units.ToMiB(ResidentSavingBytes);
    /// <summary>SavedBytes in MiB.</summary>
    public double SavedMiB => Units.ToMiB(SavedBytes);
    /// <summary>EffectiveResidentBytes in MiB.</summary>
    public double EffectiveResidentMiB => Units.ToMiB(EffectiveResidentBytes);
    /// <summary>TotalSavedBytes in MiB.</summary>
    public double TotalSavedMiB => Units.ToMiB(TotalSavedBytes);
    /// <summary>TimeTo90Percent in seconds.</summary>
    public double? TimeTo90PercentSeconds => TimeTo90Percent is TimeSpan t ? Math.Round(t.TotalSeconds, 2) : null;
}

/// <summary>One guest at the end of one profile.</summary>
public sealed class ExperimentGuestResult
{
    /// <summary>The guest name.</summary>
    public string Name { get; set; } = "";
    /// <summary>The QEMU process id.</summary>
    public int Id { get; set; }
    /// <summary>The profile.</summary>
    public ExperimentProfile Profile { get; set; }
    /// <summary>Memory committed to the guest (-m) in bytes.</summary>
    public long MemoryBytes { get; set; }
    /// <summary>RSS after the unmerge, before merging.</summary>
    public long? RssBaselineBytes { get; set; }
    /// <summary>RSS at the end.</summary>
    public long? RssBytes { get; set; }
    /// <summary>RssBaselineBytes − RssBytes.</summary>
    public long? ResidentSavingBytes { get; set; }
    /// <summary>Pages of this guest KSM merged (ksm_merging_pages; counts the KSM page itself in every sharer).</summary>
    public long? KsmMergingPages { get; set; }
    /// <summary>KsmMergingPages × page size.</summary>
    public long? KsmMergedBytes { get; set; }
    /// <summary>ksm_process_profit in bytes.</summary>
    public long? KsmProfitBytes { get; set; }
    /// <summary>Memory committed / (RSS − KSM-merged): this guest's own overcommit ratio.</summary>
    public double? OvercommitRatio { get; set; }
    /// <summary>MemoryBytes in MiB.</summary>
    public double MemoryMiB => Units.ToMiB(MemoryBytes);
    /// <summary>RssBytes in MiB.</summary>
    public double? RssMiB => Units.ToMiB(RssBytes);
    /// <summary>KsmMergedBytes in MiB.</summary>
    public double? KsmMergedMiB => Units.ToMiB(KsmMergedBytes);
}

/// <summary>One sample of an experiment: KSM's counters, the guests' resident memory and ksmd's CPU.</summary>
public sealed class ExperimentSample
{
    /// <summary>The profile.</summary>
    public ExperimentProfile Profile { get; set; }
    /// <summary>0 for the reading right after the unmerge, then 1, 2, …</summary>
    public int Index { get; set; }
    /// <summary>When it was read (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
    /// <summary>Seconds since the profile started.</summary>
    public double ElapsedSeconds { get; set; }
    /// <summary>pages_to_scan at this sample.</summary>
    public long? PagesToScan { get; set; }
    /// <summary>sleep_millisecs at this sample.</summary>
    public long? SleepMilliseconds { get; set; }
    /// <summary>pages_shared.</summary>
    public long PagesShared { get; set; }
    /// <summary>pages_sharing.</summary>
    public long PagesSharing { get; set; }
    /// <summary>KSM's saving: (pages_sharing + ksm_zero_pages) × page size.</summary>
    public long SavedBytes { get; set; }
    /// <summary>Sum of the guests' RSS.</summary>
    public long ResidentBytes { get; set; }
    /// <summary>Resident baseline − ResidentBytes.</summary>
    public long ResidentSavingBytes { get; set; }
    /// <summary>SavedBytes + ResidentSavingBytes.</summary>
    public long TotalSavedBytes { get; set; }
    /// <summary>ksmd CPU seconds since the profile started.</summary>
    public double? KsmdCpuSeconds { get; set; }
    /// <summary>ksmd CPU since the previous sample, percent of one core.</summary>
    public double? KsmdCpuPercent { get; set; }
    /// <summary>full_scans.</summary>
    public long? FullScans { get; set; }
    /// <summary>Each guest's RSS in bytes, in the order of ExperimentResult.Guests (0 for a guest that is gone).</summary>
    public long[] GuestRssBytes { get; set; } = Array.Empty<long>();
    /// <summary>Each guest's KSM-merged pages (ksm_merging_pages), in the same order (0 when unknown).</summary>
    public long[] GuestKsmMergingPages { get; set; } = Array.Empty<long>();
    /// <summary>IOPS of the disk under the overlays since the previous sample (Measure-DeviceIops); null for the first sample or when unknown.</summary>
    public double? DeviceIops { get; set; }
    /// <summary>The sum of the guests' IOPS since the previous sample (query-blockstats); null for the first sample or when unknown.</summary>
    public double? GuestIops { get; set; }
    /// <summary>SavedBytes in MiB.</summary>
    public double SavedMiB => Units.ToMiB(SavedBytes);
    /// <summary>TotalSavedBytes in MiB.</summary>
    public double TotalSavedMiB => Units.ToMiB(TotalSavedBytes);
}

/// <summary>One phase of the experiment and its wall time.</summary>
public sealed class ExperimentPhase
{
    /// <summary>What ran ("overlays and boot", "profile Aggressive", "cleanup" …).</summary>
    public string Name { get; set; } = "";
    /// <summary>Its wall time in seconds.</summary>
    public double Seconds { get; set; }
    /// <inheritdoc/>
    public override string ToString() => $"{Name} {Seconds:0.#} s";
}

/// <summary>Times the phases of a run; a phase that throws is recorded too (its time up to the failure).</summary>
sealed class ExperimentPhaseClock
{
    readonly List<ExperimentPhase> _phases = new();
    public ExperimentPhase[] Phases => _phases.ToArray();
    public void Add(string name, TimeSpan elapsed) => _phases.Add(new ExperimentPhase { Name = name, Seconds = Math.Round(elapsed.TotalSeconds, 2) });
    public async Task<T> TimeAsync<T>(string name, Func<Task<T>> phase)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        try { return await phase().ConfigureAwait(false); }
        finally { Add(name, watch.Elapsed); }
    }
}

/// <summary>-ValidateEstimate: Get-OvercommitReport -Cgroup's estimate against what really fitted.</summary>
[OutputObject]
public sealed class ExperimentValidation
{
    /// <summary>The cgroup filled.</summary>
    public string Cgroup { get; set; } = "";
    /// <summary>Its limit.</summary>
    public long LimitBytes { get; set; }
    /// <summary>The guests in it when the estimate was made.</summary>
    public int BaseGuests { get; set; }
    /// <summary>What the estimate counted per guest (CgroupPerGuestBytes).</summary>
    public long? PerGuestBytes { get; set; }
    /// <summary>EstimatedAdditionalGuests of Get-OvercommitReport -Cgroup.</summary>
    public int? PredictedAdditionalGuests { get; set; }
    /// <summary>Guests booted into the cgroup (ready, nothing OOM-killed) before the next one no longer fitted.</summary>
    public int ActualAdditionalGuests { get; set; }
    /// <summary>(predicted − actual) / actual in percent; null when nothing fitted or nothing was predicted.</summary>
    public double? ErrorPercent { get; set; }
    /// <summary>|predicted − actual| ≤ 15% of actual or ≤ 1 guest.</summary>
    public bool WithinGoal { get; set; }
    /// <summary>Why the last guest did not fit: the OOM kill (with its victim) or the guest that did not get ready.</summary>
    public string? StopReason { get; set; }
    /// <summary>The guests the OOM killer ended.</summary>
    public string[] Victims { get; set; } = Array.Empty<string>();
    /// <summary>OOM kills in the cgroup during the validation.</summary>
    public long OomKills { get; set; }
    /// <summary>The cgroup's charge after each guest that fitted, in bytes.</summary>
    public long[] UsageAfterEachBytes { get; set; } = Array.Empty<long>();
    /// <summary>The estimate's arithmetic (the report's cgroup lines).</summary>
    public string[] Explanation { get; set; } = Array.Empty<string>();
    /// <inheritdoc />
    public override string ToString() => $"predicted {PredictedAdditionalGuests?.ToString() ?? "–"}, actual {ActualAdditionalGuests} more guest(s) in {Cgroup} ({(ErrorPercent is double e ? e.ToString("0.#", System.Globalization.CultureInfo.InvariantCulture) + "%" : "–")}): {StopReason}";
}
