namespace KvmOvercommit.Engine.Ksm;

/// <summary>
/// Reads every file of /sys/kernel/mm/ksm in one pass, in-process (the blog's `for i in $(ls …); do cat …` loop).
/// </summary>
public static class KsmStatReader
{
    /// <summary>True when the kernel has KSM (the folder and its run file exist under <paramref name="roots"/>).</summary>
    public static bool IsAvailable(HostRoots roots) => File.Exists(Path.Combine(roots.Ksm, KsmKnob.Run));

    /// <summary>Reads the KSM folder. No KSM → NotInstalled; unreadable → the errno's kind.</summary>
    public static KsmStat Read(HostRoots? roots = null)
    {
        roots ??= HostRoots.Default;
        var dir = roots.Ksm;
        if (!Directory.Exists(dir))
            throw new KvmOcException(ErrorKind.NotInstalled, "KsmNotAvailable", $"This kernel has no KSM: {dir} does not exist.", dir,
                "Use a kernel built with CONFIG_KSM=y (every major distribution kernel has it).");
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            var buffer = new byte[4096];
            foreach (var path in Directory.EnumerateFiles(dir))
            {
                var text = KsmFile.TryReadSmall(path, buffer);
                if (text is not null) files[Path.GetFileName(path)] = text.Trim();
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "KsmReadFailed", $"Cannot read {dir}", dir);
        }
        return FromFiles(files, Environment.SystemPageSize, DateTimeOffset.UtcNow);
    }

    /// <summary>Builds a KsmStat from file name → content (trimmed). Public so other readers (remote hosts, fixtures) can reuse it.</summary>
    public static KsmStat FromFiles(IReadOnlyDictionary<string, string> files, long pageSize, DateTimeOffset timestamp)
    {
        var s = new KsmStat { HostName = Environment.MachineName, Timestamp = timestamp.ToUniversalTime(), PageSize = pageSize };
        foreach (var (name, raw) in files)
        {
            switch (name)
            {
                case KsmKnob.Run:
                    var r = KsmFile.ParseLong(raw);
                    s.Run = r is >= 0 and <= 2 ? (KsmRunState)r.Value : null;
                    if (s.Run is null) s.Other[name] = raw;
                    break;
                case KsmKnob.PagesToScan: s.PagesToScan = KsmFile.ParseLong(raw); break;
                case KsmKnob.SleepMilliseconds: s.SleepMilliseconds = KsmFile.ParseLong(raw); break;
                case "pages_shared": s.PagesShared = KsmFile.ParseLong(raw); break;
                case "pages_sharing": s.PagesSharing = KsmFile.ParseLong(raw); break;
                case "pages_unshared": s.PagesUnshared = KsmFile.ParseLong(raw); break;
                case "pages_volatile": s.PagesVolatile = KsmFile.ParseLong(raw); break;
                case "pages_scanned": s.PagesScanned = KsmFile.ParseLong(raw); break;
                case "pages_skipped": s.PagesSkipped = KsmFile.ParseLong(raw); break;
                case "full_scans": s.FullScans = KsmFile.ParseLong(raw); break;
                case "general_profit": s.GeneralProfit = KsmFile.ParseLong(raw); break;
                case "ksm_zero_pages": s.KsmZeroPages = KsmFile.ParseLong(raw); break;
                case KsmKnob.MaxPageSharing: s.MaxPageSharing = KsmFile.ParseLong(raw); break;
                case KsmKnob.MergeAcrossNodes: s.MergeAcrossNodes = KsmFile.ParseBool(raw); break;
                case KsmKnob.UseZeroPages: s.UseZeroPages = KsmFile.ParseBool(raw); break;
                case KsmKnob.SmartScan: s.SmartScan = KsmFile.ParseBool(raw); break;
                case "stable_node_chains": s.StableNodeChains = KsmFile.ParseLong(raw); break;
                case "stable_node_dups": s.StableNodeDups = KsmFile.ParseLong(raw); break;
                case KsmKnob.StableNodeChainsPruneMilliseconds: s.StableNodeChainsPruneMilliseconds = KsmFile.ParseLong(raw); break;
                case KsmKnob.AdvisorMode:
                    s.AdvisorMode = KsmFile.ParseChoice(raw);
                    s.AdvisorModes = KsmFile.ParseChoices(raw);
                    break;
                case KsmKnob.AdvisorMaxCpu: s.AdvisorMaxCpu = KsmFile.ParseLong(raw); break;
                case KsmKnob.AdvisorTargetScanTime: s.AdvisorTargetScanTime = KsmFile.ParseLong(raw); break;
                case KsmKnob.AdvisorMinPagesToScan: s.AdvisorMinPagesToScan = KsmFile.ParseLong(raw); break;
                case KsmKnob.AdvisorMaxPagesToScan: s.AdvisorMaxPagesToScan = KsmFile.ParseLong(raw); break;
                default: s.Other[name] = raw; break;
            }
        }
        return s;
    }
}

/// <summary>File names of the writable KSM knobs.</summary>
public static class KsmKnob
{
    public const string Run = "run";
    public const string PagesToScan = "pages_to_scan";
    public const string SleepMilliseconds = "sleep_millisecs";
    public const string MaxPageSharing = "max_page_sharing";
    public const string MergeAcrossNodes = "merge_across_nodes";
    public const string UseZeroPages = "use_zero_pages";
    public const string SmartScan = "smart_scan";
    public const string StableNodeChainsPruneMilliseconds = "stable_node_chains_prune_millisecs";
    public const string AdvisorMode = "advisor_mode";
    public const string AdvisorMaxCpu = "advisor_max_cpu";
    public const string AdvisorTargetScanTime = "advisor_target_scan_time";
    public const string AdvisorMinPagesToScan = "advisor_min_pages_to_scan";
    public const string AdvisorMaxPagesToScan = "advisor_max_pages_to_scan";
}
