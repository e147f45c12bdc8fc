using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>Which accelerator QEMU uses.</summary>
public enum GuestAccelerator
{
    /// <summary>KVM where /dev/kvm is usable, else TCG (with a warning).</summary>
    Auto,
    /// <summary>Hardware virtualization through /dev/kvm.</summary>
    Kvm,
    /// <summary>QEMU's software emulation (slow, works everywhere).</summary>
    Tcg,
}

/// <summary>How the guest's NIC is connected.</summary>
public enum GuestNetwork
{
    /// <summary>QEMU user-mode networking (like the blog's -net user).</summary>
    User,
    /// <summary>A tap device, on a bridge when Bridge is given.</summary>
    Tap,
    /// <summary>No NIC.</summary>
    None,
}

/// <summary>What Start-KvmGuest asks for.</summary>
public sealed class GuestStartOptions
{
    public string? Name { get; set; }
    public string? DiskPath { get; set; }
    public long MemoryMB { get; set; } = 1024;
    public int CpuCount { get; set; } = 1;
    public string MachineType { get; set; } = "pc";
    public GuestAccelerator Accelerator { get; set; } = GuestAccelerator.Auto;
    public int? VncDisplay { get; set; }
    public bool NoVnc { get; set; }
    public string VncAddress { get; set; } = "127.0.0.1";
    public GuestNetwork Network { get; set; } = GuestNetwork.User;
    public string? Bridge { get; set; }
    public string? MacAddress { get; set; }
    public bool Balloon { get; set; } = true;
    public string? Kernel { get; set; }
    public string? Initrd { get; set; }
    public string? KernelArguments { get; set; }
    public string[] ExtraArgument { get; set; } = Array.Empty<string>();

    /// <summary>The folder under which the guest's run directory (&lt;RunDirectory&gt;/&lt;Name&gt;) is made; default <see cref="GuestLauncher.DefaultRunRoot"/>.</summary>
    public string? RunDirectory { get; set; }

    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(30);
    public string QemuPath { get; set; } = "qemu-system-x86_64";

    // Memory beyond KSM (issue 14).

    /// <summary>False: QEMU's <c>-machine mem-merge=off</c>, so KSM never merges this guest's RAM (a guest that must not share pages).</summary>
    public bool MemoryMerge { get; set; } = true;

    /// <summary>
    /// The balloon's free page reporting (<c>free-page-reporting=on</c>: the guest hands freed memory back to the host).
    /// Null: on where this QEMU's virtio-balloon-pci has the property; true: required (an error where QEMU lacks it); false: off.
    /// </summary>
    public bool? FreePageReporting { get; set; }

    /// <summary>The balloon's <c>deflate-on-oom=on</c>: the guest deflates the balloon instead of OOM-killing its own processes.</summary>
    public bool DeflateOnOom { get; set; }
    /// <summary>An IOPS limit (total) for the guest's disk from the start: the drive's throttling.iops-total; null or 0: none.</summary>
    public long? IopsLimit { get; set; }

    /// <summary>A bytes/s limit (total) for the guest's disk from the start: the drive's throttling.bps-total; null or 0: none.</summary>
    public long? BpsLimit { get; set; }

    /// <summary>Run QEMU inside this network namespace (ip netns exec); its tap and bridge are the namespace's.</summary>
    public string? NetworkNamespace { get; set; }

    /// <summary>The disk's cache mode (QEMU -drive cache=: none, writeback, writethrough, directsync, unsafe); null: QEMU's default, writeback. none opens the image with O_DIRECT, so the guest's I/O reaches the host device.</summary>
    public string? DiskCache { get; set; }

    /// <summary>
    /// Run QEMU in this memory cgroup (a folder, or a name under /sys/fs/cgroup/memory): QEMU is started inside it (its
    /// pid written to cgroup.procs before exec), so every page it ever touches is charged there and the cgroup's limit holds it.
    /// </summary>
    public string? Cgroup { get; set; }
}

/// <summary>What starting a guest will do: the exact QEMU command line and where its files go. Nothing is started yet.</summary>
public sealed class GuestLaunchPlan
{
    public string Name { get; set; } = "";
    public string Executable { get; set; } = "";
    public string[] Arguments { get; set; } = Array.Empty<string>();
    public string RunDirectory { get; set; } = "";
    public string QmpSocket { get; set; } = "";
    public string PidFile { get; set; } = "";
    public string SerialLog { get; set; } = "";
    public string Accelerator { get; set; } = "";
    public int? VncDisplay { get; set; }
    public string[] Disks { get; set; } = Array.Empty<string>();
    public long MemoryMB { get; set; }
    public int CpuCount { get; set; }
    public string? MacAddress { get; set; }
    public TimeSpan StartTimeout { get; set; }

    /// <summary>A run directory of a guest that no longer runs is in the way and will be cleared.</summary>
    public bool StaleRunDirectory { get; set; }

    /// <summary>
    /// -Accelerator Auto that chose KVM: the same command line under TCG, tried once when QEMU fails to start under
    /// KVM (a /dev/kvm that opens but does not work, e.g. nested virtualization without the MSRs `-cpu host` needs).
    /// </summary>
    public string[]? TcgFallbackArguments { get; set; }

