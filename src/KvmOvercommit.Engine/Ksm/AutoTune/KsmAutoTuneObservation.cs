namespace KvmOvercommit.Engine.Ksm.AutoTune;

/// <summary>
/// What the adaptive tuner sees at one tick: the global KSM counters, the mergeable processes (from their
/// /proc/&lt;pid&gt;/ksm_stat), memory pressure and ksmd's CPU time. Plain data, so tests can build sequences by hand.
/// </summary>
public sealed class KsmAutoTuneObservation
{
    /// <summary>Monotonic time since the tuner started.</summary>
    public TimeSpan Elapsed { get; set; }
    /// <summary>pages_shared.</summary>
    public long PagesShared { get; set; }
    /// <summary>pages_sharing (the pages saved).</summary>
    public long PagesSharing { get; set; }
    /// <summary>pages_unshared.</summary>
    public long PagesUnshared { get; set; }
    /// <summary>pages_volatile.</summary>
    public long PagesVolatile { get; set; }
    /// <summary>pages_scanned (kernel 6.7 and later; null before).</summary>
    public long? PagesScanned { get; set; }
    /// <summary>
    /// pages_skipped: pages smart scan passed over because they had not merged for several passes (kernel 6.7 and
    /// later; null before). A skipped page leaves the unstable tree, so until its next visit it counts as volatile.
    /// </summary>
    public long? PagesSkipped { get; set; }
    /// <summary>full_scans: completed passes over all mergeable memory.</summary>
    public long FullScans { get; set; }
    /// <summary>Sum of ksm_rmap_items over all processes: the pages ksmd tracks.</summary>
    public long RmapItems { get; set; }
    /// <summary>Ids of the processes with mergeable memory (ksm_mergeable or ksm_merge_any), sorted.</summary>
    public int[] MergeableProcessIds { get; set; } = Array.Empty<int>();
    /// <summary>Resident pages of the mergeable processes (an upper bound of the memory ksmd has to scan).</summary>
    public long MergeableResidentPages { get; set; }
    /// <summary>MemAvailable in bytes.</summary>
    public long MemAvailableBytes { get; set; }
    /// <summary>MemTotal in bytes.</summary>
    public long MemTotalBytes { get; set; }
    /// <summary>utime + stime of the ksmd thread in seconds (null when it cannot be read).</summary>
    public double? KsmdCpuSeconds { get; set; }

    /// <summary>
    /// The busiest mergeable process's CPU use (utime + stime, all its threads) as a fraction of one core, over the
    /// interval between its last two readings; null when no mergeable process has been read twice yet. A guest that
    /// boots or rewrites its memory is busy; an idle guest's QEMU uses about 0.2% of a core.
    /// </summary>
    public double? MaxProcessCpuFraction { get; set; }

    /// <summary>Pages merged (shared + sharing): what a full scan's yield is measured on.</summary>
    public long MergedPages => PagesShared + PagesSharing;

    /// <summary>Best estimate of the pages ksmd has to scan per full pass.</summary>
    public long MergeablePages => Math.Max(Math.Max(RmapItems, MergeableResidentPages), PagesShared + PagesSharing + PagesUnshared + PagesVolatile);
}
