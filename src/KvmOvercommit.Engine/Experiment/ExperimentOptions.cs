using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Experiment;

/// <summary>How KSM is tuned during one run of an experiment.</summary>
public enum ExperimentProfile
{
    /// <summary>Kernel defaults: 100 pages every 20 ms (merges slowly, costs little).</summary>
    Default,
    /// <summary>The blog's setting: 20000 pages every 20 ms (merges fast, ksmd busy).</summary>
    Aggressive,
    /// <summary>The kernel's scan-time advisor (advisor_mode = scan-time, kernel 6.8 and later).</summary>
    Advisor,
    /// <summary>The adaptive tuner (Invoke-KsmAutoTune): bursts while merging pays, idles otherwise.</summary>
    Adaptive,
}

/// <summary>What Invoke-OvercommitExperiment / kvmoc experiment is asked to do.</summary>
public sealed class ExperimentOptions
{
    /// <summary>The base image every guest's overlay is backed by; null boots the tiny guest (kernel + initramfs) with an overlay on a small base qcow2 the experiment creates.</summary>
    public string? BaseImage { get; set; }
    /// <summary>Boot the tiny guest (kernel + initramfs) also when <see cref="BaseImage"/> is given: the base is then only the disk behind the overlays. Null: only without a base image.</summary>
    public bool? TinyGuest { get; set; }
    /// <summary>Number of guests.</summary>
    public int GuestCount { get; set; } = 4;
    /// <summary>Guest RAM in MiB (QEMU's -m).</summary>
    public long MemoryMB { get; set; } = 128;
    /// <summary>vCPUs per guest.</summary>
    public int CpuCount { get; set; } = 1;
    /// <summary>Seconds between guest starts (the blog's sleep 60). <see cref="Validation.AutoStagger"/> is the same as <see cref="StaggerAuto"/>.</summary>
    public double StaggerSeconds { get; set; }
    /// <summary>-StaggerSeconds Auto: boot the first guest alone, measure its boot IOPS and seconds, then start the rest the boot storm's RecommendedStaggerSeconds apart (needs a capacity: <see cref="DeviceIopsCapacity"/> or fio to measure it).</summary>
    public bool StaggerAuto { get; set; }
    /// <summary>What the device under the overlays sustains (IOPS), for the boot storm's recommendation; null: measured once with Measure-DeviceIopsCapacity's fio probe in the work folder (where fio is installed).</summary>
    public double? DeviceIopsCapacity { get; set; }
    /// <summary>The KSM profiles to compare, run one after the other on the same guests, each from a fresh unmerge.</summary>
    public ExperimentProfile[] Profiles { get; set; } = { ExperimentProfile.Default, ExperimentProfile.Aggressive, ExperimentProfile.Adaptive };
    /// <summary>How long each profile runs (with <see cref="UntilStable"/>: at most this long). Default 2 minutes, or 30 minutes as the cap of UntilStable.</summary>
    public TimeSpan? Duration { get; set; }
    /// <summary>End each profile when the savings stop growing (KsmWatcher's -UntilStable rule).</summary>
    public bool UntilStable { get; set; }
    /// <summary>Seconds between samples.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(2);
    /// <summary>Where the overlays (and the tiny guest's base) go; default: the base image's folder, or a new folder under /tmp for the tiny guest.</summary>
    public string? WorkDirectory { get; set; }
    /// <summary>Leave the guests running and their overlays in place at the end (KSM settings are restored anyway).</summary>
    public bool KeepGuests { get; set; }
    /// <summary>A folder for experiment.json, samples.csv and saved-memory.svg; null writes no report.</summary>
    public string? ReportPath { get; set; }
    /// <summary>Tiny guest only: MiB of RAM each guest fills with a pattern shared by all guests (kvmoc.fill); default half of MemoryMB but at most MemoryMB − 96; 0 fills nothing.</summary>
    public int? FillMiB { get; set; }
    /// <summary>Auto (KVM where /dev/kvm is usable, else TCG), Kvm or Tcg.</summary>
    public GuestAccelerator Accelerator { get; set; } = GuestAccelerator.Auto;
    /// <summary>The guests' run directory root (default: Start-KvmGuest's).</summary>
    public string? RunDirectory { get; set; }
    /// <summary>Guest and overlay names start with this, then a run id and the guest number.</summary>
    public string NamePrefix { get; set; } = "kvmoc-exp";
    /// <summary>The run id in the names (default: 6 random hex digits, so runs never collide).</summary>
    public string? RunId { get; set; }
    /// <summary>Tiny guest only: how long to wait for every guest to print its ready line.</summary>
    public TimeSpan ReadyTimeout { get; set; } = TimeSpan.FromSeconds(180);
    /// <summary>How long an unmerge (run = 2) may take before the experiment gives up.</summary>
    public TimeSpan UnmergeTimeout { get; set; } = TimeSpan.FromSeconds(120);
    /// <summary>Headroom for EstimatedAdditionalGuests, percent of host memory (as Get-OvercommitReport).</summary>
    public double HeadroomPercent { get; set; } = 10;
    /// <summary>Kernel file roots (tests point these at fake trees).</summary>
    public HostRoots? Roots { get; set; }
    /// <summary>Where the run's journal is kept (default <see cref="HostJournal.DefaultDirectory"/>, /run/kvmovercommit/.journal).</summary>
    public string? JournalDirectory { get; set; }

