namespace KvmOvercommit.Engine.Ksm;

/// <summary>What the ksmd thread does (/sys/kernel/mm/ksm/run: 0, 1, 2).</summary>
public enum KsmRunState
{
    /// <summary>run = 0: ksmd sleeps; merged pages stay merged.</summary>
    Stopped = 0,
    /// <summary>run = 1: ksmd scans and merges.</summary>
    Merging = 1,
    /// <summary>run = 2: ksmd has unmerged every page and stopped.</summary>
    Unmerging = 2,
}

/// <summary>
/// Every file of /sys/kernel/mm/ksm as a typed property, read in one pass, plus what the blog computed by hand
/// (bytes saved, sharing ratios). Files the running kernel lacks are null; files this version does not know are in
/// <see cref="Other"/>.
/// </summary>
public sealed class KsmStat
{
    /// <summary>The host this reading is from.</summary>
    public string HostName { get; set; } = "";
    /// <summary>When the files were read (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
    /// <summary>run: Stopped, Merging or Unmerging.</summary>
    public KsmRunState? Run { get; set; }
    /// <summary>pages_to_scan: pages ksmd scans per wake-up.</summary>
    public long? PagesToScan { get; set; }
    /// <summary>sleep_millisecs: how long ksmd sleeps between wake-ups.</summary>
    public long? SleepMilliseconds { get; set; }
    /// <summary>pages_shared: KSM pages in use (each backs one or more merged pages).</summary>
    public long? PagesShared { get; set; }
    /// <summary>pages_sharing: pages merged into a KSM page — the memory saved.</summary>
    public long? PagesSharing { get; set; }
    /// <summary>pages_unshared: unique pages ksmd keeps checking.</summary>
    public long? PagesUnshared { get; set; }
    /// <summary>pages_volatile: pages changing too fast to merge.</summary>
    public long? PagesVolatile { get; set; }
    /// <summary>pages_scanned: pages scanned since KSM started (kernel 6.7 and later).</summary>
    public long? PagesScanned { get; set; }
    /// <summary>pages_skipped: pages skipped by smart scan (kernel 6.7 and later).</summary>
    public long? PagesSkipped { get; set; }
    /// <summary>full_scans: completed passes over all mergeable memory.</summary>
    public long? FullScans { get; set; }
    /// <summary>general_profit: bytes saved minus the metadata KSM spends (kernel 6.1 and later).</summary>
    public long? GeneralProfit { get; set; }
    /// <summary>ksm_zero_pages: empty pages merged with the kernel zero page (use_zero_pages).</summary>
    public long? KsmZeroPages { get; set; }
    /// <summary>max_page_sharing: most pages one KSM page may back.</summary>
    public long? MaxPageSharing { get; set; }
    /// <summary>merge_across_nodes: whether pages of different NUMA nodes merge (NUMA kernels only).</summary>
    public bool? MergeAcrossNodes { get; set; }
    /// <summary>use_zero_pages: whether empty pages are merged with the kernel zero page.</summary>
    public bool? UseZeroPages { get; set; }
    /// <summary>smart_scan: skip pages that did not merge recently (kernel 6.7 and later).</summary>
    public bool? SmartScan { get; set; }
    /// <summary>stable_node_chains: KSM pages that hit max_page_sharing and were chained.</summary>
    public long? StableNodeChains { get; set; }
    /// <summary>stable_node_dups: duplicate KSM pages in those chains.</summary>
    public long? StableNodeDups { get; set; }
    /// <summary>stable_node_chains_prune_millisecs: how often stale chain entries are pruned.</summary>
    public long? StableNodeChainsPruneMilliseconds { get; set; }
    /// <summary>advisor_mode: none or scan-time (kernel 6.8 and later).</summary>
    public string? AdvisorMode { get; set; }
    /// <summary>The advisor modes this kernel offers.</summary>
    public string[]? AdvisorModes { get; set; }
    /// <summary>advisor_max_cpu: CPU percent the scan-time advisor may give ksmd.</summary>
    public long? AdvisorMaxCpu { get; set; }
    /// <summary>advisor_target_scan_time: seconds the advisor aims for per full scan.</summary>
    public long? AdvisorTargetScanTime { get; set; }
    /// <summary>advisor_min_pages_to_scan: the advisor's lower bound for pages_to_scan.</summary>
    public long? AdvisorMinPagesToScan { get; set; }
    /// <summary>advisor_max_pages_to_scan: the advisor's upper bound for pages_to_scan.</summary>
    public long? AdvisorMaxPagesToScan { get; set; }
    /// <summary>Files of /sys/kernel/mm/ksm this version does not know, by file name, raw (trimmed) text.</summary>
    public Dictionary<string, string> Other { get; set; } = new();

    /// <summary>The host page size in bytes.</summary>
    public long PageSize { get; set; }
    /// <summary>pages_shared × page size.</summary>
    public long? SharedBytes => PagesShared * PageSize;
    /// <summary>Memory saved: (pages_sharing + ksm_zero_pages) × page size, as the kernel documents it.</summary>
    public long? SavedBytes => PagesSharing is null ? null : (PagesSharing.Value + (KsmZeroPages ?? 0)) * PageSize;
    /// <summary>pages_unshared × page size.</summary>
    public long? UnsharedBytes => PagesUnshared * PageSize;
    /// <summary>pages_volatile × page size.</summary>
    public long? VolatileBytes => PagesVolatile * PageSize;
    /// <summary>pages_sharing / pages_shared: how many pages one KSM page backs on average (high is good).</summary>
    public double? SharingRatio => PagesShared is > 0 && PagesSharing is not null ? Math.Round((double)PagesSharing.Value / PagesShared.Value, 3) : null;
    /// <summary>pages_unshared / pages_sharing: wasted scanning per page saved (high means ksmd works for little).</summary>
    public double? UnsharedRatio => PagesSharing is > 0 && PagesUnshared is not null ? Math.Round((double)PagesUnshared.Value / PagesSharing.Value, 3) : null;
    /// <summary>SavedBytes in MiB.</summary>
    public double? SavedMiB => Units.ToMiB(SavedBytes);
    /// <summary>SharedBytes in MiB.</summary>
    public double? SharedMiB => Units.ToMiB(SharedBytes);
    /// <summary>UnsharedBytes in MiB.</summary>
    public double? UnsharedMiB => Units.ToMiB(UnsharedBytes);
    /// <summary>VolatileBytes in MiB.</summary>
    public double? VolatileMiB => Units.ToMiB(VolatileBytes);
    /// <summary>GeneralProfit in MiB.</summary>
    public double? GeneralProfitMiB => Units.ToMiB(GeneralProfit);
}
