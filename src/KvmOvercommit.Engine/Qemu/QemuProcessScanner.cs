using System.Globalization;
using KvmOvercommit.Engine.Ksm;

namespace KvmOvercommit.Engine.Qemu;

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
    public List<KvmGuest> Scan()
    {
        var result = new List<KvmGuest>();
        if (!Directory.Exists(_roots.Proc)) return result;
        var btime = BootTime();
        var now = DateTimeOffset.UtcNow;
        foreach (int pid in FindQemuPids())
        {
            var info = Read(pid, btime, now);
            if (info is not null) result.Add(info);
        }
        return result;
    }

    /// <summary>One process; null when it is not (or no longer) a QEMU.</summary>
    public KvmGuest? Read(int pid) => Read(pid, BootTime(), DateTimeOffset.UtcNow);

    KvmGuest? Read(int pid, DateTimeOffset? btime, DateTimeOffset now)
    {
        var argv = ProcFiles.ReadCmdline(_roots.Pid(pid, "cmdline"));
        if (argv is null || !QemuCommandLine.IsQemuExecutable(argv[0])) return null;
        var cl = QemuCommandLine.Parse(argv);
        var info = new KvmGuest
        {
            Id = pid,
            Name = cl.GuestName(pid),
            MemoryMB = cl.MemoryBytes / Units.MiB,
            CpuCount = cl.CpuCount,
            Accelerator = cl.Accelerator,
            Disks = cl.Disks,
            VncDisplay = cl.VncDisplay,
            QmpSocket = cl.QmpSocket,
            MacAddress = cl.MacAddresses.FirstOrDefault(),
            SerialLog = cl.SerialLog,
            RunDirectory = cl.RunDirectory,
        };
        info.MemoryMerge = cl.MemoryMerge;
        info.FreePageReporting = cl.BalloonFreePageReporting;
        info.DeflateOnOom = cl.BalloonDeflateOnOom;

        long ticks = ProcFiles.ClockTicks;
        var stat = ProcFiles.StatFields(ProcFiles.ReadText(_roots.Pid(pid, "stat")));
        if (stat is { Length: > 19 })
        {
            // utime = field 14, stime = 15, starttime = 22 (index = field - 3).
            if (long.TryParse(stat[11], out long ut) && long.TryParse(stat[12], out long st))
                info.CpuTime = TimeSpan.FromTicks((ut + st) * TimeSpan.TicksPerSecond / ticks);
            if (btime is not null && long.TryParse(stat[19], out long start))
            {
                info.StartTime = btime.Value.AddTicks(start * TimeSpan.TicksPerSecond / ticks);
                info.Uptime = now - info.StartTime.Value;
            }
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
            var kv = KsmProcessReader.ParseKeyValues(ksm);
            info.KsmMergingPages = KsmFile.ParseLong(kv.GetValueOrDefault("ksm_merging_pages"));
            info.KsmProfitBytes = KsmFile.ParseLong(kv.GetValueOrDefault("ksm_process_profit"));
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