    /// <summary>-Network Tap -Bridge on a Linux or Open vSwitch bridge: the tap QEMU creates (it goes away with QEMU).</summary>
    public string? TapDevice { get; set; }

    /// <summary>The script QEMU runs when the tap is up (written to the run directory as ifup): puts the tap on the bridge.</summary>
    public string? TapUpScript { get; set; }

    /// <summary>The script QEMU runs before the tap goes (ifdown; Open vSwitch only: removes the port).</summary>
    public string? TapDownScript { get; set; }

    /// <summary>-Cgroup: the memory cgroup's folder QEMU is started in, or null.</summary>
    public string? Cgroup { get; set; }

    /// <summary>The command line as a shell would need it (for -Verbose and -WhatIf; QEMU itself gets the array).</summary>
    public string CommandLine => string.Join(' ', new[] { Executable }.Concat(Arguments).Select(ShellQuote));

    static string ShellQuote(string s) => s.Length > 0 && s.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=,+@%".Contains(c)) ? s : "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}

/// <summary>
/// Starts QEMU guests: plans the argument array (never a shell string; option values escaped for QEMU's comma syntax),
/// then launches QEMU with -daemonize so the guest outlives the shell, one run directory per guest (qmp.sock, qemu.pid,
/// serial.log, cmdline.json), and returns once QMP answers. A failed start leaves nothing running and no run directory.
/// </summary>
public static class GuestLauncher
{
    /// <summary>File names inside a run directory.</summary>
    public const string QmpFile = "qmp.sock", PidFileName = "qemu.pid", SerialFile = "serial.log", CommandLineFile = "cmdline.json";

    internal static readonly string[] RunFiles = { QmpFile, PidFileName, SerialFile, CommandLineFile, TapUpFile, TapDownFile };

    /// <summary>The tap scripts QEMU runs for -Bridge on a Linux or Open vSwitch bridge.</summary>
    public const string TapUpFile = "ifup", TapDownFile = "ifdown";

    /// <summary>/run/kvmovercommit as root, else $XDG_RUNTIME_DIR/kvmovercommit, else /tmp/kvmovercommit-&lt;uid&gt;.</summary>
    public static string DefaultRunRoot
    {
        get
        {
            if (geteuid() == 0) return "/run/kvmovercommit";
            var xdg = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
            return !string.IsNullOrEmpty(xdg) ? Path.Combine(xdg, "kvmovercommit") : $"/tmp/kvmovercommit-{geteuid()}";
        }
    }

    /// <summary>The most guest RAM a start accepts: 16 TiB in MiB.</summary>
    public const long MaxMemoryMB = 16L * 1024 * 1024;
    /// <summary>The most vCPUs a start accepts.</summary>
    public const int MaxCpuCount = 1024;
    /// <summary>The highest VNC display (port 5900 + N must fit in 16 bits).</summary>
    public const int MaxVncDisplay = 59635;

