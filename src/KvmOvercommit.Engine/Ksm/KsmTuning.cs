using System.Globalization;

namespace KvmOvercommit.Engine.Ksm;

/// <summary>Named KSM settings: the kernel's defaults, the blog's aggressive scan rate, or the kernel's own scan-time advisor.</summary>
public enum KsmTuningProfile
{
    /// <summary>Kernel defaults: advisor off, pages_to_scan 100, sleep_millisecs 20.</summary>
    Default,
    /// <summary>The blog's setting: advisor off, pages_to_scan 20000, sleep_millisecs 20 (fast merging, ksmd busy).</summary>
    Aggressive,
    /// <summary>advisor_mode = scan-time: the kernel picks pages_to_scan itself (kernel 6.8 and later).</summary>
    Advisor,
}

/// <summary>
/// The writable KSM knobs. Every property is optional: null means "leave as it is". Returned by Set-KsmTuning
/// -PassThru as the settings it replaced, so piping it back into Set-KsmTuning restores them.
/// </summary>
public sealed class KsmTuning
{
    /// <summary>The host these settings are from (informational).</summary>
    public string? HostName { get; set; }
    /// <summary>run: Stopped, Merging or Unmerging.</summary>
    public KsmRunState? Run { get; set; }
    /// <summary>pages_to_scan.</summary>
    public long? PagesToScan { get; set; }
    /// <summary>sleep_millisecs.</summary>
    public long? SleepMilliseconds { get; set; }
    /// <summary>max_page_sharing (changes only while no pages are merged).</summary>
    public long? MaxPageSharing { get; set; }
    /// <summary>merge_across_nodes (changes only while no pages are merged).</summary>
    public bool? MergeAcrossNodes { get; set; }
    /// <summary>use_zero_pages.</summary>
    public bool? UseZeroPages { get; set; }
    /// <summary>smart_scan.</summary>
    public bool? SmartScan { get; set; }
    /// <summary>stable_node_chains_prune_millisecs.</summary>
    public long? StableNodeChainsPruneMilliseconds { get; set; }
    /// <summary>advisor_mode: none or scan-time.</summary>
    public string? AdvisorMode { get; set; }
    /// <summary>advisor_max_cpu (percent).</summary>
    public long? AdvisorMaxCpu { get; set; }
    /// <summary>advisor_target_scan_time (seconds).</summary>
    public long? AdvisorTargetScanTime { get; set; }
    /// <summary>advisor_min_pages_to_scan.</summary>
    public long? AdvisorMinPagesToScan { get; set; }
    /// <summary>advisor_max_pages_to_scan.</summary>
    public long? AdvisorMaxPagesToScan { get; set; }

    /// <summary>Every writable setting of a reading (what a snapshot captures).</summary>
    public static KsmTuning FromStat(KsmStat s) => new()
    {
        HostName = s.HostName,
        Run = s.Run,
        PagesToScan = s.PagesToScan,
        SleepMilliseconds = s.SleepMilliseconds,
        MaxPageSharing = s.MaxPageSharing,
        MergeAcrossNodes = s.MergeAcrossNodes,
        UseZeroPages = s.UseZeroPages,
        SmartScan = s.SmartScan,
        StableNodeChainsPruneMilliseconds = s.StableNodeChainsPruneMilliseconds,
        AdvisorMode = s.AdvisorMode,
        AdvisorMaxCpu = s.AdvisorMaxCpu,
        AdvisorTargetScanTime = s.AdvisorTargetScanTime,
        AdvisorMinPagesToScan = s.AdvisorMinPagesToScan,
        AdvisorMaxPagesToScan = s.AdvisorMaxPagesToScan,
    };

    /// <summary>The settings a profile stands for. Advisor needs a kernel with advisor_mode (checked when planning).</summary>
    public static KsmTuning ForProfile(KsmTuningProfile profile) => profile switch
    {
        KsmTuningProfile.Default => new KsmTuning { PagesToScan = 100, SleepMilliseconds = 20 },
        KsmTuningProfile.Aggressive => new KsmTuning { PagesToScan = 20000, SleepMilliseconds = 20 },
        KsmTuningProfile.Advisor => new KsmTuning { AdvisorMode = "scan-time" },
        _ => throw new KvmOcException(ErrorKind.InvalidArgument, "KsmInvalidProfile", $"Unknown profile {profile}.", profile),
    };

    /// <summary>
    /// A profile with the user's explicit settings on top (Set-KsmTuning -Profile P -Knob v, kvmoc ksm set --profile).
    /// -Profile Advisor with -PagesToScan is refused (KsmAdvisorOwnsPagesToScan) unless -AdvisorMode switches the
    /// advisor off again: the scan-time advisor sets pages_to_scan itself and the kernel refuses the write.
    /// </summary>
    public static KsmTuning ForProfile(KsmTuningProfile profile, KsmTuning explicitSettings)
    {
        if (profile == KsmTuningProfile.Advisor && explicitSettings.PagesToScan is not null && explicitSettings.AdvisorMode is null or "scan-time")
            throw new KvmOcException(ErrorKind.InvalidArgument, "KsmAdvisorOwnsPagesToScan",
                "-Profile Advisor sets advisor_mode to scan-time, and then the advisor sets pages_to_scan itself (the kernel refuses the write): -PagesToScan cannot go with it.",
                KsmKnob.PagesToScan, "Leave -PagesToScan out, bound the advisor with -AdvisorMinPagesToScan/-AdvisorMaxPagesToScan, or use -Profile Default/Aggressive.");
        return ForProfile(profile).With(explicitSettings);
    }

