namespace KvmOvercommit.Engine.Ksm.AutoTune;

/// <summary>What a run of the adaptive KSM tuner did: how long, how often it changed the rate, what it saved, what ksmd cost.</summary>
public sealed class KsmAutoTuneResult
{
    /// <summary>The host tuned.</summary>
    public string HostName { get; set; } = "";
    /// <summary>When the tuner started (UTC).</summary>
    public DateTimeOffset StartTime { get; set; }
    /// <summary>How long it ran.</summary>
    public TimeSpan Duration { get; set; }
    /// <summary>How many times new mergeable memory woke it into a burst.</summary>
    public int Wakeups { get; set; }
    /// <summary>The rate changes it made, in order (the decision log).</summary>
    public List<KsmAutoTuneDecision> Decisions { get; set; } = new();
    /// <summary>pages_sharing at the end.</summary>
    public long PagesSharing { get; set; }
    /// <summary>Memory saved at the end in bytes ((pages_sharing + ksm_zero_pages) × page size).</summary>
    public long SavedBytes { get; set; }
    /// <summary>SavedBytes in MiB.</summary>
    public double SavedMiB => Units.ToMiB(SavedBytes);
    /// <summary>CPU seconds ksmd used while the tuner ran (utime + stime of the ksmd thread).</summary>
    public double? KsmdCpuSeconds { get; set; }
    /// <summary>ksmd's CPU use over the run in percent of one core.</summary>
    public double? KsmdCpuPercent => KsmdCpuSeconds is double s && Duration.TotalSeconds > 0 ? Math.Round(100 * s / Duration.TotalSeconds, 2) : null;
    /// <summary>pages_to_scan and sleep_millisecs the tuner found when it started.</summary>
    public KsmTuning Replaced { get; set; } = new();
    /// <summary>pages_to_scan left in place at exit (a low rate, never the burst rate).</summary>
    public long ExitPagesToScan { get; set; }
    /// <summary>sleep_millisecs left in place at exit.</summary>
    public long ExitSleepMilliseconds { get; set; }
    /// <summary>True when Ctrl+C, SIGTERM or the caller's cancellation ended the run (rather than -Duration).</summary>
    public bool Stopped { get; set; }
}
