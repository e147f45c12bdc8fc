namespace KvmOvercommit.Engine.HostInfo;

/// <summary>What the report knows about one running guest.</summary>
public sealed class GuestFacts
{
    /// <summary>Guest name.</summary>
    public string Name { get; set; } = "";
    /// <summary>Guest RAM (-m) in bytes.</summary>
    public long MemoryBytes { get; set; }
    /// <summary>vCPUs (-smp).</summary>
    public int Vcpus { get; set; }
    /// <summary>Resident memory of the QEMU process, or null when unknown.</summary>
    public long? RssBytes { get; set; }
    /// <summary>Pages of this guest merged by KSM, or null when the kernel does not say (before 5.19, or not root).</summary>
    public long? KsmMergingPages { get; set; }
    /// <summary>Disk image paths.</summary>
    public string[] Disks { get; set; } = Array.Empty<string>();
    /// <summary>What the guest has now by its balloon (query-balloon "actual"), or null when unknown (no QMP or no balloon).</summary>
    public long? BalloonActualBytes { get; set; }
    /// <summary>True when the guest's QEMU is in the report's memory cgroup (-Cgroup).</summary>
    public bool InCgroup { get; set; }
}

/// <summary>One image file's sizes (from qemu-img info or the qcow2 reader).</summary>
public sealed class DiskImageFacts
{
    /// <summary>The image file (absolute).</summary>
    public string Path { get; set; } = "";
    /// <summary>Size the guest sees.</summary>
    public long VirtualSizeBytes { get; set; }
    /// <summary>Bytes the file occupies on the host's disk.</summary>
    public long AllocatedBytes { get; set; }
    /// <summary>The images below it, nearest first (backing file, its backing file, …), each with its allocation.</summary>
    public DiskImageFacts[] BackingChain { get; set; } = Array.Empty<DiskImageFacts>();
}

/// <summary>Everything Get-OvercommitReport computes from. Built from the live host, or by hand in tests.</summary>
public sealed class OvercommitInputs
{
    /// <summary>Host name.</summary>
    public string HostName { get; set; } = "";
    /// <summary>Logical CPUs of the host.</summary>
    public int LogicalCpus { get; set; }
    /// <summary>MemTotal.</summary>
    public long MemoryTotalBytes { get; set; }
    /// <summary>MemAvailable.</summary>
    public long MemoryAvailableBytes { get; set; }
    /// <summary>KSM's host-wide saving, or null without KSM.</summary>
    public long? KsmSavedBytes { get; set; }
    /// <summary>Host page size.</summary>
    public long PageSize { get; set; } = 4096;
    /// <summary>The running guests.</summary>
    public List<GuestFacts> Guests { get; set; } = new();
    /// <summary>Image facts by path, for the guests' disks (missing ones are left out of the disk ratios).</summary>
    public Dictionary<string, DiskImageFacts> DiskImages { get; set; } = new();
    /// <summary>Current device IOPS (sum over whole disks), or null when not sampled.</summary>
    public double? CurrentIops { get; set; }
    /// <summary>Percent of host memory kept free in the capacity estimate.</summary>
    public double HeadroomPercent { get; set; } = 10;
    /// <summary>KSM's pages_sharing (the pages KSM saves), or null without KSM.</summary>
    public long? KsmPagesSharing { get; set; }
    /// <summary>SwapFree.</summary>
    public long SwapFreeBytes { get; set; }

    /// <summary>What the device sustains in IOPS (given, or measured by Measure-DeviceIopsCapacity), or null.</summary>
    public double? DeviceIopsCapacity { get; set; }
    /// <summary>Where DeviceIopsCapacity came from: "given" or "measured (fio on PATH)".</summary>
    public string? DeviceIopsCapacitySource { get; set; }
    /// <summary>The highest one-second device IOPS during the sample, or null when not sampled.</summary>
    public double? PeakIops { get; set; }
    /// <summary>Sum of the per-guest IOPS limits (a throttle group shared by several drives counted once), or null when no guest has one.</summary>
    public long? IopsLimitSum { get; set; }
    /// <summary>Guests whose every drive has an IOPS limit.</summary>
    public int GuestsWithIopsLimit { get; set; }

