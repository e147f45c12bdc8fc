using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Runs a whole KSM overcommit experiment: overlays, guests, each KSM profile from a fresh unmerge, samples, a report, and a full cleanup.</summary>
/// <remarks>
/// Creates one qcow2 overlay per guest on -BaseImage (default: the tiny test guest, booted from its kernel and
/// initramfs, with overlays on a small empty base image the experiment creates; its memory is filled with a pattern
/// shared by all guests so KSM has something to merge), starts the guests (-StaggerSeconds apart), and for every
/// -KsmProfile (Default, Aggressive, Advisor, Adaptive) unmerges every KSM page (run = 2, until pages_shared and
/// pages_sharing are 0), tunes KSM, and samples KSM, the guests' resident memory and ksmd's CPU every -IntervalSeconds
/// for -Duration (or -UntilStable). The result has, per profile and per guest: memory committed and resident, KSM's
/// saving and the resident saving over time, the time to 90 % of the final saving, ksmd CPU seconds, the overcommit
/// ratio achieved, EstimatedAdditionalGuests, and the samples. At the end — also on Ctrl+C and on failure — it stops its
/// guests, deletes only the files it created (never the base image, which is only read), and restores every KSM
/// setting it found. -KeepGuests leaves the guests and overlays. -ReportPath writes experiment.json, samples.csv (with
/// the device's and the guests' IOPS per sample), saved-memory.svg (with an IOPS chart) and, with -Network Isolated,
/// inventory.ini. Result.BootStorm has each guest's IOPS from launch to ready, BootIopsPerGuest, BootSeconds and, with
/// a device capacity (-DeviceIopsCapacity, or measured with fio), MaxOverlappingBoots and RecommendedStaggerSeconds;
/// -StaggerSeconds Auto uses it. -WhatIf shows the plan and does nothing. Needs root (it tunes KSM).
/// </remarks>
/// <example>
/// <code>Invoke-OvercommitExperiment -GuestCount 4 -KsmProfile Default,Aggressive,Adaptive -Duration 00:02:00 -ReportPath ./report</code>
/// <para>Four tiny guests, three KSM profiles for two minutes each; the report and chart go to ./report.</para>
/// </example>
/// <example>
/// <code>Invoke-OvercommitExperiment -BaseImage win7-base.qcow2 -GuestCount 30 -MemoryMB 4048 -CpuCount 2 -StaggerSeconds 60 -KsmProfile Aggressive,Adaptive -UntilStable</code>
/// <para>The blog's experiment on a real host: 30 Windows 7 guests on overlays of one base image, one a minute.</para>
/// </example>
/// <example>
/// <code>(Invoke-OvercommitExperiment -GuestCount 4 -StaggerSeconds Auto -DeviceIopsCapacity 2000 -KsmProfile Default -Duration 10).BootStorm | Format-List</code>
/// <para>The boot storm: each guest's boot IOPS, BootIopsPerGuest, BootSeconds, how many boots may overlap under 2000 IOPS and the stagger that keeps them under it (used for the guests after the first).</para>
/// <code>Invoke-OvercommitExperiment -GuestCount 2 -KsmProfile Default -Duration 10 -CgroupLimitMB 2048 -ValidateEstimate -HeadroomPercent 0 | Select-Object -ExpandProperty Validation</code>
/// <para>Checks the capacity estimate against reality: two tiny guests in a new 2 GiB memory cgroup, the estimate of how many more fit, then more guests booted into it until the kernel OOM-kills one; predicted next to actual.</para>
/// </example>
/// <example>
/// <code>(Invoke-OvercommitExperiment -GuestCount 2 -Duration 00:00:30).Profiles | Format-Table</code>
/// <para>Compares the profiles: saved MiB, time to 90 %, ksmd CPU, overcommit ratio, guests that would still fit.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "OvercommitExperiment", SupportsShouldProcess = true, DefaultParameterSetName = "Run")]
[OutputType(typeof(ExperimentResult), ParameterSetName = new[] { "Run" })]
[OutputType(typeof(HostJournal), ParameterSetName = new[] { "Recover" })]
public sealed class InvokeOvercommitExperimentCommand : KvmCmdlet
{
    /// <summary>The base image of the guests' overlays (opened read-only, never written). Default: the tiny guest on a small empty base the experiment creates.</summary>
    [Parameter(Position = 0)]
    [Alias("BackingPath")]
    [ValidateNotNullOrEmpty]
    public string? BaseImage { get; set; }

    /// <summary>Boots the tiny guest (kernel and initramfs) also with -BaseImage, which is then only the disk behind the overlays.</summary>
    [Parameter]
    public SwitchParameter TinyGuest { get; set; }

    /// <summary>Number of guests (default 4).</summary>
    [Parameter]
    [ValidateRange(1, 1000)]
    public int GuestCount { get; set; } = 4;

