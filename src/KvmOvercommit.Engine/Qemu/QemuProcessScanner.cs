using System.Globalization;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// One QEMU process as /proc shows it: what its command line configures and what the kernel counts for it.
/// The raw material of Get-KvmGuest.
/// </summary>
public sealed class QemuProcessInfo
{
    /// <summary>Guest name: -name, else the first disk's file name without extension, else qemu-&lt;pid&gt;.</summary>
    public string Name { get; set; } = "";
    /// <summary>Process id.</summary>
    public int Id { get; set; }
    /// <summary>argv[0].</summary>
    public string Executable { get; set; } = "";
    /// <summary>The full argv (argv[0] first).</summary>
    public string[] CommandLine { get; set; } = Array.Empty<string>();
    /// <summary>Guest RAM in bytes (-m).</summary>
    public long MemoryBytes { get; set; }
    /// <summary>vCPUs (-smp).</summary>
    public int CpuCount { get; set; }
    /// <summary>Machine type (-M/-machine), or null.</summary>
    public string? MachineType { get; set; }
    /// <summary>Accelerator asked for: kvm, tcg, …</summary>
    public string Accelerator { get; set; } = "";
    /// <summary>Disk image files.</summary>
    public string[] Disks { get; set; } = Array.Empty<string>();
    /// <summary>VNC display number, or null.</summary>
    public int? VncDisplay { get; set; }
    /// <summary>The -vnc value as given, or null.</summary>
    public string? Vnc { get; set; }
    /// <summary>QMP unix socket, or null.</summary>
    public string? QmpSocket { get; set; }
    /// <summary>MAC addresses of the guest's NICs.</summary>
    public string[] MacAddresses { get; set; } = Array.Empty<string>();
    /// <summary>Network back-end types.</summary>
    public string[] Networks { get; set; } = Array.Empty<string>();
    /// <summary>-pidfile, or null.</summary>
    public string? PidFile { get; set; }
    /// <summary>True with a virtio-balloon device.</summary>
    public bool HasBalloon { get; set; }
    /// <summary>Process start (UTC).</summary>
    public DateTimeOffset? StartTime { get; set; }
    /// <summary>User + system CPU time.</summary>
    public TimeSpan? CpuTime { get; set; }
    /// <summary>Resident memory (VmRSS).</summary>
    public long? RssBytes { get; set; }
    /// <summary>Swapped-out memory (VmSwap).</summary>
    public long? SwapBytes { get; set; }
    /// <summary>Pages of this process KSM merged (ksm_merging_pages); null on kernels without it.</summary>
    public long? KsmMergingPages { get; set; }
    /// <summary>What KSM saves for this process (ksm_process_profit); null on kernels without it.</summary>
    public long? KsmProfitBytes { get; set; }
}

/// <summary>
/// Finds every QEMU on the host from /proc/*/cmdline — also ones started by hand (the blog's <c>/usr/bin/kvm …</c>
/// loop) — and reads stat, status and ksm_stat for each. Only argv[0] of non-QEMU processes is looked at, so a
/// host with hundreds of guests lists in milliseconds.
/// </summary>
public sealed class QemuProcessScanner
{
    readonly HostRoots _roots;

    public QemuProcessScanner(HostRoots? roots = null) => _roots = roots ?? HostRoots.Default;

    /// <summary>Pids whose argv[0] is a QEMU system emulator, ascending.</summary>
    public List<int> FindQemuPids()
    {
        var pids = new List<int>();
        IEnumerable<string> dirs;
        try
        {
            dirs = Directory.EnumerateDirectories(_roots.Proc);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "ProcNotReadable", "Cannot list processes", _roots.Proc);
        }
        foreach (var dir in dirs)
        {
            var name = Path.GetFileName(dir.AsSpan());
            if (name.Length == 0 || !char.IsAsciiDigit(name[0]) || !int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
            var bytes = ProcFiles.ReadBytes(Path.Combine(dir, "cmdline"), out bool ok);
            if (ok && ProcFiles.Argv0IsQemu(bytes)) pids.Add(pid);
        }
        pids.Sort();
        return pids;
    }