    /// <summary>Decides everything about the start and checks what can be checked without starting anything.</summary>
    public static GuestLaunchPlan Plan(GuestStartOptions o, IOperationObserver observer, HostRoots? roots = null)
    {
        roots ??= HostRoots.Default;
        var disk = o.DiskPath is null ? null : Path.GetFullPath(o.DiskPath);
        var name = o.Name ?? (disk is null ? null : Path.GetFileNameWithoutExtension(disk));
        if (string.IsNullOrWhiteSpace(name))
            throw new KvmOcException(ErrorKind.InvalidArgument, "GuestNameRequired", "A guest needs a name: give -Name, or a disk whose file name becomes the name.", null, "Start-KvmGuest -Name web1 …");
        if (name.Contains('/') || name.Any(char.IsControl) || name is "." or ".." or ".journal")
            throw new KvmOcException(ErrorKind.InvalidArgument, "GuestNameInvalid", $"The guest name '{name}' cannot contain '/' or control characters, nor be '.', '..' or '.journal' (it names the run directory; .journal keeps the run journals).", name);
        if (o.MemoryMB < 16) throw new KvmOcException(ErrorKind.InvalidArgument, "MemoryTooSmall", $"-MemoryMB {o.MemoryMB} is too small (at least 16).", o.MemoryMB);
        if (o.MemoryMB > MaxMemoryMB) throw new KvmOcException(ErrorKind.InvalidArgument, "MemoryTooLarge", $"-MemoryMB {o.MemoryMB} is too large (at most {MaxMemoryMB}, 16 TiB).", o.MemoryMB);
        if (o.CpuCount is < 1 or > MaxCpuCount) throw new KvmOcException(ErrorKind.InvalidArgument, "CpuCountInvalid", $"-CpuCount {o.CpuCount} must be from 1 to {MaxCpuCount}.", o.CpuCount);
        if (o.VncDisplay is < 0 or > MaxVncDisplay) throw new KvmOcException(ErrorKind.InvalidArgument, "VncDisplayInvalid", $"-VncDisplay {o.VncDisplay} must be from 0 to {MaxVncDisplay} (port 5900 + N).", o.VncDisplay);
        Validation.Timeout(o.StartTimeout);

        var qemu = ToolRunner.Which(o.QemuPath) ?? throw new KvmOcException(ErrorKind.NotInstalled, "QemuNotInstalled",
            $"'{o.QemuPath}' is not installed.", o.QemuPath, "Install it: apt-get install qemu-system-x86");

        if (disk is not null && FileKind.RequireFile(disk, "The disk", allowBlockDevice: true, directoryId: "DiskPathIsDirectory", notFileId: "DiskNotRegularFile") == PathKind.Missing)
            throw new KvmOcException(ErrorKind.NotFound, "DiskNotFound", $"The disk '{disk}' of guest '{name}' does not exist.", disk, "Create it first, e.g. New-QcowOverlay -BackingPath base.qcow2.");
        if (disk is not null) CheckBackingChain(disk, name);
        string? kernel = o.Kernel is null ? null : Path.GetFullPath(o.Kernel), initrd = o.Initrd is null ? null : Path.GetFullPath(o.Initrd);
        if (kernel is null && (initrd is not null || o.KernelArguments is not null))
            throw new KvmOcException(ErrorKind.InvalidArgument, "KernelRequired", "-Initrd and -KernelArguments need -Kernel (direct kernel boot).", name,
                "Add -Kernel PATH (Get-KvmTinyGuest gives one), or leave out -Initrd and -KernelArguments.");
        foreach (var f in new[] { kernel, initrd })
            if (f is not null && FileKind.RequireFile(f, "The boot file", directoryId: "BootFileIsDirectory", notFileId: "BootFileNotRegularFile") == PathKind.Missing)
                throw new KvmOcException(ErrorKind.NotFound, "BootFileNotFound", $"'{f}' does not exist.", f, "Get-KvmTinyGuest returns a kernel and an initramfs that exist.");
        if (disk is null && kernel is null)
            throw new KvmOcException(ErrorKind.InvalidArgument, "NothingToBoot", $"Guest '{name}' has neither a disk nor a kernel to boot.", name, "Give -DiskPath, or -Kernel/-Initrd (Get-KvmTinyGuest | Start-KvmGuest -Name t1).");
        if (o.Bridge is not null && o.Network != GuestNetwork.Tap)
            throw new KvmOcException(ErrorKind.InvalidArgument, "BridgeNeedsTap", "-Bridge needs -Network Tap.", o.Bridge);
        CheckIoLimits(o, disk, name);
        var mac = o.MacAddress ?? (o.Network == GuestNetwork.None ? null : MacFor(name));
        if (mac is not null && !System.Text.RegularExpressions.Regex.IsMatch(mac, "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"))
            throw new KvmOcException(ErrorKind.InvalidArgument, "MacAddressInvalid", $"'{mac}' is not a MAC address like 52:54:00:12:34:56.", mac);

        var runDir = Path.Combine(Path.GetFullPath(o.RunDirectory ?? DefaultRunRoot), name);
        var qmp = Path.Combine(runDir, QmpFile);
        if (Encoding.UTF8.GetByteCount(qmp) > 107)
            throw new KvmOcException(ErrorKind.InvalidArgument, "RunDirectoryTooLong", $"The QMP socket path '{qmp}' is longer than a unix socket allows (107 bytes).", qmp, "Give a shorter -RunDirectory or -Name.");

        var scanner = new QemuProcessScanner(roots);
        var running = scanner.Scan();
        var byName = running.FirstOrDefault(p => p.Name == name);
        if (byName is not null)
            throw new KvmOcException(ErrorKind.ResourceExists, "GuestNameTaken", $"A guest named '{name}' is already running (pid {byName.Id}).", name, "Choose another -Name, or Stop-KvmGuest it first.");
        bool stale = false;
        if (Directory.Exists(runDir))
        {
            var pid = ReadPid(Path.Combine(runDir, PidFileName));
            if (pid is not null && scanner.Read(pid.Value) is not null)
                throw new KvmOcException(ErrorKind.ResourceExists, "GuestNameTaken", $"The run directory '{runDir}' belongs to a running QEMU (pid {pid}).", name, "Choose another -Name, or Stop-KvmGuest it first.");
            stale = true;
        }

        var accel = ResolveAccelerator(o.Accelerator, roots, observer);
        int? vnc = null;
        if (!o.NoVnc)
        {
            var taken = TakenVncDisplays(running, roots);
            if (o.VncDisplay is { } want)
            {
                if (want < 0 || want > 59635) throw new KvmOcException(ErrorKind.InvalidArgument, "VncDisplayInvalid", $"VNC display {want} is out of range.", want);
                if (taken.Contains(want))
                    throw new KvmOcException(ErrorKind.ResourceExists, "VncDisplayTaken", $"VNC display :{want} (port {5900 + want}) is already in use.", want, "Leave -VncDisplay out to get a free one, or use -NoVnc.");
                vnc = want;
            }
            else
            {
                vnc = Enumerable.Range(0, 1000).First(d => !taken.Contains(d));
            }
        }

        string? tapNetdev = null, tap = null, tapUp = null, tapDown = null;
        var args = new List<string>
        {
            "-name", "guest=" + QemuOptionString.Escape(name),
            "-machine", QemuOptionString.Escape(o.MachineType) + (o.MemoryMerge ? "" : ",mem-merge=off"),
            "-accel", accel,
            "-m", o.MemoryMB.ToString(CultureInfo.InvariantCulture),
            "-smp", o.CpuCount.ToString(CultureInfo.InvariantCulture),
            "-nodefaults",
        };
        if (accel == "kvm") args.AddRange(new[] { "-cpu", "host" });
        args.AddRange(new[]
        {
            "-qmp", $"unix:{QemuOptionString.Escape(qmp)},server=on,wait=off",
            "-pidfile", Path.Combine(runDir, PidFileName),
            "-serial", "file:" + Path.Combine(runDir, SerialFile),
            "-display", "none",
        });
        if (vnc is not null) args.AddRange(new[] { "-vnc", $"{o.VncAddress}:{vnc}" });
        if (disk is not null)
            args.AddRange(new[] { "-drive", $"file={QemuOptionString.Escape(disk)},format={DiskFormat(disk)},if=virtio" + DriveThrottling(o) });
        switch (o.Network)
        {
            case GuestNetwork.User:
                args.AddRange(new[] { "-netdev", "user,id=net0", "-device", $"virtio-net-pci,netdev=net0,mac={mac},romfile=" });
                break;
            case GuestNetwork.Tap:
                tapNetdev = TapNetdev(o, name, runDir, out tap, out tapUp, out tapDown);
                args.AddRange(new[] { "-netdev", tapNetdev ?? (o.Bridge is null ? "tap,id=net0" : "bridge,id=net0,br=" + QemuOptionString.Escape(o.Bridge)), "-device", $"virtio-net-pci,netdev=net0,mac={mac},romfile=" });
                break;
        }
        if (o.Balloon) args.AddRange(new[] { "-device", BalloonDevice(o, qemu, observer) });
        else if (o.FreePageReporting == true || o.DeflateOnOom)
            throw new KvmOcException(ErrorKind.InvalidArgument, "BalloonRequired", "-FreePageReporting and -DeflateOnOom are features of the balloon device; they need -Balloon (the default).", name);
        if (kernel is not null)
        {
            args.AddRange(new[] { "-kernel", kernel });
            if (initrd is not null) args.AddRange(new[] { "-initrd", initrd });
            var append = o.KernelArguments ?? "";
            if (!append.Contains("console=", StringComparison.Ordinal)) append = ("console=ttyS0 " + append).Trim();
            // A TCG guest on a busy host (48 booting at once on 2 cores) can miss the IO-APIC timer check and panic
            // ("IO-APIC + timer doesn't work!"); no_timer_check skips that check, as cloud images do.
            if (!append.Contains("timer_check", StringComparison.Ordinal)) append += " no_timer_check";
            args.AddRange(new[] { "-append", append });
        }
        args.AddRange(o.ExtraArgument);
        args.Add("-daemonize");
        if (o.NetworkNamespace is { } netns)
        {
            // ip netns exec NS qemu …: QEMU, its tap and the tap script live in the namespace; the QMP socket is a path, reachable from here.
            var ip = ToolRunner.Which("ip") ?? throw new KvmOcException(ErrorKind.NotInstalled, "IpNotInstalled", "'ip' (iproute2) is needed to run QEMU in a network namespace.", "ip", "Install it: apt-get install iproute2");
            args.InsertRange(0, new[] { "netns", "exec", netns, qemu });
            qemu = ip;
        }
        string? cgroup = null;
        if (o.Cgroup is not null)
        {
            // sh writes its own pid to cgroup.procs, then execs QEMU: QEMU starts in the cgroup and every page it touches is charged there.
            var cg = Memory.MemoryCgroup.Open(o.Cgroup, roots);
            cgroup = cg.Path;
            var sh = ToolRunner.Which("sh") ?? throw new KvmOcException(ErrorKind.NotInstalled, "ShellNotInstalled", "'sh' is needed to start QEMU in a cgroup.", "sh");
            args.InsertRange(0, new[] { "-c", CgroupWrapper, cg.ProcsFile, qemu });
            qemu = sh;
        }
        string[]? tcgFallback = null;
        if (accel == "kvm" && o.Accelerator == GuestAccelerator.Auto)
        {
            var tcg = new List<string>(args);
            tcg[tcg.IndexOf("-accel") + 1] = "tcg";
            int cpu = tcg.IndexOf("-cpu");
            if (cpu >= 0 && tcg[cpu + 1] == "host") tcg.RemoveRange(cpu, 2);
            tcgFallback = tcg.ToArray();
        }

        return new GuestLaunchPlan
        {
            Name = name,
            Executable = qemu,
            Arguments = args.ToArray(),
            RunDirectory = runDir,
            QmpSocket = qmp,
            PidFile = Path.Combine(runDir, PidFileName),
            SerialLog = Path.Combine(runDir, SerialFile),
            Accelerator = accel,
            VncDisplay = vnc,
            Disks = disk is null ? Array.Empty<string>() : new[] { disk },
            MemoryMB = o.MemoryMB,
            CpuCount = o.CpuCount,
            MacAddress = mac,
            StaleRunDirectory = stale,
            StartTimeout = o.StartTimeout,
            TcgFallbackArguments = tcgFallback,
            TapDevice = tap,
            TapUpScript = tapUp,
            TapDownScript = tapDown,
            Cgroup = cgroup,
        };
    }