    /// <summary>This tuning with every non-null value of <paramref name="over"/> taking precedence.</summary>
    public KsmTuning With(KsmTuning? over)
    {
        var r = (KsmTuning)MemberwiseClone();
        if (over is null) return r;
        foreach (var k in Knobs)
        {
            var v = k.Get(over);
            if (v is not null) k.Set(r, v);
        }
        return r;
    }

    /// <summary>True when no knob is set (a method, so it is not part of the data).</summary>
    public bool IsEmpty() => Knobs.All(k => k.Get(this) is null);

    /// <summary>Knobs whose values differ between two tunings (both values shown), for tests and verification.</summary>
    public List<string> Differences(KsmTuning other) => Knobs
        .Where(k => k.Format(k.Get(this)) != k.Format(k.Get(other)))
        .Select(k => $"{k.File}: {k.Format(k.Get(this)) ?? "(null)"} != {k.Format(k.Get(other)) ?? "(null)"}")
        .ToList();

    /// <summary>The knobs in a fixed order: sysfs file, property accessors, formatting for sysfs.</summary>
    internal static readonly KsmKnobInfo[] Knobs =
    {
        new(KsmKnob.Run, nameof(Run), t => t.Run, (t, v) => t.Run = (KsmRunState?)v, s => s.Run),
        new(KsmKnob.PagesToScan, nameof(PagesToScan), t => t.PagesToScan, (t, v) => t.PagesToScan = (long?)v, s => s.PagesToScan),
        new(KsmKnob.SleepMilliseconds, nameof(SleepMilliseconds), t => t.SleepMilliseconds, (t, v) => t.SleepMilliseconds = (long?)v, s => s.SleepMilliseconds),
        new(KsmKnob.MaxPageSharing, nameof(MaxPageSharing), t => t.MaxPageSharing, (t, v) => t.MaxPageSharing = (long?)v, s => s.MaxPageSharing),
        new(KsmKnob.MergeAcrossNodes, nameof(MergeAcrossNodes), t => t.MergeAcrossNodes, (t, v) => t.MergeAcrossNodes = (bool?)v, s => s.MergeAcrossNodes),
        new(KsmKnob.UseZeroPages, nameof(UseZeroPages), t => t.UseZeroPages, (t, v) => t.UseZeroPages = (bool?)v, s => s.UseZeroPages),
        new(KsmKnob.SmartScan, nameof(SmartScan), t => t.SmartScan, (t, v) => t.SmartScan = (bool?)v, s => s.SmartScan),
        new(KsmKnob.StableNodeChainsPruneMilliseconds, nameof(StableNodeChainsPruneMilliseconds), t => t.StableNodeChainsPruneMilliseconds, (t, v) => t.StableNodeChainsPruneMilliseconds = (long?)v, s => s.StableNodeChainsPruneMilliseconds),
        new(KsmKnob.AdvisorMode, nameof(AdvisorMode), t => t.AdvisorMode, (t, v) => t.AdvisorMode = (string?)v, s => s.AdvisorMode),
        new(KsmKnob.AdvisorMaxCpu, nameof(AdvisorMaxCpu), t => t.AdvisorMaxCpu, (t, v) => t.AdvisorMaxCpu = (long?)v, s => s.AdvisorMaxCpu),
        new(KsmKnob.AdvisorTargetScanTime, nameof(AdvisorTargetScanTime), t => t.AdvisorTargetScanTime, (t, v) => t.AdvisorTargetScanTime = (long?)v, s => s.AdvisorTargetScanTime),
        new(KsmKnob.AdvisorMinPagesToScan, nameof(AdvisorMinPagesToScan), t => t.AdvisorMinPagesToScan, (t, v) => t.AdvisorMinPagesToScan = (long?)v, s => s.AdvisorMinPagesToScan),
        new(KsmKnob.AdvisorMaxPagesToScan, nameof(AdvisorMaxPagesToScan), t => t.AdvisorMaxPagesToScan, (t, v) => t.AdvisorMaxPagesToScan = (long?)v, s => s.AdvisorMaxPagesToScan),
    };
}

/// <summary>One writable knob: its sysfs file and how to get/set/format it.</summary>
internal sealed record KsmKnobInfo(string File, string Property, Func<KsmTuning, object?> Get, Action<KsmTuning, object?> Set, Func<KsmStat, object?> Current)
{
    /// <summary>The text the kernel expects in the file.</summary>
    public string? Format(object? v) => v switch
    {
        null => null,
        KsmRunState r => ((int)r).ToString(CultureInfo.InvariantCulture),
        bool b => b ? "1" : "0",
        long l => l.ToString(CultureInfo.InvariantCulture),
        string s => s.Trim(),
        _ => Convert.ToString(v, CultureInfo.InvariantCulture),
    };
}

/// <summary>Parses the user's words for run: Stop/Stopped/0, Merge/Merging/1, Unmerge/Unmerging/2.</summary>
public static class KsmRunStateParser
{
    /// <summary>The state a word names; InvalidArgument otherwise.</summary>
    public static KsmRunState Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "stop" or "stopped" or "0" => KsmRunState.Stopped,
        "merge" or "merging" or "1" => KsmRunState.Merging,
        "unmerge" or "unmerging" or "2" => KsmRunState.Unmerging,
        _ => throw new KvmOcException(ErrorKind.InvalidArgument, "KsmInvalidValue", $"run = '{text}' is not valid: use Stop, Merge or Unmerge.", KsmKnob.Run),
    };
}