    /// <summary>Guest RAM in MiB (default 128).</summary>
    [Parameter]
    [ValidateRange(16, 16L * 1024 * 1024)]
    public long MemoryMB { get; set; } = 128;

    /// <summary>vCPUs per guest (default 1).</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int CpuCount { get; set; } = 1;

    /// <summary>Seconds between guest starts (the blog's sleep 60; default 0): a number of seconds (1.5) or a TimeSpan, from 0 to 86400 seconds; or Auto: the first guest boots alone and its boot IOPS and seconds give the stagger of the rest (Result.BootStorm.RecommendedStaggerSeconds).</summary>
    [Parameter]
    [SecondsTransformation]
    public double StaggerSeconds { get; set; }

    /// <summary>What the device under the overlays sustains, in IOPS, for the boot storm's MaxOverlappingBoots and RecommendedStaggerSeconds; without it, it is measured once with Measure-DeviceIopsCapacity's fio probe (5 s) in the work folder.</summary>
    [Parameter]
    public double? DeviceIopsCapacity { get; set; }

    /// <summary>The KSM profiles to compare, one after the other on the same guests: Default, Aggressive, Advisor, Adaptive (default Default, Aggressive, Adaptive).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public ExperimentProfile[] KsmProfile { get; set; } = { ExperimentProfile.Default, ExperimentProfile.Aggressive, ExperimentProfile.Adaptive };

    /// <summary>How long each profile runs: seconds (120) or a TimeSpan (00:02:00, the default); with -UntilStable the longest it may run (default 30 minutes).</summary>
    [Parameter]
    [TimeSpanSecondsTransformation]
    public TimeSpan? Duration { get; set; }

    /// <summary>Ends each profile when the savings stop growing.</summary>
    [Parameter]
    public SwitchParameter UntilStable { get; set; }

    /// <summary>Seconds between samples (default 2; from 0.1 to 86400).</summary>
    [Parameter]
    public double IntervalSeconds { get; set; } = 2;

    /// <summary>Folder for the overlays (default: the base image's folder, or a new folder under /tmp for the tiny guest).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? WorkDirectory { get; set; }

    /// <summary>Leaves the guests running and their overlays in place (KSM settings are restored anyway).</summary>
    [Parameter]
    public SwitchParameter KeepGuests { get; set; }

    /// <summary>Folder for the report: experiment.json, samples.csv and saved-memory.svg.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? ReportPath { get; set; }

    /// <summary>Tiny guest only: MiB of RAM each guest fills with a pattern shared by all guests (default half of -MemoryMB, leaving at least 96 MiB: 32 of 128).</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int? FillMiB { get; set; }

    /// <summary>Auto (KVM where /dev/kvm is usable, else TCG with a warning), Kvm or Tcg.</summary>
    [Parameter]
    public GuestAccelerator Accelerator { get; set; } = GuestAccelerator.Auto;

    /// <summary>Folder for the guests' run directories (default: Start-KvmGuest's).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? RunDirectory { get; set; }

    /// <summary>
    /// Undoes an experiment that was killed (kill -9, a crash): from its journal under /run/kvmovercommit/.journal, stops
    /// its guests, deletes only the files and folders it created and restores the KSM settings it found; then removes the
    /// journal. Returns each journal recovered. Every other parameter is ignored.
    /// </summary>
    [Parameter(Mandatory = true, ParameterSetName = "Recover")]
    public SwitchParameter Recover { get; set; }

    /// <summary>None (no NIC), or Isolated: the blog's fleet loop on a network namespace with a bridge and dnsmasq (the fleet tiny guest gets a lease under its name, the inventory is made from the lease file, Ansible reaches every guest over SSH inside the namespace); all removed at cleanup. Result.Fleet has per guest IPAddress, AnsibleReachable and SecondsToReachable; -ReportPath gets inventory.ini.</summary>
    [Parameter]
    public Engine.Experiment.ExperimentNetworkMode Network { get; set; } = Engine.Experiment.ExperimentNetworkMode.None;

    /// <summary>With -Network Isolated: the share of the guests (percent) in which an I/O load is started through Ansible once they are reached; Result.IoLoad gives per guest IoLoaded, IopsIdle, IopsLoaded and the overlays' disk IOPS.</summary>
    [Parameter]
    [ValidateRange(0, 100)]
    public int IoLoadPercent { get; set; }

    /// <summary>The load -IoLoadPercent starts: Write, Read or RandomWrite (4 KiB O_DIRECT dd loops on the guest's disk).</summary>
    [Parameter]
    public Engine.Experiment.ExperimentIoLoad IoLoad { get; set; } = Engine.Experiment.ExperimentIoLoad.Write;

