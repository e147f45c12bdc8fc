namespace KvmOvercommit.Engine.Ksm.AutoTune;

/// <summary>Options of one run of the adaptive tuner.</summary>
public sealed class KsmAutoTuneOptions
{
    /// <summary>How long to run; null runs until cancelled (a service).</summary>
    public TimeSpan? Duration { get; set; }
    /// <summary>The policy's knobs (defaults when null).</summary>
    public KsmAutoTunePolicy? Policy { get; set; }
    /// <summary>Kernel file roots (tests point these at fake trees).</summary>
    public HostRoots? Roots { get; set; }
    /// <summary>Called with every decision that changes the rate (the experiment logs these).</summary>
    public Action<KsmAutoTuneDecision>? OnDecision { get; set; }
    /// <summary>The rate left in place at exit when the settings found at start were faster: pages_to_scan.</summary>
    public long ExitPagesToScan { get; set; } = 100;
    /// <summary>…and sleep_millisecs (the kernel's defaults, 100 pages every 20 ms).</summary>
    public long ExitSleepMilliseconds { get; set; } = 20;
    /// <summary>Keep a journal (rate found, exit rate) so that a killed run can be recovered (-Recover); the experiment, which journals itself, turns it off.</summary>
    public bool Journal { get; set; } = true;
    /// <summary>Where the journal is kept (default <see cref="Experiment.HostJournal.DefaultDirectory"/>).</summary>
    public string? JournalDirectory { get; set; }
}

/// <summary>
/// Runs the adaptive KSM tuner: polls the kernel (<see cref="KsmAutoTuneSampler"/>), lets
/// <see cref="KsmAutoTuneController"/> decide, writes pages_to_scan / sleep_millisecs through <see cref="KsmTuner"/>,
/// and on exit — normal, cancelled or failed — leaves KSM running at a low rate: the kernel default 100 / 20 ms, or
/// the settings found at start when those were slower. Never leaves a burst rate behind.
/// </summary>
public static class KsmAutoTuner
{
    /// <summary>How many decisions the result keeps (the most recent).</summary>
    public const int MaxDecisionsKept = 1000;