    /// <summary>-Cgroup: the memory cgroup the estimate is sized against (its folder), or null for the whole host.</summary>
    public string? Cgroup { get; set; }
    /// <summary>The cgroup's memory limit.</summary>
    public long CgroupLimitBytes { get; set; }
    /// <summary>What the cgroup is charged now, minus its inactive file cache (the kernel reclaims that first).</summary>
    public long CgroupUsedBytes { get; set; }
    /// <summary>Resident memory of the processes in the cgroup that are not guests (charged there too).</summary>
    public long CgroupOtherBytes { get; set; }
    /// <summary>Processes in the cgroup that are not guests.</summary>
    public int CgroupOtherProcesses { get; set; }
    /// <summary>True when KSM is merging (run = 1): a new guest's pages will be merged like the others'.</summary>
    public bool KsmRunning { get; set; }
}

/// <summary>Disk overcommit for the guests that share one base image.</summary>
public sealed class DiskRatio
{
    /// <summary>The bottom image of the chain (the shared base), or the image itself when it has no backing file.</summary>
    public string BaseImage { get; set; } = "";
    /// <summary>Number of guest disks on this base.</summary>
    public int DiskCount { get; set; }
    /// <summary>Sum of the guest disks' virtual sizes.</summary>
    public long VirtualBytes { get; set; }
    /// <summary>Bytes allocated: every overlay plus each image below them, counted once.</summary>
    public long AllocatedBytes { get; set; }
    /// <summary>VirtualBytes : AllocatedBytes.</summary>
    public double Ratio { get; set; }
}

/// <summary>How overcommitted the host is, and how many more guests of the current average size fit. Every input is a property, and Explanation shows the arithmetic.</summary>
public sealed class OvercommitReport
{
    /// <summary>Host name.</summary>
    public string HostName { get; set; } = "";
    /// <summary>When the report was made (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
    /// <summary>Running guests.</summary>
    public int GuestCount { get; set; }
    /// <summary>Host logical CPUs.</summary>
    public int LogicalCpus { get; set; }
    /// <summary>Sum of the guests' vCPUs.</summary>
    public int GuestVcpus { get; set; }
    /// <summary>GuestVcpus : LogicalCpus.</summary>
    public double VcpuRatio { get; set; }
    /// <summary>The guidance ratio for single-vCPU guests (Red Hat: up to 5 vCPUs per logical CPU).</summary>
    public double VcpuGuidanceMax { get; set; } = 5;
    /// <summary>True when VcpuRatio is above VcpuGuidanceMax.</summary>
    public bool VcpuAboveGuidance { get; set; }
    /// <summary>Guests with more than one vCPU (the 5:1 guidance is for single-vCPU guests; these need more headroom).</summary>
    public int MultiVcpuGuests { get; set; }
    /// <summary>MemTotal.</summary>
    public long MemoryTotalBytes { get; set; }
    /// <summary>MemAvailable.</summary>
    public long MemoryAvailableBytes { get; set; }
    /// <summary>Sum of the guests' -m.</summary>
    public long GuestMemoryBytes { get; set; }
    /// <summary>GuestMemoryBytes : MemoryTotalBytes.</summary>
    public double MemoryRatio { get; set; }
    /// <summary>Sum of the guests' resident memory (RSS of the QEMU processes).</summary>
    public long GuestResidentBytes { get; set; }
    /// <summary>KSM's host-wide saving.</summary>
    public long? KsmSavedBytes { get; set; }
    /// <summary>GuestResidentBytes − KsmSavedBytes: what the guests really cost the host.</summary>
    public long EffectiveResidentBytes { get; set; }
    /// <summary>EffectiveResidentBytes : MemoryTotalBytes.</summary>
    public double EffectiveMemoryRatio { get; set; }
    /// <summary>Average per-guest resident memory that KSM has not merged (what one more such guest would cost).</summary>
    public long? UniqueResidentPerGuestBytes { get; set; }
    /// <summary>Percent of MemTotal kept free in the estimate.</summary>
    public double HeadroomPercent { get; set; }
    /// <summary>HeadroomPercent of MemTotal, in bytes.</summary>
    public long HeadroomBytes { get; set; }
    /// <summary>-Cgroup: the memory cgroup the estimate is sized against, or null (the whole host).</summary>
    public string? Cgroup { get; set; }
    /// <summary>-Cgroup: the cgroup's memory limit.</summary>
    public long? CgroupLimitBytes { get; set; }
    /// <summary>-Cgroup: what the cgroup is charged now (usage minus inactive file cache).</summary>
    public long? CgroupUsedBytes { get; set; }
    /// <summary>-Cgroup: the guests whose QEMU is in the cgroup.</summary>
    public int? CgroupGuestCount { get; set; }
    /// <summary>-Cgroup: what one more guest of the kind in the cgroup will charge it: the cgroup's charge for its guests (QEMU RSS, page tables, kernel memory, KSM savings already in) over their number, plus their KSM-merged pages when KSM is not running (a new guest's stay unmerged).</summary>
    public long? CgroupPerGuestBytes { get; set; }
    /// <summary>floor((MemAvailable − headroom) / UniqueResidentPerGuestBytes), or with -Cgroup floor((limit − headroom − used) / CgroupPerGuestBytes); null when there is no guest to average (or none has a known RSS).</summary>
    public int? EstimatedAdditionalGuests { get; set; }
    /// <summary>Sum of the guest disks' virtual sizes : bytes allocated, over all bases.</summary>
    public double? DiskRatio { get; set; }
    /// <summary>Disk ratios per shared base image.</summary>
    public DiskRatio[] DiskRatios { get; set; } = Array.Empty<DiskRatio>();
    /// <summary>Current IOPS over the host's whole disks (a short Measure-DeviceIops sample), or null.</summary>
    public double? CurrentIops { get; set; }
    /// <summary>CurrentIops / GuestCount, or null.</summary>
    public double? IopsPerGuest { get; set; }
    /// <summary>What the device sustains in IOPS (-DeviceIopsCapacity, or measured by Measure-DeviceIopsCapacity), or null.</summary>
    public double? DeviceIopsCapacity { get; set; }
    /// <summary>Where DeviceIopsCapacity came from ("given", or "measured (fio on PATH)").</summary>
    public string? DeviceIopsCapacitySource { get; set; }
    /// <summary>The highest one-second device IOPS during the sample, or null.</summary>
    public double? PeakIops { get; set; }
    /// <summary>Sum of the guests' IOPS limits (Set-KvmGuestIoLimit; a shared throttle group counted once), or null when no guest has one.</summary>
    public long? IopsLimitSum { get; set; }
    /// <summary>Guests whose every drive has an IOPS limit.</summary>
    public int GuestsWithIopsLimit { get; set; }
    /// <summary>IopsLimitSum : DeviceIopsCapacity (above 1: the limits promise more IOPS than the device has), or null.</summary>
    public double? IopsRatio { get; set; }
    /// <summary>How many more guests the device's IOPS allow: floor((capacity − IOPS in use) / IOPS per guest), beside EstimatedAdditionalGuests (memory); null without a capacity or a per-guest figure.</summary>
    public int? EstimatedAdditionalGuestsByIops { get; set; }
    /// <summary>Which runs out first, Memory or Iops (the smaller of the two estimates); null when either estimate is unknown.</summary>
    public string? LimitingResource { get; set; }
    /// <summary>The arithmetic behind every figure, with the numbers.</summary>
    public string[] Explanation { get; set; } = Array.Empty<string>();

