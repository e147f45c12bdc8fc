using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Starts a QEMU guest detached from the shell, with a QMP socket, and returns once QMP answers.</summary>
/// <remarks>
/// QEMU is launched with an argument array (never a shell string; option values escaped for QEMU's comma syntax) and
/// -daemonize, so guests outlive the PowerShell session. Each guest gets a run directory &lt;RunDirectory&gt;/&lt;Name&gt;
/// (default /run/kvmovercommit as root, else $XDG_RUNTIME_DIR/kvmovercommit) holding qmp.sock, qemu.pid, serial.log and
/// cmdline.json. A disk piped in from New-QcowOverlay or Get-ChildItem binds to -DiskPath; the guest name defaults to
/// the disk's file name without extension. A taken name or VNC display is refused; a missing disk is an error; when
/// QEMU fails, the error carries QEMU's own message and nothing is left running. -StaggerSeconds waits between
/// pipeline items (not before the first), like the blog's `sleep 60`; -StaggerSeconds Auto boots the first guest
/// alone, measures its boot IOPS (query-blockstats from the first QMP answer until the tiny guest's ready line, or
/// until its disk is quiet for 5 s) and starts the rest RecommendedStaggerSeconds apart: BootSeconds /
/// floor(capacity / boot IOPS), the smallest stagger that keeps the overlapping boots under the device's IOPS capacity
/// (-DeviceIopsCapacity, or measured once with Measure-DeviceIopsCapacity's fio probe in the first disk's folder).
/// -Verbose shows the exact command line and the stagger's arithmetic; -WhatIf shows the command line and starts nothing.
/// </remarks>
/// <example>
/// <code>1..30 | % { "win7-$_.qcow2" } | New-QcowOverlay -BackingPath win7-base.qcow2 | Start-KvmGuest -MemoryMB 4048 -CpuCount 2 -StaggerSeconds 60</code>
/// <para>The blog's experiment: 30 guests on overlays of one base image, one a minute.</para>
/// </example>
/// <example>
/// <code>1..10 | % { "web-$_.qcow2" } | New-QcowOverlay -BackingPath web-base.qcow2 | Start-KvmGuest -MemoryMB 1024 -StaggerSeconds Auto -DeviceIopsCapacity 5000 -Verbose</code>
/// <para>The boot storm without guessing a sleep: the first guest's boot IOPS decide how far apart the others start to stay under 5000 IOPS.</para>
/// </example>
/// <example>
/// <code>Get-KvmTinyGuest | Start-KvmGuest -Name tiny1 -MemoryMB 128 -KernelArguments 'kvmoc.fill=64,1' -PassThru</code>
/// <para>Boots the tiny test guest and returns it.</para>
/// </example>
/// <example>
/// <code>Get-KvmTinyGuest | Start-KvmGuest -Name secret1 -MemoryMB 256 -MemoryMerge $false -DeflateOnOom -PassThru</code>
/// <para>A guest whose RAM KSM never merges (-machine mem-merge=off), with free page reporting (the default where QEMU has it) and deflate-on-oom.</para>
/// </example>
/// <example>
/// <code>New-Item -ItemType Directory /sys/fs/cgroup/memory/guests; Set-Content /sys/fs/cgroup/memory/guests/memory.limit_in_bytes 2G; Get-KvmTinyGuest | Start-KvmGuest -Name tiny2 -MemoryMB 256 -Cgroup guests -PassThru</code>
/// <para>Starts the tiny guest inside the memory cgroup "guests" (cgroup v1), whose 2 GiB limit holds it and every other guest started there.</para>
/// </example>
/// <example>
/// <code>Start-KvmGuest -DiskPath web1.qcow2 -IopsLimit 200 -PassThru | Get-KvmGuestIoLimit</code>
/// <para>Starts a guest whose disk is capped at 200 IOPS, and reads the limit back.</para>
/// </example>
/// <example>
/// <code>Start-KvmGuest -DiskPath web1.qcow2 -Network Tap -Bridge br0 -WhatIf -Verbose</code>
/// <para>Shows the QEMU command line for a bridged guest without starting it.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Start, "KvmGuest", SupportsShouldProcess = true)]
[OutputType(typeof(KvmGuest))]
public sealed class StartKvmGuestCommand : KvmCmdlet
{
    int _launched;

    /// <summary>The disk image to boot (qcow2 or raw); from the pipeline by property name Path or FullName.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("Path", "FullName")]
    [ValidateNotNullOrEmpty]
    public string? DiskPath { get; set; }

    /// <summary>The guest name (QEMU's -name guest=…); default: the disk's file name without extension.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Name { get; set; }

    /// <summary>Guest RAM in MiB.</summary>
    [Parameter]
    [ValidateRange(16, 16L * 1024 * 1024)]
    public long MemoryMB { get; set; } = 1024;

    /// <summary>Number of vCPUs.</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int CpuCount { get; set; } = 1;

