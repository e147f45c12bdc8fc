namespace KvmOvercommit.Engine.Ksm;

/// <summary>
/// Every writable KSM setting captured at one moment, restorable exactly. Tests, experiments and the autotuner take
/// one before they touch KSM and restore it in finally (or use <see cref="KsmSettingsGuard"/>).
/// </summary>
public sealed class KsmSettingsSnapshot
{
    KsmSettingsSnapshot(HostRoots roots, KsmTuning settings, long pagesShared)
    {
        Roots = roots;
        Settings = settings;
        PagesSharedAtCapture = pagesShared;
    }

    /// <summary>Where the settings were read.</summary>
    public HostRoots Roots { get; }

    /// <summary>Every writable setting at capture time.</summary>
    public KsmTuning Settings { get; }

    /// <summary>pages_shared at capture time (0 means nothing was merged).</summary>
    public long PagesSharedAtCapture { get; }

    /// <summary>A snapshot of settings recorded earlier (a run's journal), to restore them.</summary>
    public static KsmSettingsSnapshot From(HostRoots? roots, KsmTuning settings, long pagesSharedAtCapture) =>
        new(roots ?? HostRoots.Default, settings, pagesSharedAtCapture);

    /// <summary>Reads every writable setting now.</summary>
    public static KsmSettingsSnapshot Capture(HostRoots? roots = null)
    {
        roots ??= HostRoots.Default;
        var s = KsmStatReader.Read(roots);
        return new KsmSettingsSnapshot(roots, KsmTuning.FromStat(s), s.PagesShared ?? 0);
    }

    /// <summary>
    /// Writes back every setting that differs (unmerging first if max_page_sharing or merge_across_nodes must change).
    /// If KSM was stopped with nothing merged at capture time and pages are merged now, unmerges (run=2, then 0) so
    /// the counters are as they were. Returns the settings that still differ afterwards (empty when exact).
    /// </summary>
    public List<string> Restore(IOperationObserver? observer = null) => Restore(observer, null);

    internal List<string> Restore(IOperationObserver? observer, Action<string, string>? writer)
    {
        var tuner = new KsmTuner(Roots, observer);
        if (writer is not null) tuner.WriteFile = writer;
        var now = KsmStatReader.Read(Roots);
        if (Settings.Run == KsmRunState.Stopped && PagesSharedAtCapture == 0 && (now.PagesShared ?? 0) > 0)
            tuner.Set(new KsmTuning { Run = KsmRunState.Unmerging });
        tuner.Set(Settings, force: true);
        return Compare();
    }

    /// <summary>Differences between the captured settings and the current ones (empty when equal).</summary>
    public List<string> Compare() => Settings.Differences(Normalize(KsmTuning.FromStat(KsmStatReader.Read(Roots))));

    // Under the scan-time advisor pages_to_scan belongs to the kernel: it is not part of what can be restored.
    KsmTuning Normalize(KsmTuning now)
    {
        if (Settings.AdvisorMode == "scan-time") now.PagesToScan = Settings.PagesToScan;
        now.HostName = Settings.HostName;
        return now;
    }
}

/// <summary>Captures the KSM settings on creation and restores them on Dispose (also when the caller failed).</summary>
public sealed class KsmSettingsGuard : IDisposable
{
    readonly IOperationObserver? _observer;
    bool _disposed;

    /// <summary>Captures every writable setting under <paramref name="roots"/>.</summary>
    public KsmSettingsGuard(HostRoots? roots = null, IOperationObserver? observer = null)
    {
        _observer = observer;
        Snapshot = KsmSettingsSnapshot.Capture(roots);
    }

    /// <summary>What was captured.</summary>
    public KsmSettingsSnapshot Snapshot { get; }

    /// <summary>Settings that still differed after the restore in Dispose (empty when exact).</summary>
    public List<string> RemainingDifferences { get; private set; } = new();

    /// <summary>Restores the captured settings.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        RemainingDifferences = Snapshot.Restore(_observer);
    }
}
