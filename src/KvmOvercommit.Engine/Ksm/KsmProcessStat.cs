namespace KvmOvercommit.Engine.Ksm;

/// <summary>KSM activity of one process, from /proc/&lt;pid&gt;/ksm_stat and /proc/&lt;pid&gt;/ksm_merging_pages.</summary>
public sealed class KsmProcessStat
{
    /// <summary>Process id.</summary>
    public int Id { get; set; }
    /// <summary>Process name (/proc/&lt;pid&gt;/comm).</summary>
    public string Name { get; set; } = "";
    /// <summary>Command line, arguments separated by spaces (empty for kernel threads).</summary>
    public string CommandLine { get; set; } = "";
    /// <summary>ksm_rmap_items: pages of the process ksmd tracks (each costs 64 bytes of metadata).</summary>
    public long? KsmRmapItems { get; set; }
    /// <summary>ksm_merging_pages: pages of the process backed by a KSM page.</summary>
    public long? KsmMergingPages { get; set; }
    /// <summary>ksm_zero_pages: empty pages of the process merged with the zero page (kernel 6.10 and later).</summary>
    public long? KsmZeroPages { get; set; }
    /// <summary>ksm_process_profit: bytes saved minus metadata, as the kernel computes it (kernel 6.1 and later).</summary>
    public long? KsmProcessProfit { get; set; }
    /// <summary>ksm_merge_any: the whole process is mergeable (prctl PR_SET_MEMORY_MERGE).</summary>
    public bool? MergeAny { get; set; }
    /// <summary>ksm_mergeable: some memory of the process is mergeable (madvise MADV_MERGEABLE).</summary>
    public bool? Mergeable { get; set; }
    /// <summary>The host page size in bytes.</summary>
    public long PageSize { get; set; }
    /// <summary>(ksm_merging_pages + ksm_zero_pages) × page size: memory of this process backed by shared pages, the kernel's own per-process accounting.</summary>
    public long? SavedBytes => KsmMergingPages is null ? null : (KsmMergingPages.Value + (KsmZeroPages ?? 0)) * PageSize;
    /// <summary>SavedBytes in MiB.</summary>
    public double? SavedMiB => Units.ToMiB(SavedBytes);
    /// <summary>KsmProcessProfit in MiB.</summary>
    public double? ProfitMiB => Units.ToMiB(KsmProcessProfit);
    /// <summary>True when KSM knows the process at all (tracked, merged or mergeable).</summary>
    public bool HasKsmActivity => KsmMergingPages > 0 || KsmRmapItems > 0 || KsmZeroPages > 0 || Mergeable == true || MergeAny == true;
}