    /// <summary>QEMU machine type (e.g. pc, q35, pc-i440fx-7.2).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string MachineType { get; set; } = "pc";

    /// <summary>Auto (KVM where /dev/kvm is usable, else TCG with a warning), Kvm or Tcg.</summary>
    [Parameter]
    public GuestAccelerator Accelerator { get; set; } = GuestAccelerator.Auto;

    /// <summary>VNC display number (port 5900 + N); default: a free one.</summary>
    [Parameter]
    [ValidateRange(0, 59635)]
    public int? VncDisplay { get; set; }

    /// <summary>Start without VNC.</summary>
    [Parameter]
    public SwitchParameter NoVnc { get; set; }

    /// <summary>The address VNC listens on (default 127.0.0.1; 0.0.0.0 for every interface, as the blog's -vnc :N).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string VncAddress { get; set; } = "127.0.0.1";

    /// <summary>User (QEMU user-mode networking), Tap (with -Bridge: on that bridge) or None.</summary>
    [Parameter]
    public GuestNetwork Network { get; set; } = GuestNetwork.User;

    /// <summary>The bridge for -Network Tap: on a Linux bridge (or any bridge with -NetworkNamespace) or an Open vSwitch bridge, QEMU creates a tap that an ifup script in the run directory puts on the bridge (it goes away with QEMU); any other name goes to qemu-bridge-helper.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Bridge { get; set; }

    /// <summary>The NIC's MAC address; default: a stable 52:54:00:xx:xx:xx derived from the name.</summary>
    [Parameter]
    [ValidatePattern("^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")]
    public string? MacAddress { get; set; }

    /// <summary>Add a virtio balloon device (on by default, like the blog); -Balloon $false leaves it out.</summary>
    [Parameter]
    public bool Balloon { get; set; } = true;

    /// <summary>A kernel to boot directly (QEMU's -kernel); binds by property name from Get-KvmTinyGuest.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? Kernel { get; set; }

    /// <summary>The initramfs for -Kernel; binds by property name from Get-KvmTinyGuest.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? Initrd { get; set; }

    /// <summary>The kernel command line for -Kernel (console=ttyS0 is added unless a console= is given, and no_timer_check unless a timer_check option is).</summary>
    [Parameter]
    public string? KernelArguments { get; set; }

    /// <summary>Extra QEMU arguments, appended as they are (one array element per argument).</summary>
    [Parameter]
    public string[] ExtraArgument { get; set; } = Array.Empty<string>();

    /// <summary>Seconds to wait between guests of one pipeline (not before the first): a number of seconds (1.5) or a TimeSpan (New-TimeSpan -Minutes 1), from 0 to 86400 seconds; or Auto: the first guest's boot IOPS and the device's capacity give the smallest stagger that keeps the overlapping boots under that capacity.</summary>
    [Parameter]
    [SecondsTransformation]
    public double StaggerSeconds { get; set; }

    /// <summary>With -StaggerSeconds Auto: what the device under the disks sustains, in IOPS (Measure-DeviceIopsCapacity tells it); without it, it is measured once with fio in the first disk's folder.</summary>
    [Parameter]
    public double? DeviceIopsCapacity { get; set; }

    /// <summary>The folder under which each guest's run directory &lt;RunDirectory&gt;/&lt;Name&gt; is made.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? RunDirectory { get; set; }

    /// <summary>How long to wait for QEMU to start and QMP to answer, in seconds (from 1 to 3600).</summary>
    [Parameter]
    public int TimeoutSeconds { get; set; } = 30;

    /// <summary>An IOPS limit (total, read + write) for the guest's disk from the start (the drive's throttling.iops-total; Set-KvmGuestIoLimit changes it later).</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long? IopsLimit { get; set; }

    /// <summary>A bytes-per-second limit (total) for the guest's disk from the start (the drive's throttling.bps-total).</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long? BpsLimit { get; set; }

    /// <summary>Run QEMU inside this network namespace (ip netns exec NS qemu …): with -Network Tap -Bridge, the tap and the bridge are the namespace's (an isolated network with its own DHCP server, as the experiment's -Network Isolated makes).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? NetworkNamespace { get; set; }

    /// <summary>The disk's cache mode (QEMU -drive cache=): none (O_DIRECT on the host: the guest's I/O reaches the device), writeback (QEMU's default), writethrough, directsync or unsafe.</summary>
    [Parameter]
    [ValidateSet("none", "writeback", "writethrough", "directsync", "unsafe")]
    public string? DiskCache { get; set; }

    /// <summary>
    /// Start QEMU inside this memory cgroup: a folder (/sys/fs/cgroup/memory/guests) or a name under the cgroup v1 memory
    /// controller (or the v2 hierarchy). QEMU's pid is in the cgroup's cgroup.procs from before it runs, so every page the
    /// guest touches is charged there and the cgroup's limit holds it (the kernel OOM-kills in the cgroup, not on the host).
    /// A path that is not a memory cgroup is refused (CgroupNotFound).
    /// </summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Cgroup { get; set; }