    /// <summary>The shell line that moves itself into the cgroup ($0: its cgroup.procs) and then becomes QEMU ("$@").</summary>
    public const string CgroupWrapper = "echo $$ > \"$0\" && exec \"$@\"";

    /// <summary>
    /// The balloon device: <c>virtio-balloon-pci,id=balloon0</c> plus free page reporting (on by default where QEMU has
    /// it) and deflate-on-oom when asked for.
    /// </summary>
    static string BalloonDevice(GuestStartOptions o, string qemu, IOperationObserver observer)
    {
        var device = "virtio-balloon-pci,id=balloon0";
        bool report = o.FreePageReporting ?? false;
        if (o.FreePageReporting != false)
        {
            bool supported = QemuDeviceProperties.Has(qemu, "virtio-balloon-pci", "free-page-reporting");
            if (o.FreePageReporting == true && !supported)
                throw new KvmOcException(ErrorKind.NotInstalled, "FreePageReportingNotSupported", $"'{qemu}' has no free-page-reporting property on virtio-balloon-pci (QEMU 5.1 or later has it).", qemu,
                    "Upgrade QEMU, or start without -FreePageReporting.");
            if (o.FreePageReporting is null && !supported) observer.Verbose($"'{qemu}' has no virtio-balloon-pci free-page-reporting: the guest's freed memory is not reported.");
            report = supported;
        }
        if (report) device += ",free-page-reporting=on";
        if (o.DeflateOnOom) device += ",deflate-on-oom=on";
        return device;
    }

