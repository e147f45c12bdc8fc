using System.Globalization;

namespace KvmOvercommit.Engine.Ksm.AutoTune;

/// <summary>
/// Reads one <see cref="KsmAutoTuneObservation"/> from the kernel: /sys/kernel/mm/ksm, every process's
/// /proc/&lt;pid&gt;/ksm_stat (and statm of the mergeable ones), /proc/meminfo and ksmd's /proc/&lt;pid&gt;/stat.
/// About a millisecond per reading on a host with a hundred processes: cheap enough to poll four times a second.
/// </summary>
public sealed class KsmAutoTuneSampler
{
    readonly HostRoots _roots;
    readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    int? _ksmdPid;

    /// <summary>A sampler over the given (or the real) kernel files.</summary>
    public KsmAutoTuneSampler(HostRoots? roots = null) => _roots = roots ?? HostRoots.Default;

    /// <summary>Takes a reading. Elapsed is measured from the sampler's creation.</summary>
    public KsmAutoTuneObservation Read(out KsmStat stat)
    {
        stat = KsmStatReader.Read(_roots);
        var o = new KsmAutoTuneObservation
        {
            Elapsed = _clock.Elapsed,
            PagesShared = stat.PagesShared ?? 0,
            PagesSharing = stat.PagesSharing ?? 0,
            PagesUnshared = stat.PagesUnshared ?? 0,
            PagesVolatile = stat.PagesVolatile ?? 0,
            PagesScanned = stat.PagesScanned,
            FullScans = stat.FullScans ?? 0,
        };
        ReadProcesses(o);
        ReadMemInfo(o);
        o.KsmdCpuSeconds = ReadKsmdCpuSeconds();
        return o;
    }

    void ReadProcesses(KsmAutoTuneObservation o)
    {
        var ids = new List<int>();
        long rmap = 0, resident = 0;
        foreach (var pid in KsmProcessReader.ProcessIds(_roots))
        {
            var text = TryRead(_roots.Pid(pid, "ksm_stat"));
            if (text is null) continue;
            var kv = KsmProcessReader.ParseKeyValues(text);
            long items = KsmFile.ParseLong(kv.GetValueOrDefault("ksm_rmap_items")) ?? 0;
            rmap += items;
            bool? mergeable = KsmFile.ParseBool(kv.GetValueOrDefault("ksm_mergeable"));
            bool? mergeAny = KsmFile.ParseBool(kv.GetValueOrDefault("ksm_merge_any"));
            // Kernels before 6.4 lack ksm_mergeable: a process ksmd tracks is mergeable.
            bool isMergeable = mergeable == true || mergeAny == true || (mergeable is null && items > 0);
            if (!isMergeable) continue;
            ids.Add(pid);
            var statm = TryRead(_roots.Pid(pid, "statm"));
            var fields = statm?.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields is { Length: > 1 } && long.TryParse(fields[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var res))
                resident += res;
        }
        ids.Sort();
        o.MergeableProcessIds = ids.ToArray();
        o.RmapItems = rmap;
        o.MergeableResidentPages = resident;
    }

    void ReadMemInfo(KsmAutoTuneObservation o)
    {
        var text = TryRead(_roots.ProcFile("meminfo"));
        if (text is null) return;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("MemTotal:", StringComparison.Ordinal)) o.MemTotalBytes = KiB(line);
            else if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)) o.MemAvailableBytes = KiB(line);
        }
        static long KiB(string line)
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return parts.Length > 1 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v * 1024 : 0;
        }
    }

    /// <summary>utime + stime of the ksmd kernel thread in seconds, or null when there is no ksmd.</summary>
    public double? ReadKsmdCpuSeconds()
    {
        if (_ksmdPid is int cached && KsmWatcher.ReadCpuTicks(_roots, cached) is long t) return t / UserHz;
        _ksmdPid = KsmWatcher.FindKsmd(_roots);
        return _ksmdPid is int pid && KsmWatcher.ReadCpuTicks(_roots, pid) is long t2 ? t2 / UserHz : null;
    }

    /// <summary>/proc reports CPU times in USER_HZ ticks, 100 per second on every Linux architecture.</summary>
    const double UserHz = 100.0;

    /// <summary>A /proc file, or null when the process is gone or its file cannot be read (another user's, a kernel thread's).</summary>
    static string? TryRead(string path)
    {
        try { return KsmFile.TryRead(path); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }
}