    // The risk side (issue 14).

    /// <summary>
    /// pages_sharing × page size: the memory the host must find at once if KSM unmerges (run=2) or the guests' merged
    /// pages diverge; null without KSM.
    /// </summary>
    public long? KsmUnmergeRiskBytes { get; set; }
    /// <summary>KsmUnmergeRiskBytes in MiB.</summary>
    public double? KsmUnmergeRiskMiB => Units.ToMiB(KsmUnmergeRiskBytes);
    /// <summary>What the balloons hold back: the sum over guests of (-m − the balloon's actual size), for guests whose balloon could be read.</summary>
    public long BalloonedBytes { get; set; }
    /// <summary>BalloonedBytes in MiB.</summary>
    public double BalloonedMiB => Units.ToMiB(BalloonedBytes);
    /// <summary>SwapFree.</summary>
    public long SwapFreeBytes { get; set; }
    /// <summary>True when MemAvailable + SwapFree is less than KsmUnmergeRiskBytes: an unmerge would push the host into OOM.</summary>
    public bool KsmUnmergeRiskExceedsAvailable { get; set; }
    /// <summary>Warnings about the figures (Get-OvercommitReport also writes each as a warning).</summary>
    public string[] Warnings { get; set; } = Array.Empty<string>();
    /// <summary>The guests the report was computed from.</summary>
    public GuestFacts[] Guests { get; set; } = Array.Empty<GuestFacts>();
    /// <summary>GuestMemoryBytes in MiB.</summary>
    public double GuestMemoryMiB => Units.ToMiB(GuestMemoryBytes);
    /// <summary>KsmSavedBytes in MiB.</summary>
    public double? KsmSavedMiB => Units.ToMiB(KsmSavedBytes);
}
