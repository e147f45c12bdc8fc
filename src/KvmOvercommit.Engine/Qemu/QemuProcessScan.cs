using System.Globalization;
using System.Runtime.InteropServices;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>A QEMU process as its command line describes it.</summary>
internal sealed record QemuProcessInfo(int Pid, string[] Argv, string? Name, string? QmpSocket, int? VncDisplay, ulong? StartTicks);

/// <summary>
/// The minimal /proc reading the launcher and the stopper need: which QEMU processes run, their -name, QMP socket and
/// VNC display, and whether a pid is still the same process (start time) so a reused pid is never signalled.
/// </summary>
internal static class QemuProcessScan
{
    public static IEnumerable<QemuProcessInfo> Scan(HostRoots roots)
    {
        IEnumerable<string> dirs;
        try { dirs = Directory.EnumerateDirectories(roots.Proc).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { yield break; }
        foreach (var d in dirs)
        {
            if (!int.TryParse(Path.GetFileName(d), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            var info = Read(roots, pid);
            if (info is not null) yield return info;
        }
    }

    /// <summary>Reads one process; null when it is gone or not QEMU.</summary>
    public static QemuProcessInfo? Read(HostRoots roots, int pid)
    {
        string[] argv;
        try
        {
            var raw = File.ReadAllBytes(roots.Pid(pid, "cmdline"));
            if (raw.Length == 0) return null;
            argv = System.Text.Encoding.UTF8.GetString(raw).TrimEnd('\0').Split('\0');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        if (!IsQemu(argv[0])) return null;
        return new QemuProcessInfo(pid, argv, QemuCommandLine.GuestName(argv), QemuCommandLine.QmpSocket(argv), QemuCommandLine.VncDisplay(argv), StartTicks(roots, pid));
    }

    public static bool IsQemu(string argv0)
    {
        var b = Path.GetFileName(argv0);
        return b.StartsWith("qemu-system", StringComparison.Ordinal) || b is "kvm" or "qemu-kvm";
    }

    /// <summary>Field 22 of /proc/&lt;pid&gt;/stat: start time in clock ticks after boot.</summary>
    public static ulong? StartTicks(HostRoots roots, int pid)
    {
        try
        {
            var stat = File.ReadAllText(roots.Pid(pid, "stat"));
            var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return ulong.Parse(rest[19], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException or ArgumentOutOfRangeException) { return null; }
    }

    /// <summary>True while <paramref name="pid"/> exists (and, when given, is still the process that started at <paramref name="startTicks"/>).</summary>
    public static bool IsAlive(HostRoots roots, int pid, ulong? startTicks)
    {
        var now = StartTicks(roots, pid);
        if (now is null) return false;
        if (IsZombie(roots, pid)) return false;
        return startTicks is null || now == startTicks;
    }

    static bool IsZombie(HostRoots roots, int pid)
    {
        try
        {
            var stat = File.ReadAllText(roots.Pid(pid, "stat"));
            return stat[(stat.LastIndexOf(')') + 2)] == 'Z';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or IndexOutOfRangeException) { return true; }
    }

    /// <summary>The process start time (UTC) from its start ticks and the boot time in /proc/stat.</summary>
    public static DateTimeOffset? StartTime(HostRoots roots, ulong? startTicks)
    {
        if (startTicks is null) return null;
        try
        {
            foreach (var line in File.ReadLines(roots.ProcFile("stat")))
                if (line.StartsWith("btime ", StringComparison.Ordinal))
                {
                    var btime = long.Parse(line[6..].Trim(), CultureInfo.InvariantCulture);
                    return DateTimeOffset.FromUnixTimeSeconds(btime).AddSeconds(startTicks.Value / (double)ClockTicks);
                }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        return null;
    }

    static long ClockTicks
    {
        get
        {
            long t = sysconf(2 /* _SC_CLK_TCK */);
            return t > 0 ? t : 100;
        }
    }

    [DllImport("libc")] static extern long sysconf(int name);
}
