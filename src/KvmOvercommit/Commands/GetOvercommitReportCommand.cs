using System.Management.Automation;
using KvmOvercommit.Engine.HostInfo;

namespace KvmOvercommit.Commands;

/// <summary>Reports how far the host is overcommitted (vCPU, memory, disk, IOPS) and estimates how many more guests fit.</summary>
/// <remarks>
/// Gathers the host's CPUs and memory, KSM's saving, the running QEMU guests (memory, vCPUs, resident memory,
/// KSM-merged pages, disks), the disk images' sizes (qemu-img info -U) and a short IOPS sample, then computes
/// VcpuRatio (with the 5:1 guidance for single-vCPU guests), MemoryRatio, EffectiveMemoryRatio (resident memory
/// after KSM), DiskRatio per base image and EstimatedAdditionalGuests = floor((available − headroom) / average
/// unique resident memory per guest). Every input is a property, and Explanation shows each calculation with its
/// numbers. With a device IOPS capacity (-DeviceIopsCapacity, -MeasureIopsCapacityPath, or piped from
/// Measure-DeviceIopsCapacity) it adds the IOPS budget: PeakIops over the sample, the sum of the guests' IOPS limits,
/// IopsRatio = limits / capacity, EstimatedAdditionalGuestsByIops and LimitingResource (Memory or Iops, whichever
/// runs out first). Without guests the ratios are 0 and the estimate is empty, with the reason.
/// <para>
/// The risk side: KsmUnmergeRiskBytes = pages_sharing × page size, the memory the host must find at once if KSM
/// unmerges or the guests' merged pages diverge; BalloonedBytes, what the guests' balloons hold back (the sum of -m
/// minus each balloon's actual size, over guests whose QMP answers query-balloon); SwapFreeBytes. When MemAvailable +
/// SwapFree is below KsmUnmergeRiskBytes, KsmUnmergeRiskExceedsAvailable is true and a warning says so (also in Warnings).
/// </para>
/// </remarks>
/// <example>
/// <code>Get-OvercommitReport | Format-List</code>
/// <para>The whole report (the blog's arithmetic: "rather run 400 virtual machines than 200").</para>
/// </example>
/// <example>
/// <code>Get-OvercommitReport -DeviceIopsCapacity 5000 -IopsSampleSeconds 10 | Format-List *Iops*, LimitingResource</code>
/// <para>The IOPS budget against a device that sustains 5000 IOPS (the blog's figure for 100 booting guests).</para>
/// </example>
/// <example>
/// <code>Get-OvercommitReport -Cgroup /sys/fs/cgroup/memory/guests -IopsSampleSeconds 0 | Format-List Cgroup*, EstimatedAdditionalGuests</code>
/// <para>How many more guests like those in the memory cgroup "guests" fit under its limit (the guests were started with Start-KvmGuest -Cgroup guests).</para>
/// </example>
/// <example>
/// <code>(Get-OvercommitReport -HeadroomPercent 20).Explanation</code>
/// <para>How the estimate was reached, keeping 20% of memory free.</para>
/// </example>
/// <example>
/// <code>Get-OvercommitReport -IopsSampleSeconds 0 | Format-List KsmUnmergeRiskMiB, BalloonedMiB, SwapFreeBytes, MemoryAvailableBytes, KsmUnmergeRiskExceedsAvailable</code>
/// <para>What KSM's saving costs if it goes away, and what the balloons hold back.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "OvercommitReport")]
[OutputType(typeof(OvercommitReport))]
public sealed class GetOvercommitReportCommand : KvmCmdlet
{
    /// <summary>Percent of host memory to keep free in the capacity estimate (default 10).</summary>
    [Parameter]
    [ValidateRange(0.0, 99.0)]
    public double HeadroomPercent { get; set; } = 10;

    /// <summary>Seconds of device IOPS sampling for CurrentIops (default 1; 0 skips it).</summary>
    [Parameter]
    [ValidateRange(0.0, 3600.0)]
    public double IopsSampleSeconds { get; set; } = 1;

    /// <summary>Skips qemu-img on the guests' disks (no disk ratios).</summary>
    [Parameter]
    public SwitchParameter SkipDiskImages { get; set; }

    /// <summary>What the device holding the overlays sustains in IOPS: gives IopsRatio, EstimatedAdditionalGuestsByIops and LimitingResource. Binds Iops from Measure-DeviceIopsCapacity.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("Iops")]
    [ValidateRange(0.0, double.MaxValue)]
    public double? DeviceIopsCapacity { get; set; }

    /// <summary>Measures the capacity first with Measure-DeviceIopsCapacity's fio probe (5 s) in this folder, when -DeviceIopsCapacity is not given.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MeasureIopsCapacityPath { get; set; }

    /// <summary>
    /// Size EstimatedAdditionalGuests against this memory cgroup's limit instead of the whole host: floor((limit −
    /// headroom − used) / what one guest in the cgroup is charged), the headroom being -HeadroomPercent of the limit.
    /// A folder (/sys/fs/cgroup/memory/guests) or a name under the cgroup v1 memory controller (or the v2 hierarchy); it
    /// needs a limit and guests in it (Start-KvmGuest -Cgroup). Explanation shows the arithmetic.
    /// </summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Cgroup { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        var builder = new OvercommitReportBuilder { DeviceIopsCapacity = DeviceIopsCapacity, Cgroup = Cgroup };
        if (MeasureIopsCapacityPath is not null) builder.MeasureCapacity = new Engine.Io.DeviceIopsCapacityOptions { Path = ResolvePath(MeasureIopsCapacityPath) };
        InvokeAsync(async (observer, emit, ct) =>
            emit(await builder.BuildAsync(HeadroomPercent, IopsSampleSeconds, !SkipDiskImages, observer, ct).ConfigureAwait(false)),
            terminating: true);
    }
}
