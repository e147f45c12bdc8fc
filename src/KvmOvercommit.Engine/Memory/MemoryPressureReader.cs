using System.Globalization;
using KvmOvercommit.Engine.HostInfo;

namespace KvmOvercommit.Engine.Memory;

/// <summary>
/// Reads the balancer's pressure inputs: /proc/meminfo (MemTotal − MemAvailable), /proc/pressure/memory ("some avg10"),
/// or a memory cgroup's usage against its limit — cgroup v1 (memory.usage_in_bytes − total_inactive_file against
/// memory.limit_in_bytes) or v2 (memory.current − inactive_file against memory.max).
/// </summary>
public sealed class MemoryPressureReader
{
    readonly HostRoots _roots;
    readonly string? _cgroup;

    /// <summary>Reads the host, or the cgroup <paramref name="cgroup"/> (resolved with <see cref="ResolveCgroup"/>).</summary>
    public MemoryPressureReader(HostRoots? roots = null, string? cgroup = null)
    {
        _roots = roots ?? HostRoots.Default;
        _cgroup = cgroup is null ? null : ResolveCgroup(cgroup, _roots);
    }

    /// <summary>The cgroup folder read, or null for the host.</summary>
    public string? CgroupPath => _cgroup;

    /// <summary>
    /// An absolute folder with memory.limit_in_bytes (v1) or memory.max (v2), or a name under the v1 memory controller
    /// (&lt;sys&gt;/fs/cgroup/memory/NAME) or the v2 hierarchy (&lt;sys&gt;/fs/cgroup/NAME). NotFound otherwise; a cgroup
    /// without a limit is InvalidArgument (nothing to measure against).
    /// </summary>
    public static string ResolveCgroup(string cgroup, HostRoots roots)
    {
        var candidates = Path.IsPathRooted(cgroup) && Directory.Exists(cgroup)
            ? new[] { cgroup }
            : new[] { Path.Combine(roots.Sys, "fs", "cgroup", "memory", cgroup.TrimStart('/')), Path.Combine(roots.Sys, "fs", "cgroup", cgroup.TrimStart('/')), cgroup };
        foreach (var dir in candidates)
        {
            if (File.Exists(Path.Combine(dir, "memory.limit_in_bytes")) || File.Exists(Path.Combine(dir, "memory.max")))
                return Path.GetFullPath(dir);
        }
        throw new KvmOcException(ErrorKind.NotFound, "CgroupNotFound", $"'{cgroup}' is not a memory cgroup (no memory.limit_in_bytes or memory.max found).", cgroup,
            "Give the cgroup's folder, e.g. /sys/fs/cgroup/memory/machine (cgroup v1) or /sys/fs/cgroup/machine.slice (v2).");
    }

    /// <summary>Reads once.</summary>
    public MemoryPressureReading Read()
    {
        var reading = _cgroup is null ? ReadHost() : ReadCgroup(_cgroup);
        reading.PsiSomeAvg10 = ParsePsi(TryRead(_roots.ProcFile(Path.Combine("pressure", "memory"))));
        return reading;
    }

    MemoryPressureReading ReadHost()
    {
        var path = _roots.ProcFile("meminfo");
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw KvmOcException.FromIo(e, "MemInfoNotReadable", $"Cannot read {path}", path); }
        var m = MemInfoParser.ToHostMemory(text);
        return new MemoryPressureReading { TotalBytes = m.TotalBytes, UsedBytes = Math.Max(0, m.TotalBytes - m.AvailableBytes), Source = "host" };
    }

    /// <summary>Usage and limit of a cgroup folder (v1 or v2).</summary>
    public static MemoryPressureReading ReadCgroup(string dir)
    {
        bool v1 = File.Exists(Path.Combine(dir, "memory.limit_in_bytes"));
        var limitText = TryRead(Path.Combine(dir, v1 ? "memory.limit_in_bytes" : "memory.max"))?.Trim();
        var usageText = TryRead(Path.Combine(dir, v1 ? "memory.usage_in_bytes" : "memory.current"))?.Trim();
        if (limitText is null || usageText is null || !long.TryParse(usageText, NumberStyles.None, CultureInfo.InvariantCulture, out long usage))
            throw new KvmOcException(ErrorKind.InvalidData, "CgroupNotReadable", $"Cannot read the memory usage and limit of the cgroup '{dir}'.", dir);
        // v1 reports "no limit" as a huge page-aligned number, v2 as "max".
        if (limitText == "max" || !long.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out long limit) || limit >= long.MaxValue / 2)
            throw new KvmOcException(ErrorKind.InvalidArgument, "CgroupHasNoLimit", $"The cgroup '{dir}' has no memory limit, so there is nothing to balance against.", dir,
                v1 ? $"Set one: echo 2G > {dir}/memory.limit_in_bytes" : $"Set one: echo 2G > {dir}/memory.max");
        long inactive = 0;
        var stat = TryRead(Path.Combine(dir, "memory.stat"));
        if (stat is not null)
        {
            foreach (var line in stat.Split('\n'))
            {
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length == 2 && parts[0] == (v1 ? "total_inactive_file" : "inactive_file") && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long v)) inactive = v;
            }
        }
        return new MemoryPressureReading { TotalBytes = limit, UsedBytes = Math.Max(0, usage - inactive), Source = "cgroup " + dir };
    }

    /// <summary>"some avg10" of /proc/pressure/memory in percent, or null.</summary>
    public static double? ParsePsi(string? text)
    {
        if (text is null) return null;
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("some ", StringComparison.Ordinal)) continue;
            foreach (var field in line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                if (field.StartsWith("avg10=", StringComparison.Ordinal) && double.TryParse(field.AsSpan(6), NumberStyles.Float, CultureInfo.InvariantCulture, out double v)) return v;
        }
        return null;
    }

    static string? TryRead(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
