namespace KvmOvercommit.Engine.Ksm.AutoTune;

/// <summary>What the adaptive tuner is doing.</summary>
public enum KsmAutoTuneMode
{
    /// <summary>New mergeable memory: scanning hard until a full pass stops yielding merges.</summary>
    Burst,
    /// <summary>A full pass yielded (almost) nothing: stepping the rate down towards idle.</summary>
    Backoff,
    /// <summary>Converged: scanning at the idle rate, watching for new mergeable memory.</summary>
    Idle,
}

/// <summary>One decision of the adaptive KSM tuner: the rate to set and why (the -Verbose decision log).</summary>
public sealed class KsmAutoTuneDecision
{
    /// <summary>Time since the tuner started.</summary>
    public TimeSpan Elapsed { get; set; }
    /// <summary>Elapsed in seconds (for tables and logs).</summary>
    public double Seconds => Math.Round(Elapsed.TotalSeconds, 2);
    /// <summary>The mode after this decision.</summary>
    public KsmAutoTuneMode Mode { get; set; }
    /// <summary>pages_to_scan to set.</summary>
    public long PagesToScan { get; set; }
    /// <summary>sleep_millisecs to set.</summary>
    public long SleepMilliseconds { get; set; }
    /// <summary>True when the rate differs from the previous decision's.</summary>
    public bool Changed { get; set; }
    /// <summary>Why (the decision log line).</summary>
    public string Reason { get; set; } = "";
    /// <summary>When to look again.</summary>
    public TimeSpan NextPoll { get; set; }
    /// <summary>Pages saved (pages_sharing) at the time of the decision.</summary>
    public long PagesSharing { get; set; }

    /// <summary>Scan rate in pages per second (pages_to_scan / sleep, ignoring ksmd's own scan time).</summary>
    public double PagesPerSecond => SleepMilliseconds <= 0 ? PagesToScan * 1000.0 : Math.Round(PagesToScan * 1000.0 / SleepMilliseconds, 1);

    /// <inheritdoc />
    public override string ToString() => $"[{Elapsed.TotalSeconds:0.00}s] {Mode} {PagesToScan}/{SleepMilliseconds}ms: {Reason}";
}