    /// <summary>Seconds the load is sampled (default 10).</summary>
    [Parameter]
    [ValidateRange(1, 3600)]
    public int IoLoadSeconds { get; set; } = 10;

    /// <summary>Run the guests in this existing memory cgroup (a folder, or a name under /sys/fs/cgroup/memory; it needs a limit): EstimatedAdditionalGuests is then sized against its limit.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Cgroup { get; set; }

    /// <summary>Create a memory cgroup with this limit in MiB for the run (named after the run), start the guests in it, size the estimate against it, and remove it at the end.</summary>
    [Parameter]
    [ValidateRange(64, 16L * 1024 * 1024)]
    public long? CgroupLimitMB { get; set; }

    /// <summary>
    /// After the profiles, check the estimate: with KSM restored as found, Get-OvercommitReport -Cgroup's
    /// EstimatedAdditionalGuests is taken, then guests of the same kind are booted into the cgroup one by one until one
    /// no longer fits (the kernel OOM-kills a QEMU there, or the guest cannot get ready); the result has
    /// PredictedAdditionalGuests, ActualAdditionalGuests, EstimateErrorPercent and Validation. Needs -Cgroup or -CgroupLimitMB.
    /// </summary>
    [Parameter]
    public SwitchParameter ValidateEstimate { get; set; }

    /// <summary>Percent of host memory (with -Cgroup/-CgroupLimitMB: of the cgroup's limit) kept free in EstimatedAdditionalGuests (default 10; 0 predicts up to the limit itself, as -ValidateEstimate fills it).</summary>
    [Parameter]
    [ValidateRange(0.0, 99.0)]
    public double HeadroomPercent { get; set; } = 10;

    /// <inheritdoc />
    protected override bool WaitForWorkOnStop => true;

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (Recover)
        {
            var dead = HostJournal.FindDead(null, HostJournal.ExperimentKind);
            if (dead.Count == 0) { WriteVerbose("No journal of a dead experiment found: nothing to recover."); return; }
            var approved = dead.Where(j => ShouldProcess(j.JournalPath,
                $"Recover experiment {j.Id}: stop {j.Guests.Count} guest(s), delete {j.Files.Count} file(s), {j.Folders.Count} folder(s) and {j.Networks.Count} network namespace(s) it created, restore the KSM settings it found")).Select(j => j.JournalPath).ToHashSet();
            if (approved.Count == 0) return;
            InvokeAsync(async (observer, emit, ct) =>
            {
                foreach (var j in await HostJournal.RecoverAsync(HostJournal.ExperimentKind, null, observer, ct, shouldProcess: j => approved.Contains(j.JournalPath)).ConfigureAwait(false))
                    emit(j);
            }, terminating: true);
            return;
        }
        var options = new ExperimentOptions
        {
            BaseImage = BaseImage is null ? null : ResolvePath(BaseImage),
            TinyGuest = TinyGuest ? true : null,
            GuestCount = GuestCount,
            MemoryMB = MemoryMB,
            CpuCount = CpuCount,
            StaggerSeconds = StaggerSeconds,
            DeviceIopsCapacity = DeviceIopsCapacity,
            Profiles = KsmProfile,
            Duration = Duration,
            UntilStable = UntilStable,
            Interval = Validate(() => Validation.IntervalSeconds(IntervalSeconds, Validation.MinExperimentInterval)),
            WorkDirectory = WorkDirectory is null ? null : ResolvePath(WorkDirectory),
            KeepGuests = KeepGuests,
            ReportPath = ReportPath is null ? null : ResolvePath(ReportPath),
            FillMiB = FillMiB,
            Accelerator = Accelerator,
            RunDirectory = RunDirectory is null ? null : ResolvePath(RunDirectory),
            Network = Network,
            IoLoadPercent = IoLoadPercent,
            IoLoad = IoLoad,
            IoLoadSeconds = IoLoadSeconds,
            Cgroup = Cgroup,
            CgroupLimitMB = CgroupLimitMB,
            ValidateEstimate = ValidateEstimate,
            HeadroomPercent = HeadroomPercent,
        };
        ExperimentPlan? plan = null;
        Invoke(() => plan = OvercommitExperiment.Plan(options, SyncObserver), terminating: true);
        if (plan is null || !ShouldProcess(plan.Describe(), "Run the overcommit experiment? It starts guests and tunes KSM.", "Invoke-OvercommitExperiment")) return;
        // A report that cannot be written is a non-terminating error after the result (which is written anyway).
        InvokeAsyncWithErrors(async (observer, emit, error, ct) =>
        {
            Engine.KvmOcException? reportError = null;
            var result = await OvercommitExperiment.RunAsync(plan, observer, ct, e => reportError = e).ConfigureAwait(false);
            emit(result);
            if (reportError is not null) error(reportError);
        }, terminating: true);
    }
}