    /// <summary>None (no NIC), or Isolated: the fleet on a network namespace with a bridge and dnsmasq, reached with Ansible (see <see cref="ExperimentNetwork"/>).</summary>
    public ExperimentNetworkMode Network { get; set; } = ExperimentNetworkMode.None;

    /// <summary>With -Network Isolated: the share of the guests (percent, at least one guest when above 0) in which an I/O load is started through Ansible after they are reached; 0: none.</summary>
    public int IoLoadPercent { get; set; }

    /// <summary>The load: Write, Read or RandomWrite.</summary>
    public ExperimentIoLoad IoLoad { get; set; } = ExperimentIoLoad.Write;

    /// <summary>Seconds the load is sampled (guests and the device side by side).</summary>
    public int IoLoadSeconds { get; set; } = 10;

    /// <summary>Run the guests in this existing memory cgroup (folder or name under /sys/fs/cgroup/memory); the estimate is sized against its limit.</summary>
    public string? Cgroup { get; set; }

    /// <summary>Create a memory cgroup with this limit (MiB) for the run, start the guests in it and remove it at the end; the estimate is sized against it.</summary>
    public long? CgroupLimitMB { get; set; }

    /// <summary>After the profiles, check the estimate: boot more guests of the same kind into the cgroup until one no longer fits (OOM kill, or a guest that cannot get ready), and report PredictedAdditionalGuests next to ActualAdditionalGuests.</summary>
    public bool ValidateEstimate { get; set; }

    /// <summary>The per-profile duration when none is given.</summary>
    public static readonly TimeSpan DefaultDuration = TimeSpan.FromMinutes(2);
    /// <summary>The cap of an -UntilStable profile when no duration is given.</summary>
    public static readonly TimeSpan DefaultStableCap = TimeSpan.FromMinutes(30);

    /// <summary>How long one profile may run.</summary>
    public TimeSpan ProfileDuration => Duration ?? (UntilStable ? DefaultStableCap : DefaultDuration);
}

/// <summary>What the experiment will do, decided and checked before anything changes (-WhatIf shows <see cref="Steps"/>).</summary>
public sealed class ExperimentPlan
{
    /// <summary>The options, normalized.</summary>
    public ExperimentOptions Options { get; set; } = new();
    /// <summary>A short id that makes this run's guest and file names unique.</summary>
    public string RunId { get; set; } = "";
    /// <summary>Where overlays go.</summary>
    public string WorkDirectory { get; set; } = "";
    /// <summary>True when the work directory does not exist yet (the experiment creates it and removes it when empty).</summary>
    public bool CreatesWorkDirectory { get; set; }
    /// <summary>The base image of the overlays (for the tiny guest: the one the experiment creates).</summary>
    public string BaseImage { get; set; } = "";
    /// <summary>True when the experiment creates (and deletes) the base image: the tiny guest's small empty base.</summary>
    public bool CreatesBaseImage { get; set; }
    /// <summary>True when the guests are the tiny guest booted from kernel + initramfs.</summary>
    public bool TinyGuest { get; set; }
    /// <summary>Guest names, in start order.</summary>
    public string[] GuestNames { get; set; } = Array.Empty<string>();
    /// <summary>One overlay per guest.</summary>
    public string[] Overlays { get; set; } = Array.Empty<string>();
    /// <summary>The tiny guest's kernel arguments (fill pattern), or null.</summary>
    public string? KernelArguments { get; set; }
    /// <summary>What will happen, step by step.</summary>
    public string[] Steps { get; set; } = Array.Empty<string>();
    /// <summary>The memory cgroup the guests run in (an existing one, or the one the experiment creates), or null.</summary>
    public string? Cgroup { get; set; }
    /// <summary>True when the experiment creates (and removes) <see cref="Cgroup"/>.</summary>
    public bool CreatesCgroup { get; set; }

    /// <summary>The steps as one text.</summary>
    public string Describe() => string.Join(Environment.NewLine, Steps);
}
