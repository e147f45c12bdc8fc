using System.Globalization;

namespace KvmOvercommit.Engine.Memory;

/// <summary>
/// A memory cgroup (v1 under &lt;sys&gt;/fs/cgroup/memory, or v2): its processes, usage, limit and OOM kills, and the
/// lifetime of one the caller creates (Start-KvmGuest -Cgroup puts QEMU in one; the experiment's -CgroupLimitMB makes
/// one, fills it and removes it).
/// </summary>
public sealed class MemoryCgroup
{
    MemoryCgroup(string path, bool v1)
    {
        Path = path;
        IsV1 = v1;
    }

    /// <summary>The cgroup's folder (absolute).</summary>
    public string Path { get; }

    /// <summary>True for the cgroup v1 memory controller (memory.limit_in_bytes), false for v2 (memory.max).</summary>
    public bool IsV1 { get; }

    /// <summary>The file a pid is written to so that the whole process moves in.</summary>
    public string ProcsFile => System.IO.Path.Combine(Path, "cgroup.procs");

    /// <summary>
    /// An existing memory cgroup: an absolute folder, or a name under the v1 memory controller or the v2 hierarchy
    /// (see <see cref="MemoryPressureReader.ResolveCgroup"/>). CgroupNotFound when it is not a memory cgroup.
    /// </summary>
    public static MemoryCgroup Open(string cgroup, HostRoots? roots = null)
    {
        var dir = MemoryPressureReader.ResolveCgroup(cgroup, roots ?? HostRoots.Default);
        if (!File.Exists(System.IO.Path.Combine(dir, "cgroup.procs")))
            throw new KvmOcException(ErrorKind.InvalidArgument, "CgroupNotFound", $"'{cgroup}' is not a memory cgroup one can put processes in (no cgroup.procs in {dir}).", cgroup,
                "Give the cgroup's folder, e.g. /sys/fs/cgroup/memory/kvmoc (cgroup v1) or /sys/fs/cgroup/kvmoc (v2).");
        return new MemoryCgroup(dir, File.Exists(System.IO.Path.Combine(dir, "memory.limit_in_bytes")));
    }

    /// <summary>
    /// The folder where a new child cgroup named <paramref name="name"/> would go: under the v1 memory controller when
    /// the host has one (&lt;sys&gt;/fs/cgroup/memory), else under the v2 hierarchy when its memory controller is on.
    /// NotInstalled when the host has neither.
    /// </summary>
    public static string PathForNew(string name, HostRoots? roots = null)
    {
        roots ??= HostRoots.Default;
        var v1 = System.IO.Path.Combine(roots.Sys, "fs", "cgroup", "memory");
        if (File.Exists(System.IO.Path.Combine(v1, "memory.limit_in_bytes")) || File.Exists(System.IO.Path.Combine(v1, "memory.usage_in_bytes")))
            return System.IO.Path.Combine(v1, name);
        var v2 = System.IO.Path.Combine(roots.Sys, "fs", "cgroup");
        var controllers = TryRead(System.IO.Path.Combine(v2, "cgroup.subtree_control")) ?? "";
        if (controllers.Split(' ', '\n').Contains("memory")) return System.IO.Path.Combine(v2, name);
        throw new KvmOcException(ErrorKind.NotInstalled, "MemoryCgroupNotAvailable", $"This host has no memory cgroup controller to create a cgroup in ({v1} is not one, and {v2}'s cgroup.subtree_control has no memory).", v1,
            "Mount the cgroup v1 memory controller (mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory) or enable memory in cgroup v2's subtree_control.");
    }

