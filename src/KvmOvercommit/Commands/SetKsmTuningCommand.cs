using System.Management.Automation;
using KvmOvercommit.Engine.Ksm;

namespace KvmOvercommit.Commands;

/// <summary>Sets KSM's knobs (scan rate, sleep, run state, advisor, sharing limits) safely.</summary>
/// <remarks>
/// Every value is validated before anything is written; the writes go in an order the kernel accepts
/// (advisor_mode is switched off before pages_to_scan, switched on after the other knobs; run is written last);
/// max_page_sharing and merge_across_nodes change only while no pages are merged, so -Force unmerges first
/// (run=2) and resumes afterwards. If a write fails, the values already written are put back. -PassThru returns
/// the settings that were replaced, which piped back into Set-KsmTuning restore them. A KsmStat from Get-KsmStat
/// binds by property name too. Needs root.
/// <para>
/// Security: merging is a side channel. A write to a merged page takes measurably longer (the kernel must copy it
/// first), so a guest can find out whether another guest holds a page with the same content. The kernel's KSM
/// documentation warns of it, and CVE-2015-2877 (cross-VM ASLR introspection) and CVE-2024-0564 (timing with
/// max_page_sharing) show it; the vendor's answer recorded with the first is "if you care about this attack vector,
/// disable deduplication". Do not let KSM merge
/// guests that must not learn about each other: start them with Start-KvmGuest -MemoryMerge $false (QEMU's
/// -machine mem-merge=off), or leave KSM stopped.
/// </para>
/// </remarks>
/// <example>
/// <code>Set-KsmTuning -Profile Aggressive -Run Merge</code>
/// <para>The blog's `echo 20000 > pages_to_scan`: scan 20000 pages every 20 ms and start merging.</para>
/// </example>
/// <example>
/// <code>$old = Set-KsmTuning -PagesToScan 5000 -SleepMilliseconds 50 -PassThru; …; $old | Set-KsmTuning</code>
/// <para>Changes two knobs and later restores exactly what they were.</para>
/// </example>
/// <example>
/// <code>Set-KsmTuning -MaxPageSharing 1024 -Force -WhatIf</code>
/// <para>Shows the writes (unmerge, max_page_sharing, resume) without doing them.</para>
/// </example>
[Cmdlet(VerbsCommon.Set, "KsmTuning", SupportsShouldProcess = true)]
[OutputType(typeof(KsmTuning))]
public sealed class SetKsmTuningCommand : KvmCmdlet
{
    /// <summary>Default (kernel defaults 100 pages / 20 ms, advisor off), Aggressive (20000 pages / 20 ms, advisor off) or Advisor (advisor_mode scan-time). Explicit parameters override the profile.</summary>
    [Parameter]
    public KsmTuningProfile? Profile { get; set; }

    /// <summary>run: Stop, Merge or Unmerge (also Stopped, Merging, Unmerging, 0, 1, 2).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    [KsmRunStateTransformation]
    public KsmRunState? Run { get; set; }

    /// <summary>pages_to_scan: pages ksmd scans per wake-up (refused by the kernel while advisor_mode is scan-time).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public long? PagesToScan { get; set; }

    /// <summary>sleep_millisecs: milliseconds ksmd sleeps between wake-ups.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public long? SleepMilliseconds { get; set; }

    /// <summary>max_page_sharing: most pages one KSM page may back (at least 2; only while nothing is merged, see -Force).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public long? MaxPageSharing { get; set; }

    /// <summary>merge_across_nodes: merge pages of different NUMA nodes (only while nothing is merged, see -Force).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public bool? MergeAcrossNodes { get; set; }

    /// <summary>use_zero_pages: merge empty pages with the kernel's zero page.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public bool? UseZeroPages { get; set; }

    /// <summary>smart_scan: skip pages that did not merge recently.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public bool? SmartScan { get; set; }

    /// <summary>stable_node_chains_prune_millisecs: how often stale stable-node chains are pruned.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public long? StableNodeChainsPruneMilliseconds { get; set; }

    /// <summary>advisor_mode: none or scan-time (kernel 6.8 and later).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    [ValidateSetOrNull("none", "scan-time")]
    [ArgumentCompleter(typeof(AdvisorModeCompleter))]
    public string? AdvisorMode { get; set; }

    /// <summary>advisor_max_cpu: CPU percent (1–100) the scan-time advisor may give ksmd.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public long? AdvisorMaxCpu { get; set; }

    /// <summary>advisor_target_scan_time: seconds the advisor aims for per full scan.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public long? AdvisorTargetScanTime { get; set; }

    /// <summary>advisor_min_pages_to_scan: the advisor's lower bound for pages_to_scan.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public long? AdvisorMinPagesToScan { get; set; }

    /// <summary>advisor_max_pages_to_scan: the advisor's upper bound for pages_to_scan.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    public long? AdvisorMaxPagesToScan { get; set; }

    /// <summary>Unmerge every page first (run=2) when max_page_sharing or merge_across_nodes must change while pages are merged; KSM resumes afterwards if it was running.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Return the settings that were replaced (pipe them back into Set-KsmTuning to restore).</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord() => Invoke(() =>
    {
        var wanted = new KsmTuning
        {
            Run = Run,
            PagesToScan = PagesToScan,
            SleepMilliseconds = SleepMilliseconds,
            MaxPageSharing = MaxPageSharing,
            MergeAcrossNodes = MergeAcrossNodes,
            UseZeroPages = UseZeroPages,
            SmartScan = SmartScan,
            StableNodeChainsPruneMilliseconds = StableNodeChainsPruneMilliseconds,
            AdvisorMode = AdvisorMode?.ToLowerInvariant(),
            AdvisorMaxCpu = AdvisorMaxCpu,
            AdvisorTargetScanTime = AdvisorTargetScanTime,
            AdvisorMinPagesToScan = AdvisorMinPagesToScan,
            AdvisorMaxPagesToScan = AdvisorMaxPagesToScan,
        };
        if (Profile is KsmTuningProfile p) wanted = KsmTuning.ForProfile(p, wanted);
        if (wanted.IsEmpty())
            throw new Engine.KvmOcException(Engine.ErrorKind.InvalidArgument, "KsmNothingToSet", "No setting given.", null, "Give -Profile or at least one knob, e.g. -PagesToScan 20000.");
        var tuner = new KsmTuner(observer: SyncObserver);
        var plan = tuner.Plan(wanted, Force);
        if (plan.IsEmpty)
        {
            WriteVerbose("Every setting already has the requested value.");
            if (PassThru) WriteObject(plan.Replaced);
            return;
        }
        if (!ShouldProcess(plan.KsmPath, plan.Describe())) return;
        var replaced = tuner.Apply(plan);
        if (PassThru) WriteObject(replaced);
    }, terminating: true);
}