    /// <summary>Every QEMU process on the host, by pid.</summary>
    public List<QemuProcessInfo> Scan()
    {
        var result = new List<QemuProcessInfo>();
        if (!Directory.Exists(_roots.Proc)) return result;
        var btime = BootTime();
        foreach (int pid in FindQemuPids())
        {
            var info = Read(pid, btime);
            if (info is not null) result.Add(info);
        }
        return result;
    }

    /// <summary>One process; null when it is not (or no longer) a QEMU.</summary>
    public QemuProcessInfo? Read(int pid) => Read(pid, BootTime());

    QemuProcessInfo? Read(int pid, DateTimeOffset? btime)
    {
        var argv = ProcFiles.ReadCmdline(_roots.Pid(pid, "cmdline"));
        if (argv is null || !QemuCommandLine.IsQemuExecutable(argv[0])) return null;
        var cl = QemuCommandLine.Parse(argv);
        var info = new QemuProcessInfo
        {
            Id = pid,
            Name = cl.GuestName(pid),
            Executable = cl.Executable,
            CommandLine = argv,
            MemoryBytes = cl.MemoryBytes,
            CpuCount = cl.CpuCount,
            MachineType = cl.MachineType,
            Accelerator = cl.Accelerator,
            Disks = cl.Disks,
            Vnc = cl.Vnc,
            VncDisplay = cl.VncDisplay,
            QmpSocket = cl.QmpSocket,
            MacAddresses = cl.MacAddresses,
            Networks = cl.Networks,
            PidFile = cl.PidFile,
            HasBalloon = cl.HasBalloon,
        };

        long ticks = ProcFiles.ClockTicks;
        var stat = ProcFiles.StatFields(ProcFiles.ReadText(_roots.Pid(pid, "stat")));
        if (stat is { Length: > 19 })
        {
            // utime = field 14, stime = 15, starttime = 22 (index = field - 3).
            if (long.TryParse(stat[11], out long ut) && long.TryParse(stat[12], out long st))
                info.CpuTime = TimeSpan.FromTicks((ut + st) * TimeSpan.TicksPerSecond / ticks);
            if (btime is not null && long.TryParse(stat[19], out long start))
                info.StartTime = btime.Value.AddTicks(start * TimeSpan.TicksPerSecond / ticks);
        }

        var status = ProcFiles.ReadText(_roots.Pid(pid, "status"));
        if (status is not null)
        {
            info.RssBytes = ProcFiles.StatusKb(status, "VmRSS");
            info.SwapBytes = ProcFiles.StatusKb(status, "VmSwap");
        }

        var ksm = ProcFiles.ReadText(_roots.Pid(pid, "ksm_stat"));
        if (ksm is not null)
        {
            info.KsmMergingPages = ProcFiles.KeyNumber(ksm, "ksm_merging_pages");
            info.KsmProfitBytes = ProcFiles.KeyNumber(ksm, "ksm_process_profit");
        }
        else if (ProcFiles.ReadText(_roots.Pid(pid, "ksm_merging_pages")) is { } kmp && long.TryParse(kmp.Trim(), out long pages))
        {
            info.KsmMergingPages = pages; // kernels 5.19–6.0: the count without the profit
        }
        return info;
    }

    /// <summary>Boot time from /proc/stat's btime line (UTC), or null.</summary>
    public DateTimeOffset? BootTime()
    {
        var text = ProcFiles.ReadText(_roots.ProcFile("stat"));
        if (text is null) return null;
        var secs = ProcFiles.KeyNumber(text, "btime");
        return secs is null ? null : DateTimeOffset.FromUnixTimeSeconds(secs.Value);
    }
}