    /// <summary>Creates the cgroup <paramref name="dir"/> with a memory limit. ResourceExists when it is there already.</summary>
    public static MemoryCgroup Create(string dir, long limitBytes)
    {
        if (limitBytes < 4 * Units.MiB)
            throw new KvmOcException(ErrorKind.InvalidArgument, "CgroupLimitTooSmall", $"A memory cgroup limit of {Units.ToMiB(limitBytes):0.#} MiB is too small (at least 4 MiB).", limitBytes);
        if (Directory.Exists(dir))
            throw new KvmOcException(ErrorKind.ResourceExists, "CgroupExists", $"The cgroup '{dir}' exists already; a new one is never adopted.", dir, "Remove it (kill its tasks, rmdir), or give an existing cgroup with -Cgroup.");
        try
        {
            Directory.CreateDirectory(dir);
            bool v1 = File.Exists(System.IO.Path.Combine(dir, "memory.limit_in_bytes"));
            var cg = new MemoryCgroup(dir, v1);
            cg.SetLimit(limitBytes);
            return cg;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { Directory.Delete(dir); } catch (Exception e2) when (e2 is IOException or UnauthorizedAccessException) { }
            throw KvmOcException.FromIo(e, "CgroupCreateFailed", $"Cannot create the memory cgroup '{dir}'", dir);
        }
    }

    /// <summary>Sets the memory limit (memory.limit_in_bytes, or memory.max).</summary>
    public void SetLimit(long bytes)
    {
        var file = System.IO.Path.Combine(Path, IsV1 ? "memory.limit_in_bytes" : "memory.max");
        try { File.WriteAllText(file, bytes.ToString(CultureInfo.InvariantCulture)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw KvmOcException.FromIo(e, "CgroupLimitFailed", $"Cannot set {file}", file); }
    }

    /// <summary>The pids in the cgroup itself (cgroup.procs; not its children).</summary>
    public IReadOnlyList<int> Pids()
    {
        var text = TryRead(ProcsFile) ?? "";
        var pids = new List<int>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            if (int.TryParse(line.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) pids.Add(pid);
        return pids;
    }

    /// <summary>Usage and limit (see <see cref="MemoryPressureReader.ReadCgroup"/>): CgroupHasNoLimit without a limit.</summary>
    public MemoryPressureReading Read() => MemoryPressureReader.ReadCgroup(Path);

    /// <summary>Bytes charged now (memory.usage_in_bytes, or memory.current), page cache included.</summary>
    public long UsageBytes => ReadLong(IsV1 ? "memory.usage_in_bytes" : "memory.current") ?? 0;

    /// <summary>The most ever charged (memory.max_usage_in_bytes, or memory.peak), or null when the kernel has no such file.</summary>
    public long? PeakBytes => ReadLong(IsV1 ? "memory.max_usage_in_bytes" : "memory.peak");

    /// <summary>Processes the kernel's OOM killer ended in this cgroup (oom_kill of memory.oom_control, or of memory.events); 0 when not reported.</summary>
    public long OomKills
    {
        get
        {
            var text = TryRead(System.IO.Path.Combine(Path, IsV1 ? "memory.oom_control" : "memory.events")) ?? "";
            foreach (var line in text.Split('\n'))
            {
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length == 2 && parts[0] == "oom_kill" && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long n)) return n;
            }
            return 0;
        }
    }

    /// <summary>
    /// Removes the cgroup: SIGKILLs every task still in it (a QEMU there is the caller's to have stopped first; this is
    /// the cleanup of last resort), waits up to <paramref name="timeout"/> for them to go (a zombie is gone), then
    /// rmdir. Returns what went wrong, or null.
    /// </summary>
    public string? Remove(TimeSpan timeout)
    {
        var end = DateTime.UtcNow + timeout;
        while (true)
        {
            var pids = Directory.Exists(Path) ? Pids() : Array.Empty<int>();
            foreach (var pid in pids) kill(pid, 9);
            try
            {
                if (Directory.Exists(Path)) Directory.Delete(Path);
                return null;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                if (DateTime.UtcNow > end) return $"Could not remove the cgroup '{Path}': {e.Message} (tasks left: {string.Join(", ", pids)})";
            }
            Thread.Sleep(100);
        }
    }

    long? ReadLong(string file)
    {
        var text = TryRead(System.IO.Path.Combine(Path, file))?.Trim();
        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v : null;
    }

    static string? TryRead(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>True when the process is in this cgroup itself (its cgroup.procs lists the pid).</summary>
    public bool Contains(int pid) => Pids().Contains(pid);

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern int kill(int pid, int sig);
}
