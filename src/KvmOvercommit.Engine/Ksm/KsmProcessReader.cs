namespace KvmOvercommit.Engine.Ksm;

/// <summary>
/// Reads /proc/&lt;pid&gt;/ksm_stat and ksm_merging_pages. Tolerates the differences between kernels: `key value`
/// and `key: value` lines, missing lines, and no ksm_stat at all (older kernels: those properties stay null).
/// </summary>
public static class KsmProcessReader
{
    /// <summary>One process, or null when it is gone (or is not a process directory).</summary>
    public static KsmProcessStat? Read(HostRoots? roots, int pid)
    {
        roots ??= HostRoots.Default;
        try
        {
            var comm = KsmFile.TryRead(roots.Pid(pid, "comm"));
            if (comm is null) return null;
            var stat = new KsmProcessStat { Id = pid, Name = comm.TrimEnd('\n'), PageSize = Environment.SystemPageSize };
            var cmdline = KsmFile.TryRead(roots.Pid(pid, "cmdline"));
            if (cmdline is not null) stat.CommandLine = cmdline.TrimEnd('\0').Replace('\0', ' ');
            var ksmStat = KsmFile.TryRead(roots.Pid(pid, "ksm_stat"));
            if (ksmStat is not null) Apply(stat, ParseKeyValues(ksmStat));
            var merging = KsmFile.ParseLong(KsmFile.TryRead(roots.Pid(pid, "ksm_merging_pages")));
            if (merging is not null) stat.KsmMergingPages = merging;
            return stat;
        }
        catch (UnauthorizedAccessException)
        {
            // Another user's process whose files we may not read (non-root): report what is public.
            return new KsmProcessStat { Id = pid, Name = KsmFile.TryRead(roots.Pid(pid, "comm"))?.TrimEnd('\n') ?? "", PageSize = Environment.SystemPageSize };
        }
        catch (IOException)
        {
            return null; // vanished between reads
        }
    }

    /// <summary>Every process (numeric folders of /proc), unsorted.</summary>
    public static IEnumerable<KsmProcessStat> ReadAll(HostRoots? roots = null)
    {
        roots ??= HostRoots.Default;
        foreach (var pid in ProcessIds(roots))
        {
            var s = Read(roots, pid);
            if (s is not null) yield return s;
        }
    }

    /// <summary>
    /// Get-KsmProcess: processes with KSM activity (all with <paramref name="all"/>), filtered by id and name
    /// wildcards, sorted by profit (highest first).
    /// </summary>
    public static List<KsmProcessStat> Query(HostRoots? roots, int[]? ids, string[]? names, bool all)
    {
        roots ??= HostRoots.Default;
        IEnumerable<KsmProcessStat> list = ids is { Length: > 0 }
            ? ids.Distinct().Select(id => Read(roots, id)).OfType<KsmProcessStat>()
            : ReadAll(roots);
        bool explicitIds = ids is { Length: > 0 };
        return list
            .Where(s => (all || explicitIds || s.HasKsmActivity) && Wildcard.MatchesAny(names is { Length: > 0 } ? names : null, s.Name))
            .OrderByDescending(s => s.KsmProcessProfit ?? long.MinValue)
            .ThenByDescending(s => s.KsmMergingPages ?? 0)
            .ThenBy(s => s.Id)
            .ToList();
    }

    internal static IEnumerable<int> ProcessIds(HostRoots roots)
    {
        IEnumerable<string> dirs;
        try { dirs = Directory.EnumerateDirectories(roots.Proc).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "ProcReadFailed", $"Cannot list {roots.Proc}", roots.Proc);
        }
        foreach (var d in dirs)
            if (int.TryParse(Path.GetFileName(d), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid))
                yield return pid;
    }

    /// <summary>Parses `key value` and `key: value` lines; blank and malformed lines are skipped.</summary>
    public static Dictionary<string, string> ParseKeyValues(string text)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0) continue;
            int sep = line.IndexOfAny(new[] { ':', ' ', '\t' });
            if (sep <= 0) continue;
            var key = line.Substring(0, sep).Trim();
            var value = line.Substring(sep + 1).TrimStart(':').Trim();
            d[key] = value;
        }
        return d;
    }

    static void Apply(KsmProcessStat s, Dictionary<string, string> kv)
    {
        string? Get(string k) => kv.TryGetValue(k, out var v) ? v : null;
        s.KsmRmapItems = KsmFile.ParseLong(Get("ksm_rmap_items"));
        s.KsmMergingPages = KsmFile.ParseLong(Get("ksm_merging_pages"));
        s.KsmZeroPages = KsmFile.ParseLong(Get("ksm_zero_pages"));
        s.KsmProcessProfit = KsmFile.ParseLong(Get("ksm_process_profit"));
        s.MergeAny = KsmFile.ParseBool(Get("ksm_merge_any"));
        s.Mergeable = KsmFile.ParseBool(Get("ksm_mergeable"));
    }
}