    /// <summary>The plan for -WhatIf: what the tuner will change. Checks the duration first (InvalidDuration), so -WhatIf refuses what a run would refuse.</summary>
    public static string Describe(KsmAutoTuneOptions options)
    {
        Validation.Duration(options.Duration);
        return $"tune pages_to_scan and sleep_millisecs adaptively {(options.Duration is TimeSpan d ? $"for {d.TotalSeconds:0.#} s" : "until stopped")}, then leave at most {options.ExitPagesToScan} pages / {options.ExitSleepMilliseconds} ms";
    }

    /// <summary>Runs until <see cref="KsmAutoTuneOptions.Duration"/> passes or <paramref name="ct"/> is cancelled; cancellation ends it normally.</summary>
    public static async Task<KsmAutoTuneResult> RunAsync(KsmAutoTuneOptions options, IOperationObserver? observer, CancellationToken ct)
    {
        observer ??= NullObserver.Instance;
        var roots = options.Roots ?? HostRoots.Default;
        Validation.Duration(options.Duration);
        if (!KsmStatReader.IsAvailable(roots))
            throw new KvmOcException(ErrorKind.NotInstalled, "KsmNotAvailable", $"This kernel has no KSM: {roots.Ksm} does not exist.", roots.Ksm,
                "Use a kernel built with CONFIG_KSM=y.");
        var controller = new KsmAutoTuneController(options.Policy);
        using var sampler = new KsmAutoTuneSampler(roots);
        var tuner = new KsmTuner(roots, observer);
        var start = KsmStatReader.Read(roots);
        if (start.AdvisorMode == "scan-time")
            throw new KvmOcException(ErrorKind.InvalidOperation, "KsmAdvisorActive",
                "The kernel's scan-time advisor owns pages_to_scan (advisor_mode = scan-time); the adaptive tuner would fight it.", KsmKnob.AdvisorMode,
                "Switch the advisor off first: Set-KsmTuning -AdvisorMode none.");

        var result = new KsmAutoTuneResult
        {
            HostName = start.HostName,
            StartTime = DateTimeOffset.UtcNow,
            Replaced = new KsmTuning { HostName = start.HostName, Run = start.Run, PagesToScan = start.PagesToScan, SleepMilliseconds = start.SleepMilliseconds },
        };
        (long exitPages, long exitSleep) = ExitRate(start.PagesToScan, start.SleepMilliseconds, options.ExitPagesToScan, options.ExitSleepMilliseconds);
        result.ExitPagesToScan = exitPages;
        result.ExitSleepMilliseconds = exitSleep;
        // Before the first write: a journal of the rate found, so that kill -9 can be undone (-Recover).
        var journal = Experiment.HostJournal.ForAutoTune(options, exitPages, exitSleep);
        // The polling loop below blocks between polls: run it off the caller's thread.
        await Task.Yield();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        double? cpu0 = sampler.ReadKsmdCpuSeconds();
        var lastProgress = TimeSpan.FromSeconds(-10);
        (long Pages, long Sleep) current = (start.PagesToScan ?? 0, start.SleepMilliseconds ?? 0);
        var lastCheck = TimeSpan.Zero;
        try
        {
            if (start.Run != KsmRunState.Merging)
            {
                observer.Verbose($"ksmd is not merging (run = {start.Run}): starting it");
                tuner.Set(new KsmTuning { Run = KsmRunState.Merging });
            }
            while (!ct.IsCancellationRequested)
            {
                var obs = sampler.Read();
                var d = controller.Decide(obs);
                sampler.ListingInterval = d.Mode == KsmAutoTuneMode.Idle ? TimeSpan.Zero : TimeSpan.FromSeconds(1);
                // The mergeable processes' own files only tell growth and exits: every 2 s when idle, 0.5 s otherwise.
                sampler.ProcessReadInterval = d.Mode == KsmAutoTuneMode.Idle ? TimeSpan.FromSeconds(2) : TimeSpan.FromMilliseconds(500);
                // Their CPU time every poll while bursting: the end of a boot is found within a poll of 0.5 s after it.
                sampler.CpuReadInterval = d.Mode == KsmAutoTuneMode.Idle ? null : TimeSpan.Zero;
                if (clock.Elapsed - lastCheck >= TimeSpan.FromSeconds(5))
                {
                    // Someone else (an admin, ksmtuned) may have changed the knobs: look at the real values now and then.
                    lastCheck = clock.Elapsed;
                    var now = KsmStatReader.Read(roots);
                    current = (now.PagesToScan ?? 0, now.SleepMilliseconds ?? 0);
                }
                if (current != (d.PagesToScan, d.SleepMilliseconds))
                {
                    tuner.Set(new KsmTuning { PagesToScan = d.PagesToScan, SleepMilliseconds = d.SleepMilliseconds });
                    current = (d.PagesToScan, d.SleepMilliseconds);
                }
                if (d.Reason.StartsWith("wake", StringComparison.Ordinal)) result.Wakeups++;
                if (d.Changed)
                {
                    // A service runs for months: keep the latest decisions only.
                    if (result.Decisions.Count >= MaxDecisionsKept) result.Decisions.RemoveAt(0);
                    result.Decisions.Add(d);
                    observer.Verbose(d.ToString());
                    options.OnDecision?.Invoke(d);
                }
                var elapsed = clock.Elapsed;
                if (elapsed - lastProgress >= TimeSpan.FromSeconds(1))
                {
                    lastProgress = elapsed;
                    int pct = options.Duration is TimeSpan total ? (int)Math.Min(100, 100 * elapsed.TotalSeconds / total.TotalSeconds) : -1;
                    int left = options.Duration is TimeSpan t2 ? (int)Math.Max(0, (t2 - elapsed).TotalSeconds) : -1;
                    observer.Progress(new ProgressInfo("KSM adaptive tuning",
                        $"{d.Mode}: {d.PagesToScan} pages / {d.SleepMilliseconds} ms, {Units.ToMiB(obs.PagesSharing * Environment.SystemPageSize)} MiB saved", pct, left));
                }
                var wait = d.NextPoll;
                if (options.Duration is TimeSpan limit)
                {
                    var remaining = limit - clock.Elapsed;
                    if (remaining <= TimeSpan.Zero) break;
                    if (remaining < wait) wait = remaining;
                }
                // One thread that sleeps on the token's handle: await Task.Delay took a timer thread, a thread-pool
                // worker and its spin-wait for every poll, and those context switches were most of the tuner's own
                // CPU (perf: 34% in finish_task_switch). The loop left the caller's thread at its start (Task.Yield).
                if (ct.WaitHandle.WaitOne(wait)) break;
            }
            result.Stopped = ct.IsCancellationRequested;
        }
        finally
        {
            LeaveLow(tuner, roots, exitPages, exitSleep, observer);
            journal?.Complete();
            observer.Progress(new ProgressInfo("KSM adaptive tuning", "done", 100, 0, Completed: true));
        }
        result.Duration = clock.Elapsed;
        var end = KsmStatReader.Read(roots);
        result.PagesSharing = end.PagesSharing ?? 0;
        result.SavedBytes = end.SavedBytes ?? 0;
        double? cpu1 = sampler.ReadKsmdCpuSeconds();
        result.KsmdCpuSeconds = cpu0 is double a && cpu1 is double b ? Math.Round(b - a, 2) : null;
        return result;
    }

    /// <summary>
    /// The rate to leave at exit: the settings found at start when they scan no faster than the default
    /// (<paramref name="defaultPages"/> per <paramref name="defaultSleep"/> ms), else the default.
    /// </summary>
    public static (long Pages, long Sleep) ExitRate(long? foundPages, long? foundSleep, long defaultPages = 100, long defaultSleep = 20)
    {
        if (foundPages is long p && foundSleep is long s && p >= 1 && p * Math.Max(1, defaultSleep) <= defaultPages * Math.Max(1, s))
            return (p, s);
        return (defaultPages, defaultSleep);
    }

    static void LeaveLow(KsmTuner tuner, HostRoots roots, long pages, long sleep, IOperationObserver observer)
    {
        try
        {
            var now = KsmStatReader.Read(roots);
            if (now.PagesToScan != pages || now.SleepMilliseconds != sleep)
                tuner.Set(new KsmTuning { PagesToScan = pages, SleepMilliseconds = sleep });
            observer.Verbose($"leaving KSM running at {pages} pages / {sleep} ms");
        }
        catch (KvmOcException e)
        {
            observer.Warning($"Could not leave KSM at the low rate {pages}/{sleep} ms: {e.Message}");
        }
    }
}