    /// <summary>Return the started guest.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    // Memory beyond KSM (issue 14).

    /// <summary>
    /// -MemoryMerge $false starts the guest with QEMU's -machine mem-merge=off: KSM never merges its RAM. Use it for
    /// guests that must not share pages with others (merging across untrusted guests is a side channel; see about_KvmOvercommit).
    /// </summary>
    [Parameter]
    public bool MemoryMerge { get; set; } = true;

    /// <summary>
    /// The balloon's free page reporting: the guest hands memory it frees back to the host. On by default where this
    /// QEMU's virtio-balloon-pci has free-page-reporting; -FreePageReporting requires it (an error where QEMU lacks it),
    /// -FreePageReporting:$false turns it off.
    /// </summary>
    [Parameter]
    public SwitchParameter FreePageReporting { get; set; }

    /// <summary>The balloon's deflate-on-oom: under memory pressure the guest deflates the balloon before it OOM-kills its own processes.</summary>
    [Parameter]
    public SwitchParameter DeflateOnOom { get; set; }

    /// <inheritdoc />
    protected override void BeginProcessing()
    {
        _auto = Validation.IsAutoStagger(StaggerSeconds);
        if (!_auto) _stagger = Validate(() => Validation.StaggerSeconds(StaggerSeconds));
        if (DeviceIopsCapacity is double c) Validate(() => Validation.DeviceIopsCapacity(c));
        if (DeviceIopsCapacity is not null && !_auto) WriteWarning("-DeviceIopsCapacity is used only with -StaggerSeconds Auto; it is ignored here.");
        Validate(() => Validation.TimeoutSeconds(TimeoutSeconds));
    }

    TimeSpan _stagger;
    bool _auto;

    /// <summary>With -StaggerSeconds Auto: the boot storm the first guest gave (its stagger is the one used).</summary>
    Engine.Experiment.BootStormResult? _storm;

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        var options = new GuestStartOptions
        {
            Name = Name,
            DiskPath = DiskPath is null ? null : ResolvePath(DiskPath),
            MemoryMB = MemoryMB,
            CpuCount = CpuCount,
            MachineType = MachineType,
            Accelerator = Accelerator,
            VncDisplay = VncDisplay,
            NoVnc = NoVnc,
            VncAddress = VncAddress,
            Network = Network,
            Bridge = Bridge,
            MacAddress = MacAddress,
            Balloon = Balloon,
            Kernel = Kernel is null ? null : ResolvePath(Kernel),
            Initrd = Initrd is null ? null : ResolvePath(Initrd),
            KernelArguments = KernelArguments,
            ExtraArgument = ExtraArgument,
            RunDirectory = RunDirectory is null ? null : ResolvePath(RunDirectory),
            StartTimeout = TimeSpan.FromSeconds(TimeoutSeconds),
            IopsLimit = IopsLimit,
            BpsLimit = BpsLimit,
            NetworkNamespace = NetworkNamespace,
            DiskCache = DiskCache,
            Cgroup = Cgroup,
        };
        options.MemoryMerge = MemoryMerge;
        options.FreePageReporting = MyInvocation.BoundParameters.ContainsKey(nameof(FreePageReporting)) ? FreePageReporting.IsPresent : null;
        options.DeflateOnOom = DeflateOnOom;
        Invoke(() =>
        {
            var plan = GuestLauncher.Plan(options, SyncObserver);
            if (!ShouldProcess(plan.Name, $"Start QEMU guest: {plan.CommandLine}")) return;
            bool first = _launched++ == 0;
            bool stagger = !first && _stagger > TimeSpan.Zero;
            InvokeAsync(async (observer, emit, ct) =>
            {
                if (stagger) await GuestLauncher.StaggerAsync(_stagger, plan.Name, observer, ct).ConfigureAwait(false);
                (double Iops, string Source)? capacity = null;
                // Measured before the first boot, on a quiet device.
                if (first && _auto)
                    capacity = await Engine.Experiment.AutoStagger.CapacityAsync(DeviceIopsCapacity, options.DiskPath is string d ? Path.GetDirectoryName(d)! : SessionState.Path.CurrentFileSystemLocation.Path, observer, ct).ConfigureAwait(false);
                long launched = System.Diagnostics.Stopwatch.GetTimestamp();
                var guest = await GuestLauncher.StartAsync(plan, observer, ct).ConfigureAwait(false);
                if (PassThru) emit(guest);
                if (capacity is { } c)
                {
                    _storm = await Engine.Experiment.AutoStagger.FromFirstGuestAsync(guest, launched, c.Iops, c.Source, options.StartTimeout + TimeSpan.FromMinutes(5), observer, ct).ConfigureAwait(false);
                    _stagger = TimeSpan.FromSeconds(_storm.StaggerSeconds);
                    observer.Verbose($"-StaggerSeconds Auto: the next guests start {_storm.StaggerSeconds.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture)} s apart.");
                }
            });
        });
    }
}
