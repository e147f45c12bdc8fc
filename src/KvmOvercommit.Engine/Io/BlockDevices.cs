namespace KvmOvercommit.Engine.Io;

/// <summary>
/// Which block devices exist and which of them a sampler watches. Whole disks are the entries of /sys/block
/// (where a slash in the kernel name appears as '!'); without /sys/block (a fake tree, a container) a name is a
/// partition when another device's name plus digits (or 'p' and digits) spells it.
/// </summary>
public static class BlockDevices
{
    static readonly string[] s_hiddenByDefault = { "loop*", "ram*", "zram*" };

    /// <summary>True for the devices watched when no -Device is given: whole disks, md and dm, but not loop, ram or zram.</summary>
    public static bool IsDefault(string name, ISet<string>? wholeDisks, IReadOnlyCollection<string> allNames)
        => IsWholeDisk(name, wholeDisks, allNames) && !s_hiddenByDefault.Any(p => new Wildcard(p).IsMatch(name));

    /// <summary>True when <paramref name="name"/> is a whole disk (not a partition).</summary>
    public static bool IsWholeDisk(string name, ISet<string>? wholeDisks, IReadOnlyCollection<string> allNames)
    {
        if (wholeDisks is not null) return wholeDisks.Contains(name);
        foreach (var other in allNames)
        {
            if (other.Length >= name.Length || !name.StartsWith(other, StringComparison.Ordinal)) continue;
            var rest = name.AsSpan(other.Length);
            if (rest.Length > 0 && rest[0] == 'p' && char.IsAsciiDigit(other[^1])) rest = rest[1..];
            if (rest.Length > 0 && rest.ToString().All(char.IsAsciiDigit)) return false;
        }
        return true;
    }

    /// <summary>Names in /sys/block, translated to /proc/diskstats spelling; null when the folder does not exist.</summary>
    public static HashSet<string>? ReadWholeDisks(HostRoots roots)
    {
        var dir = Path.Combine(roots.Sys, "block");
        if (!Directory.Exists(dir)) return null;
        try
        {
            return Directory.EnumerateFileSystemEntries(dir).Select(p => Path.GetFileName(p).Replace('!', '/')).ToHashSet(StringComparer.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// Chooses the devices to watch. No patterns → the default set. A pattern may be a kernel name (sda), a wildcard
    /// (nvme*), or a /dev path (/dev/sda, /dev/mapper/vg-root, resolved through its symlink). A name without
    /// wildcards that matches nothing → NotFound, listing the devices that exist.
    /// </summary>
    public static List<string> Select(IReadOnlyList<string> available, ISet<string>? wholeDisks, IEnumerable<string>? patterns, HostRoots? roots = null)
    {
        var list = patterns?.Where(p => !string.IsNullOrWhiteSpace(p)).ToList();
        if (list is null || list.Count == 0)
            return available.Where(n => IsDefault(n, wholeDisks, available)).ToList();
        var chosen = new List<string>();
        var missing = new List<string>();
        foreach (var raw in list)
        {
            var pattern = Normalize(raw.Trim(), roots ?? HostRoots.Default);
            var w = new Wildcard(pattern);
            var hits = available.Where(w.IsMatch).ToList();
            if (hits.Count == 0 && !Wildcard.ContainsWildcard(pattern)) missing.Add(raw);
            foreach (var h in hits) if (!chosen.Contains(h)) chosen.Add(h);
        }
        if (missing.Count > 0)
        {
            var existing = string.Join(", ", available.Where(n => IsWholeDisk(n, wholeDisks, available)));
            var partitions = available.Count(n => !IsWholeDisk(n, wholeDisks, available));
            throw new KvmOcException(ErrorKind.NotFound, "DeviceNotFound",
                $"No block device named {string.Join(", ", missing.Select(m => $"'{m}'"))} in /proc/diskstats. Devices that exist: {existing}"
                + (partitions > 0 ? $" (and {partitions} partitions)." : "."),
                missing.Count == 1 ? missing[0] : missing.ToArray(),
                "Use a kernel device name as /proc/diskstats spells it (sda, nvme0n1, dm-0, md126), a /dev path, or a wildcard (sd*).");
        }
        return chosen;
    }

    /// <summary>/dev/sda → sda; /dev/mapper/vg-root → dm-0 (through the symlink); cciss!c0d0 → cciss/c0d0.</summary>
    static string Normalize(string pattern, HostRoots roots)
    {
        if (!pattern.StartsWith("/dev/", StringComparison.Ordinal)) return pattern.Replace('!', '/');
        try
        {
            var info = new FileInfo(pattern);
            if (info.LinkTarget is not null)
            {
                var target = info.ResolveLinkTarget(returnFinalTarget: true);
                if (target is not null) pattern = target.FullName;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        var dev = roots.Dev.TrimEnd('/') + "/";
        return pattern.StartsWith(dev, StringComparison.Ordinal) ? pattern[dev.Length..] : pattern["/dev/".Length..];
    }

    /// <summary>The whole disk that holds a file: stat's st_dev → /sys/dev/block/MAJ:MIN → its parent when that is a partition.</summary>
    public static string? WholeDiskOf(string path, HostRoots? roots = null)
    {
        roots ??= HostRoots.Default;
        if (Native.stat_dev(path, out ulong dev) != 0) return null;
        uint major = (uint)(((dev >> 32) & 0xfffff000) | ((dev >> 8) & 0xfff));
        uint minor = (uint)(((dev >> 12) & 0xffffff00) | (dev & 0xff));
        var link = Path.Combine(roots.Sys, "dev", "block", $"{major}:{minor}");
        if (!Directory.Exists(link)) return null;
        var real = new DirectoryInfo(link).ResolveLinkTarget(true)?.FullName ?? link;
        if (File.Exists(Path.Combine(real, "partition")))
            real = Path.GetDirectoryName(real)!;
        return Path.GetFileName(real).Replace('!', '/');
    }

    static class Native
    {
        // struct stat on x86_64/aarch64 glibc: st_dev is the first 8 bytes. Use statx-free stat via __xstat-less libc 'stat' (glibc ≥ 2.33).
        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "stat", SetLastError = true)]
        static extern unsafe int stat(string path, byte* buf);

        public static unsafe int stat_dev(string path, out ulong dev)
        {
            byte* buf = stackalloc byte[256];
            int rc = stat(path, buf);
            dev = rc == 0 ? *(ulong*)buf : 0;
            return rc;
        }
    }
}
