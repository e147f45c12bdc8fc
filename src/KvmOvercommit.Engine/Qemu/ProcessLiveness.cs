using System.Globalization;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// Whether a pid is still the same live process: its start time (field 22 of /proc/&lt;pid&gt;/stat) pins the identity,
/// so a pid the kernel has reused is never signalled, and a zombie counts as gone.
/// </summary>
internal static class ProcessLiveness
{
    /// <summary>Start time in clock ticks after boot, or null when the process is gone.</summary>
    public static ulong? StartTicks(HostRoots roots, int pid)
    {
        var rest = Fields(roots, pid);
        return rest is { Length: > 19 } && ulong.TryParse(rest[19], NumberStyles.None, CultureInfo.InvariantCulture, out var t) ? t : null;
    }

    /// <summary>True while <paramref name="pid"/> runs (not a zombie) and, when given, started at <paramref name="startTicks"/>.</summary>
    public static bool IsAlive(HostRoots roots, int pid, ulong? startTicks)
    {
        var rest = Fields(roots, pid);
        if (rest is not { Length: > 19 } || rest[0] is "Z" or "X") return false;
        return startTicks is null || (ulong.TryParse(rest[19], NumberStyles.None, CultureInfo.InvariantCulture, out var t) && t == startTicks);
    }

    /// <summary>The fields after "(comm)" in /proc/&lt;pid&gt;/stat: [0] is the state, [19] the start time.</summary>
    static string[]? Fields(HostRoots roots, int pid)
    {
        try
        {
            var stat = File.ReadAllText(roots.Pid(pid, "stat"));
            int close = stat.LastIndexOf(')');
            return close < 0 || close + 2 > stat.Length ? null : stat[(close + 2)..].Split(' ');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