    /// <summary>
    /// -Network Tap -Bridge BR on a Linux bridge (or any bridge in a -NetworkNamespace) or an Open vSwitch bridge
    /// (ovs-vsctl br-exists): QEMU creates tap "kvt" + 8 hex of the name and runs ifup, which puts it on the bridge
    /// (ip link set master, or ovs-vsctl add-port; ifdown removes the OVS port). The tap goes away with QEMU.
    /// Null for any other bridge: QEMU's bridge helper (-netdev bridge) is used as before.
    /// </summary>
    static string? TapNetdev(GuestStartOptions o, string name, string runDir, out string? tap, out string? up, out string? down)
    {
        tap = up = down = null;
        if (o.Bridge is null) return null;
        var br = o.Bridge;
        if (br.Length > 15 || br.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            return null;
        bool linux = o.NetworkNamespace is not null || Directory.Exists(Path.Combine("/sys/class/net", br, "bridge"));
        bool ovs = false;
        if (!linux && ToolRunner.Which("ovs-vsctl") is { } vsctl)
            ovs = ToolRunner.RunAsync(vsctl, new[] { "br-exists", br }).GetAwaiter().GetResult().ExitCode == 0;
        if (!linux && !ovs) return null;
        tap = "kvt" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(name)))[..8].ToLowerInvariant();
        if (linux)
            up = $"#!/bin/sh\n# kvmoc: put QEMU's tap on Linux bridge {br}\nip link set \"$1\" master {br} && ip link set \"$1\" up\n";
        else
        {
            up = $"#!/bin/sh\n# kvmoc: put QEMU's tap on Open vSwitch bridge {br}\novs-vsctl --may-exist add-port {br} \"$1\" && ip link set \"$1\" up\n";
            down = $"#!/bin/sh\novs-vsctl --if-exists del-port {br} \"$1\"\n";
        }
        var upPath = Path.Combine(runDir, TapUpFile);
        var downPath = down is null ? "no" : Path.Combine(runDir, TapDownFile);
        return $"tap,id=net0,ifname={tap},script={QemuOptionString.Escape(upPath)},downscript={QemuOptionString.Escape(downPath)}";
    }

    /// <summary>-IopsLimit/-BpsLimit need a disk and cannot be negative.</summary>
    static void CheckIoLimits(GuestStartOptions o, string? disk, string name)
    {
        foreach (var (what, v) in new[] { ("IopsLimit", o.IopsLimit), ("BpsLimit", o.BpsLimit) })
        {
            if (v is < 0) throw new KvmOcException(ErrorKind.InvalidArgument, "IoLimitInvalid", $"-{what} {v} is not possible: limits are 0 (none) or more.", v);
            if (v is > 0 && disk is null)
                throw new KvmOcException(ErrorKind.InvalidArgument, "IoLimitNeedsDisk", $"-{what} limits the guest's disk, and guest '{name}' has none.", name, "Give -DiskPath, or leave the limit out.");
        }
    }

    /// <summary>",throttling.iops-total=N,throttling.bps-total=N" for the -drive option (empty without limits).</summary>
    static string DriveThrottling(GuestStartOptions o)
    {
        var s = "";
        if (o.IopsLimit is > 0) s += ",throttling.iops-total=" + o.IopsLimit.Value.ToString(CultureInfo.InvariantCulture);
        if (o.BpsLimit is > 0) s += ",throttling.bps-total=" + o.BpsLimit.Value.ToString(CultureInfo.InvariantCulture);
        if (o.DiskCache is { } cache)
        {
            if (cache is not ("none" or "writeback" or "writethrough" or "directsync" or "unsafe"))
                throw new KvmOcException(ErrorKind.InvalidArgument, "DiskCacheInvalid", $"'{cache}' is not a QEMU cache mode (none, writeback, writethrough, directsync, unsafe).", cache);
            s += ",cache=" + cache;
        }
        return s;
    }

    /// <summary>The plan under TCG instead of KVM (see <see cref="GuestLaunchPlan.TcgFallbackArguments"/>).</summary>
    static GuestLaunchPlan UnderTcg(GuestLaunchPlan p) => new()
    {
        Name = p.Name, Executable = p.Executable, Arguments = p.TcgFallbackArguments!, RunDirectory = p.RunDirectory, QmpSocket = p.QmpSocket,
        PidFile = p.PidFile, SerialLog = p.SerialLog, Accelerator = "tcg", VncDisplay = p.VncDisplay, Disks = p.Disks, MemoryMB = p.MemoryMB,
        CpuCount = p.CpuCount, MacAddress = p.MacAddress, StartTimeout = p.StartTimeout,
        TapDevice = p.TapDevice, TapUpScript = p.TapUpScript, TapDownScript = p.TapDownScript, Cgroup = p.Cgroup,
    };

    /// <summary>Starts the planned guest and returns it once QMP answers. On failure nothing is left running.</summary>
    public static async Task<KvmGuest> StartAsync(GuestLaunchPlan plan, IOperationObserver observer, CancellationToken ct = default, HostRoots? roots = null)
    {
        try
        {
            return await StartOnceAsync(plan, observer, ct, roots).ConfigureAwait(false);
        }
        // Only a failure of KVM itself falls back to TCG: a missing or locked file fails the same under TCG.
        catch (KvmOcException e) when (plan.TcgFallbackArguments is not null && e.ErrorId == "QemuStartFailed" && e.Kind == ErrorKind.InvalidOperation)
        {
            observer.Warning($"QEMU failed under KVM ({e.Message}); starting guest '{plan.Name}' under TCG emulation instead, much slower than KVM.");
            return await StartOnceAsync(UnderTcg(plan), observer, ct, roots).ConfigureAwait(false);
        }
    }

    static async Task<KvmGuest> StartOnceAsync(GuestLaunchPlan plan, IOperationObserver observer, CancellationToken ct, HostRoots? roots)
    {
        roots ??= HostRoots.Default;
        observer.Verbose($"Starting guest '{plan.Name}': {plan.CommandLine}");
        try
        {
            if (plan.StaleRunDirectory)
            {
                observer.Verbose($"Removing the stale run directory '{plan.RunDirectory}' of a guest that no longer runs.");
                RemoveRunDirectory(plan.RunDirectory);
            }
            var parent = Path.GetDirectoryName(plan.RunDirectory)!;
            Directory.CreateDirectory(parent);
            Directory.CreateDirectory(plan.RunDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
            File.WriteAllText(Path.Combine(plan.RunDirectory, CommandLineFile), JsonSerializer.Serialize(new[] { plan.Executable }.Concat(plan.Arguments).ToArray(), OutputJson.Default.StringArray));
            if (plan.TapUpScript is not null) File.WriteAllText(Path.Combine(plan.RunDirectory, TapUpFile), plan.TapUpScript);
            if (plan.TapDownScript is not null) File.WriteAllText(Path.Combine(plan.RunDirectory, TapDownFile), plan.TapDownScript);
            foreach (var script in new[] { TapUpFile, TapDownFile }.Select(f => Path.Combine(plan.RunDirectory, f)).Where(File.Exists))
                File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "RunDirectoryFailed", $"Cannot create the run directory '{plan.RunDirectory}'", plan.RunDirectory);
        }

        int? pid = null;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(plan.StartTimeout);
            ToolResult r;
            try
            {
                r = await ToolRunner.RunAsync(plan.Executable, plan.Arguments, plan.RunDirectory, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new KvmOcException(ErrorKind.Timeout, "GuestStartTimeout", $"QEMU did not finish starting guest '{plan.Name}' within {plan.StartTimeout.TotalSeconds:0} s.", plan.Name);
            }
            pid = ReadPid(plan.PidFile);
            if (r.ExitCode != 0)
                throw StartFailure(plan, r.Message);
            if (pid is null)
                throw new KvmOcException(ErrorKind.InvalidOperation, "GuestStartFailed", $"QEMU exited for guest '{plan.Name}' without writing its pid file: {r.Message}", plan.Name);
                        await using var qmp = await QmpClient.ConnectAsync(plan.QmpSocket, plan.StartTimeout, ct).ConfigureAwait(false);
            var status = await qmp.ExecuteAsync("query-status", null, ct).ConfigureAwait(false);
            if (plan.Cgroup is { } cgroupDir && !File.ReadLines(Path.Combine(cgroupDir, "cgroup.procs")).Any(l => l.Trim() == pid.Value.ToString(CultureInfo.InvariantCulture)))
                throw new KvmOcException(ErrorKind.InvalidOperation, "GuestNotInCgroup", $"QEMU of guest '{plan.Name}' (pid {pid}) started, but is not in the cgroup '{cgroupDir}'.", plan.Name,
                    "Check that nothing moves processes between cgroups (a cgroup manager such as systemd), or give a cgroup it leaves alone.");
            if (plan.Cgroup is not null) observer.Verbose($"Guest '{plan.Name}' (pid {pid}) runs in the memory cgroup {plan.Cgroup}.");
            var seen = new QemuProcessScanner(roots).Read(pid.Value);
            var guest = new KvmGuest
            {
                Name = plan.Name,
                Id = pid.Value,
                MemoryMB = plan.MemoryMB,
                CpuCount = plan.CpuCount,
                Disks = plan.Disks,
                VncDisplay = plan.VncDisplay,
                QmpSocket = plan.QmpSocket,
                Accelerator = plan.Accelerator,
                StartTime = seen?.StartTime ?? DateTimeOffset.UtcNow,
                RssBytes = seen?.RssBytes,
                SwapBytes = seen?.SwapBytes,
                CpuTime = seen?.CpuTime,
                RunDirectory = plan.RunDirectory,
                State = status.TryGetProperty("status", out var s) ? s.GetString() : null,
                SerialLog = plan.SerialLog,
                MacAddress = plan.MacAddress,
            };
            var planned = QemuCommandLine.Parse(new[] { plan.Executable }.Concat(plan.Arguments).ToArray());
            guest.MemoryMerge = planned.MemoryMerge;
            guest.FreePageReporting = planned.BalloonFreePageReporting;
            guest.DeflateOnOom = planned.BalloonDeflateOnOom;
            guest.Uptime = DateTimeOffset.UtcNow - guest.StartTime;
            observer.Verbose($"Guest '{plan.Name}' runs as pid {pid} ({guest.State}); QMP {plan.QmpSocket}");
            return guest;
        }
        catch (Exception e)
        {
            if (pid is { } p) Kill(roots, p);
            else if (e is OperationCanceledException || e is KvmOcException { Kind: ErrorKind.Timeout }) KillOrphans(roots, plan);
            RemoveRunDirectory(plan.RunDirectory);
            if (e is KvmOcException or OperationCanceledException) throw;
            throw KvmOcException.FromIo(e, "GuestStartFailed", $"Starting guest '{plan.Name}' failed", plan.Name);
        }
    }

    /// <summary>Waits between pipeline items (the blog's `sleep 60`), reporting progress every second.</summary>
    public static async Task StaggerAsync(TimeSpan delay, string nextName, IOperationObserver observer, CancellationToken ct)
    {
        Validation.Stagger(delay);
        var end = DateTime.UtcNow + delay;
        try
        {
            while (true)
            {
                var left = end - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) break;
                int pct = delay.TotalSeconds > 0 ? (int)(100 * (1 - left.TotalSeconds / delay.TotalSeconds)) : 100;
                observer.Progress(new ProgressInfo("Staggering guest starts", $"Starting '{nextName}' in {Math.Ceiling(left.TotalSeconds):0} s", pct, (int)Math.Ceiling(left.TotalSeconds), 2));
                await Task.Delay(left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
            }
        }
        finally
        {
            observer.Progress(new ProgressInfo("Staggering guest starts", "Done", 100, 0, 2, Completed: true));
        }
    }

    static KvmOcException StartFailure(GuestLaunchPlan plan, string qemuMessage)
    {
        var m = qemuMessage;
        var kind = m.Contains("lock", StringComparison.OrdinalIgnoreCase) ? ErrorKind.ResourceBusy
            : m.Contains("Address already in use", StringComparison.OrdinalIgnoreCase) ? ErrorKind.ResourceExists
            : m.Contains("No such file", StringComparison.OrdinalIgnoreCase) || m.Contains("Could not open", StringComparison.OrdinalIgnoreCase) ? ErrorKind.NotFound
            : m.Contains("Permission denied", StringComparison.OrdinalIgnoreCase) ? ErrorKind.PermissionDenied
            : ErrorKind.InvalidOperation;
        return new KvmOcException(kind, "QemuStartFailed", $"QEMU could not start guest '{plan.Name}': {m}", plan.Name,
            kind == ErrorKind.ResourceBusy ? "Another QEMU uses the disk; give each guest its own overlay (New-QcowOverlay)." : "Run with -Verbose to see the exact QEMU command line.");
    }

    /// <summary>kvm when /dev/kvm can be opened read-write, else tcg (Auto warns; Kvm fails).</summary>
    public static string ResolveAccelerator(GuestAccelerator wanted, HostRoots roots, IOperationObserver observer)
    {
        if (wanted == GuestAccelerator.Tcg) return "tcg";
        var dev = Path.Combine(roots.Dev, "kvm");
        bool usable = access(dev, 6 /* R_OK|W_OK */) == 0;
        if (usable) return "kvm";
        if (wanted == GuestAccelerator.Kvm)
            throw new KvmOcException(ErrorKind.NotFound, "KvmNotAvailable", $"{dev} is missing or not usable, so -Accelerator Kvm cannot work.", dev,
                "Enable virtualization in the firmware and load kvm_intel/kvm_amd, add the user to the kvm group, or use -Accelerator Tcg.");
        observer.Warning($"{dev} is not usable: guests run under TCG emulation, much slower than KVM.");
        return "tcg";
    }

    static HashSet<int> TakenVncDisplays(IEnumerable<KvmGuest> running, HostRoots roots)
    {
        var taken = running.Where(p => p.VncDisplay is not null).Select(p => p.VncDisplay!.Value).ToHashSet();
        foreach (var f in new[] { "tcp", "tcp6" })
        {
            try
            {
                foreach (var line in File.ReadLines(Path.Combine(roots.Proc, "net", f)).Skip(1))
                {
                    var cols = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (cols.Length < 4 || cols[3] != "0A") continue; // LISTEN
                    var port = int.Parse(cols[1][(cols[1].LastIndexOf(':') + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    if (port >= 5900 && port < 5900 + 1000) taken.Add(port - 5900);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        }
        return taken;
    }

    /// <summary>qcow2 by its magic, else raw (given explicitly so QEMU does not probe and warn).</summary>
    static string DiskFormat(string path)
    {
        try
        {
            using var h = FileKind.OpenRead(path, "The disk", "DiskUnreadable", allowBlockDevice: true, directoryId: "DiskPathIsDirectory", notFileId: "DiskNotRegularFile");
            Span<byte> magic = stackalloc byte[4];
            return RandomAccess.Read(h, magic, 0) == 4 && magic.SequenceEqual(new byte[] { 0x51, 0x46, 0x49, 0xfb }) ? "qcow2" : "raw";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "DiskUnreadable", $"Cannot read the disk '{path}'", path);
        }
    }

    /// <summary>A qcow2 disk whose backing chain is broken fails here (BackingFileMissing), not in QEMU.</summary>
    static void CheckBackingChain(string disk, string name)
    {
        if (DiskFormat(disk) != "qcow2") return;
        try
        {
            var image = Qcow.QcowReader.ReadHeader(disk);
            Qcow.QcowReader.ResolveChain(image, null, null);
        }
        catch (KvmOcException e) when (e.ErrorId == "QcowBackingFileMissing")
        {
            throw new KvmOcException(ErrorKind.NotFound, "BackingFileMissing", $"Guest '{name}': {e.Message}", disk, e.Hint, e);
        }
    }

    /// <summary>A stable, locally administered MAC (52:54:00 is QEMU's prefix) derived from the guest name.</summary>
    public static string MacFor(string name)
    {
        var h = SHA256.HashData(Encoding.UTF8.GetBytes(name));
        return $"52:54:00:{h[0]:x2}:{h[1]:x2}:{h[2]:x2}";
    }

    internal static int? ReadPid(string pidFile)
    {
        try
        {
            return int.TryParse(File.ReadAllText(pidFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>
    /// Removes a guest's whole run directory (QMP socket, pid file, serial log, cmdline.json, balloon-target and whatever
    /// else was kept there), so that the next guest of that name starts with nothing inherited. Disks never live there;
    /// a run directory that is a symbolic link loses only the link.
    /// </summary>
    internal static void RemoveRunDirectory(string runDir)
    {
        try
        {
            var info = new DirectoryInfo(runDir);
            if (!info.Exists && info.LinkTarget is null) return;
            if (info.LinkTarget is not null) { File.Delete(runDir); return; }
            info.Delete(recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>
    /// A start cancelled (Ctrl+C) or timed out while QEMU was still daemonizing: the parent is gone, but its child may
    /// run on before its pid file exists. Find it by this guest's QMP socket (unique to the run directory) for up to
    /// 2 s and kill it, so a failed start leaves nothing running.
    /// </summary>
    static void KillOrphans(HostRoots roots, GuestLaunchPlan plan)
    {
        var scanner = new QemuProcessScanner(roots);
        for (int i = 0; i < 20; i++)
        {
            if (ReadPid(plan.PidFile) is { } fromFile) { Kill(roots, fromFile); return; }
            var mine = scanner.FindQemuPids().Where(p => scanner.Read(p)?.QmpSocket == plan.QmpSocket).ToList();
            foreach (var p in mine) Kill(roots, p);
            if (mine.Count > 0) return;
            Thread.Sleep(100);
        }
    }

    internal static void Kill(HostRoots roots, int pid)
    {
        if (new QemuProcessScanner(roots).Read(pid) is null) return;
        kill(pid, 9);
        for (int i = 0; i < 100 && ProcessLiveness.IsAlive(roots, pid, null); i++) Thread.Sleep(20);
    }

    [DllImport("libc")] static extern uint geteuid();
    [DllImport("libc", SetLastError = true)] static extern int access(string path, int mode);
    [DllImport("libc", SetLastError = true)] internal static extern int kill(int pid, int sig);
}
