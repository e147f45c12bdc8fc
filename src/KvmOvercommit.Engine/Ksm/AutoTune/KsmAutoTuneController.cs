using System.Globalization;

namespace KvmOvercommit.Engine.Ksm.AutoTune;

/// <summary>
/// The adaptive KSM policy, pure and deterministic: feed it one <see cref="KsmAutoTuneObservation"/> per tick and it
/// answers with the pages_to_scan / sleep_millisecs to set and why. No I/O, no clock: tests drive it with synthetic
/// sequences.
/// </summary>
/// <remarks>
/// The policy: new mergeable memory (a new mergeable process, or the mergeable processes' resident memory growing)
/// wakes it into <see cref="KsmAutoTuneMode.Burst"/>: a rate sized to finish one full pass over the mergeable pages in
/// <see cref="KsmAutoTunePolicy.BurstPassTime"/>, capped at the aggressive 20000 pages / 20 ms. A new process joins
/// behind ksmd's cursor (the pass in progress skips it) and its pages merge on the second pass that sees them (the
/// first only checksums them), so the first three passes after a wake-up are not judged;
/// after that, every completed pass is: while a pass merges pages the burst goes on, and once a pass merges
/// (almost) nothing the rate steps down geometrically to the idle rate. In idle, merges found by the slow scan or new
/// mergeable memory wake it again. Memory pressure (little MemAvailable) raises the floor.
/// A mergeable process that is busy (its QEMU uses at least <see cref="KsmAutoTunePolicy.BusyCpuFraction"/> of a core:
/// the guest boots or rewrites its memory) overrides the yield rules once the passes after a wake-up are done (or
/// <see cref="KsmAutoTunePolicy.BusyPassTime"/> after it, whichever comes first): passes
/// are paced by time (<see cref="KsmAutoTunePolicy.BusyPassTime"/>) however much they merge, and the tuner neither
/// backs off nor goes idle; a new mergeable process that arrives while one is busy joins the burst without a new
/// wake-up. When every mergeable process is quiet, two passes at the full rate merge what settled.
/// Whatever the mode, a pass (the second after a wake-up or later) that saw no memory it had not seen before and in
/// which fewer pages changed than the yield threshold ends the burst at once: pages left unshared were compared with
/// every other page in that pass and have no twin, so only the changed ones could merge in another pass. "Changed" is
/// pages_volatile less the pages smart scan skipped in the pass (a skipped page leaves the unstable tree and counts as
/// volatile until its next visit).
/// </remarks>
public sealed class KsmAutoTuneController
{
    readonly KsmAutoTunePolicy _p;
    KsmAutoTuneObservation? _prev;
    HashSet<int> _knownPids = new();
    long _baselineResident;
    long _wakeFullScans, _judgeFullScans, _judgeMerged;
    long _passFullScans = -1, _passTracked, _prevPassTracked = -1;
    long _passSkippedAt, _passEncounteredAt, _passChanged = -1, _joinFullScans = long.MinValue / 2;
    TimeSpan _lastStep, _idleSince, _wakeTime;
    bool _paced, _busyPaced;
    long _pages, _sleep, _appliedPages, _appliedSleep;
    bool _pressure;
    double _scale = 1;

    /// <summary>A controller with the given (or the default) policy.</summary>
    public KsmAutoTuneController(KsmAutoTunePolicy? policy = null)
    {
        _p = policy ?? new KsmAutoTunePolicy();
        _p.Validate();
    }

    /// <summary>The current mode.</summary>
    public KsmAutoTuneMode Mode { get; private set; } = KsmAutoTuneMode.Idle;

    /// <summary>The policy in use.</summary>
    public KsmAutoTunePolicy Policy => _p;

    /// <summary>Takes one observation and decides the rate.</summary>
    public KsmAutoTuneDecision Decide(KsmAutoTuneObservation o)
    {
        var oldMode = Mode;
        string reason;
        if (_prev is null)
        {
            _knownPids = new HashSet<int>(o.MergeableProcessIds);
            _baselineResident = o.MergeableResidentPages;
            reason = o.MergeablePages > 0
                ? Wake(o, $"start: {o.MergeableProcessIds.Length} mergeable process(es), {MiB(o.MergeablePages)} MiB to scan")
                : GoIdle(o, "start: no mergeable memory");
        }
        else
        {
            reason = Step(o);
        }
        var (pages, sleep) = ApplyPressure(o, ref reason);
        _prev = o;
        var decision = new KsmAutoTuneDecision
        {
            Elapsed = o.Elapsed,
            Mode = Mode,
            PagesToScan = pages,
            SleepMilliseconds = sleep,
            Changed = pages != _appliedPages || sleep != _appliedSleep || Mode != oldMode,
            Reason = reason,
            NextPoll = Mode != KsmAutoTuneMode.Idle ? _p.FastPoll : o.Elapsed - _idleSince >= _p.QuietAfter ? _p.QuietIdlePoll : _p.IdlePoll,
            PagesSharing = o.PagesSharing,
        };
        (_appliedPages, _appliedSleep) = (pages, sleep);
        return decision;
    }

    string Step(KsmAutoTuneObservation o)
    {
        if (o.FullScans < _prev!.FullScans)
        {
            // run=2 resets the counters: start counting passes afresh.
            _wakeFullScans = _judgeFullScans = o.FullScans;
            _judgeMerged = o.MergedPages;
        }
        _judgeMerged = Math.Min(_judgeMerged, o.MergedPages); // pages unmerged (a process exited) are not negative yield
        if (o.FullScans != _passFullScans)
        {
            // A pass ended: what ksmd tracks now (every rmap item: shared, sharing, unshared or volatile) against what it
            // tracked at the end of the pass before. Unchanged means the pass found no memory it had not seen.
            (_prevPassTracked, _passTracked) = (_passFullScans < 0 ? -1 : _passTracked, Tracked(o));
            _passChanged = _passFullScans < 0 || o.FullScans < _passFullScans ? -1 : ChangedInPass(o);
            _passFullScans = o.FullScans;
            _passSkippedAt = o.PagesSkipped ?? 0;
            _passEncounteredAt = (o.PagesScanned ?? 0) + _passSkippedAt;
        }
        var newPids = o.MergeableProcessIds.Where(id => !_knownPids.Contains(id)).ToList();
        _knownPids = new HashSet<int>(o.MergeableProcessIds);
        _baselineResident = Math.Min(_baselineResident, o.MergeableResidentPages);
        long growth = o.MergeableResidentPages - _baselineResident;

        if (newPids.Count > 0 && Mode == KsmAutoTuneMode.Burst && Busy(o))
        {
            // A fleet that starts one guest after another: while the ones before still boot, a new one joins the
            // burst (or the paced passes) without restarting it. A wake-up per guest kept 24 staggered guests at the
            // full rate for 11 s; the passes that follow see the new process, and the settle passes merge it.
            _baselineResident = o.MergeableResidentPages;
            _joinFullScans = o.FullScans;
            SetBurstRate(o, force: _busyPaced);
            return $"{newPids.Count} new mergeable process(es) (pid {string.Join(",", newPids.Take(8))}) while one is busy ({Cpu(o)}): joining the burst, {MiB(o.MergeablePages)} MiB to scan";
        }
        if (newPids.Count > 0)
            return Wake(o, $"{newPids.Count} new mergeable process(es) (pid {string.Join(",", newPids.Take(8))}), {MiB(o.MergeablePages)} MiB to scan");
        if (growth >= Math.Max(_p.MinGrowthPages, (long)(_p.GrowthFraction * _baselineResident)))
        {
            if (Mode != KsmAutoTuneMode.Burst)
                return Wake(o, $"mergeable memory grew by {MiB(growth)} MiB");
            // Already bursting: memory that grows in place is not behind ksmd's cursor, so the passes already
            // counted still see it. Re-size the rate and keep judging (a guest booting grows for seconds; restarting
            // the count on every step kept the burst going for as long).
            _baselineResident = o.MergeableResidentPages;
            SetBurstRate(o);
        }

        long threshold = YieldThreshold(o);
        long merged = o.MergedPages - _judgeMerged;
        bool passDone = o.FullScans > _judgeFullScans;
        long passes = Math.Max(1, o.FullScans - _judgeFullScans);
        switch (Mode)
        {
            case KsmAutoTuneMode.Burst:
                if (passDone && o.FullScans - _wakeFullScans >= 2 && Converged(o, threshold) is string done)
                {
                    // The pass found no memory it had not seen and (almost) nothing that changed since the pass
                    // before: a further pass can only merge what changed, however busy a process is or however much
                    // this pass merged. 24 tiny guests spent 1.5 s of ksmd on such a confirming pass (and 3.4 s on
                    // three paced ones while a guest hovered at 6% of a core without touching its memory).
                    return GoIdle(o, $"a full pass merged {merged / passes} pages, {done}: converged; idle");
                }
                if (_busyPaced && !Busy(o))
                {
                    // Everything settled: two passes at the full rate (the one in progress and one more) merge what
                    // stopped changing since the paced passes checksummed it, then the yield rules judge as after a wake-up.
                    _busyPaced = false;
                    _paced = false;
                    _scale = 1;
                    _wakeFullScans = o.FullScans - Math.Max(0, _p.PassesBeforeJudging - 2);
                    Judge(o);
                    SetBurstRate(o);
                    return $"every mergeable process is quiet ({Cpu(o)}): settling at the full rate";
                }
                if (Busy(o) && (o.FullScans - _wakeFullScans >= _p.PassesBeforeJudging || o.Elapsed - _wakeTime >= _p.BusyPassTime))
                {
                    // Busy after the passes a wake-up needs, or for longer than a paced pass: a host whose guests boot
                    // starves ksmd, its passes take seconds, and waiting for three of them at the full rate cost as
                    // much as the aggressive setting (Workload B: 1.7 s of ksmd before the first paced pass).
                    if (passDone) Judge(o);
                    bool started = !_busyPaced;
                    _busyPaced = true;
                    SetBurstRate(o, force: started);
                    return $"pacing while a mergeable process is busy ({Cpu(o)}): a pass every {BusyPassTime(o).TotalSeconds:0.##} s, {MiB(o.MergeablePages)} MiB to scan";
                }
                if (o.FullScans - _wakeFullScans >= _p.PassesBeforeJudging && passDone)
                {
                    long perPass = merged / passes;
                    Judge(o);
                    if (perPass < threshold)
                        return StepDown(o, $"a full pass merged {perPass} pages (< {threshold}): backing off{PassFacts(o)}");
                    long left = o.PagesUnshared + o.PagesVolatile;
                    if (left < threshold)
                    {
                        // Everything ksmd tracks is merged (shared or sharing): another pass, even a slower one, can
                        // only confirm it. Idle at once (new memory or merges found by the idle scan wake it again).
                        return GoIdle(o, $"a full pass merged {perPass} pages and only {left} unmerged remain (< {threshold}): converged; idle");
                    }
                    long full = (long)(_p.FullRateYieldFraction * o.MergeablePages);
                    if (perPass < full)
                    {
                        _scale = Math.Max(1 / _p.BackoffFactor, perPass / (double)full);
                        _paced = true;
                        SetBurstRate(o);
                        return $"bursting at {100 * _scale:0}% of the full rate, a pass every {PassTime(o).TotalSeconds:0.##} s: a full pass merged {perPass} pages (< {full})";
                    }
                    _scale = 1;
                    _paced = false;
                    SetBurstRate(o);
                    return $"bursting: a full pass merged {perPass} pages, keep scanning";
                }
                SetBurstRate(o);
                return $"bursting: {o.FullScans - _wakeFullScans} of {_p.PassesBeforeJudging} passes before judging, {MiB(o.MergeablePages)} MiB to scan";
            case KsmAutoTuneMode.Backoff:
                if (Busy(o))
                {
                    Mode = KsmAutoTuneMode.Burst;
                    _wakeFullScans = Math.Min(_wakeFullScans, o.FullScans - _p.PassesBeforeJudging);
                    _busyPaced = true;
                    Judge(o);
                    SetBurstRate(o, force: true);
                    _lastStep = o.Elapsed;
                    return $"a mergeable process is busy ({Cpu(o)}): pacing a pass every {BusyPassTime(o).TotalSeconds:0.##} s instead of backing off";
                }
                if (merged >= threshold)
                {
                    // Nothing new arrived (that wakes above): the memory already judged still merges. Resume the burst
                    // at the trickle rate and go on judging pass by pass instead of restarting the count of passes.
                    Mode = KsmAutoTuneMode.Burst;
                    _wakeFullScans = Math.Min(_wakeFullScans, o.FullScans - _p.PassesBeforeJudging);
                    _paced = true;
                    _scale = 1 / _p.BackoffFactor;
                    Judge(o);
                    SetBurstRate(o);
                    _lastStep = o.Elapsed;
                    return $"still merging while backing off ({merged} pages): bursting at {100 * _scale:0}% of the full rate, a pass every {PassTime(o).TotalSeconds:0.##} s";
                }
                if (passDone)
                {
                    Judge(o);
                    return StepDown(o, $"a full pass merged {merged / passes} pages (< {threshold})");
                }
                if (o.Elapsed - _lastStep >= _p.BackoffStepTime)
                    return StepDown(o, $"no merges for {(o.Elapsed - _lastStep).TotalSeconds:0.#} s");
                return "backing off";
            default:
                if (merged >= threshold)
                    return Wake(o, $"the idle scan found {merged} pages to merge");
                if (passDone) Judge(o);
                return "idle: converged, nothing new to merge";
        }
    }

    string Wake(KsmAutoTuneObservation o, string why)
    {
        Mode = KsmAutoTuneMode.Burst;
        _scale = 1;
        _paced = false;
        _busyPaced = false;
        _wakeTime = o.Elapsed;
        _wakeFullScans = o.FullScans;
        Judge(o);
        _baselineResident = o.MergeableResidentPages;
        SetBurstRate(o);
        _lastStep = o.Elapsed;
        return "wake: " + why;
    }

    string StepDown(KsmAutoTuneObservation o, string why)
    {
        _lastStep = o.Elapsed;
        long next = (long)Math.Floor(_pages / _p.BackoffFactor);
        if (Mode == KsmAutoTuneMode.Idle || next < _p.IdlePagesToScan || _sleep != _p.BurstSleepMilliseconds)
            return GoIdle(o, why + "; idle");
        Mode = KsmAutoTuneMode.Backoff;
        _pages = next;
        _sleep = _p.BurstSleepMilliseconds;
        return why;
    }

    string GoIdle(KsmAutoTuneObservation o, string why)
    {
        if (Mode != KsmAutoTuneMode.Idle || _prev is null) _idleSince = o.Elapsed;
        Mode = KsmAutoTuneMode.Idle;
        _busyPaced = false;
        _pages = _p.IdlePagesToScan;
        _sleep = _p.IdleSleepMilliseconds;
        _baselineResident = o.MergeableResidentPages;
        Judge(o);
        return why;
    }

    void Judge(KsmAutoTuneObservation o)
    {
        _judgeFullScans = o.FullScans;
        _judgeMerged = o.MergedPages;
    }

    void SetBurstRate(KsmAutoTuneObservation o, bool force = false)
    {
        double sleep = Math.Max(1, _p.BurstSleepMilliseconds);
        if (_busyPaced)
        {
            // Paced by time alone, down to the idle rate (a guest that stays busy for an hour is scanned as if idle).
            double floor = Math.Max(1, _p.IdlePagesToScan * sleep / Math.Max(1, _p.IdleSleepMilliseconds));
            long paced = (long)Math.Clamp(Math.Ceiling(o.MergeablePages * sleep / BusyPassTime(o).TotalMilliseconds), floor, _p.MaxPagesToScan);
            if (!force && _sleep == _p.BurstSleepMilliseconds && paced > _pages * 3 / 4 && paced < _pages * 5 / 4) return;
            (_pages, _sleep) = (paced, _p.BurstSleepMilliseconds);
            return;
        }
        double wakeUpsPerPass = _p.BurstPassTime.TotalMilliseconds / sleep;
        double rate = _scale * Math.Min(o.MergeablePages / Math.Max(1, wakeUpsPerPass), _p.MaxPagesToScan);
        // A trickle that has gone on for a while (guests booting) is paced: a pass at most every PaceFraction of the
        // time since the wake-up. A page that settles is merged within two passes, so the delay stays a fixed share of
        // the time the merging takes anyway, while the number of passes over memory that keeps changing stops growing.
        if (_paced) rate = Math.Min(rate, o.MergeablePages * sleep / Math.Max(1, PassTime(o).TotalMilliseconds));
        long pages = Math.Clamp((long)Math.Ceiling(rate), _p.MinBurstPagesToScan, _p.MaxPagesToScan);
        // Hysteresis: while bursting, follow the estimate only when it moves by more than a quarter (no write per tick).
        bool bursting = Mode == KsmAutoTuneMode.Burst && _sleep == _p.BurstSleepMilliseconds && _pages > 0;
        if (bursting && pages > _pages * 3 / 4 && pages < _pages * 5 / 4) return;
        _pages = pages;
        _sleep = _p.BurstSleepMilliseconds;
    }

    /// <summary>The rate to apply: the policy's, raised to the pressure floor when memory is short.</summary>
    (long Pages, long Sleep) ApplyPressure(KsmAutoTuneObservation o, ref string reason)
    {
        bool pressure = o.MemTotalBytes > 0 && o.MemAvailableBytes < _p.PressureFraction * o.MemTotalBytes;
        var rate = (_pages, _sleep);
        if (pressure && Rate(_pages, _sleep) < Rate(_p.PressurePagesToScan, _p.PressureSleepMilliseconds))
        {
            rate = (_p.PressurePagesToScan, _p.PressureSleepMilliseconds);
            reason += $"; memory pressure ({100.0 * o.MemAvailableBytes / o.MemTotalBytes:0.#}% available): floor {rate.Item1}/{rate.Item2} ms";
        }
        else if (pressure != _pressure)
        {
            reason += pressure ? "; memory pressure, rate already above the floor" : "; memory pressure over";
        }
        _pressure = pressure;
        return rate;
    }

    /// <summary>How long a pass should take while a mergeable process is busy: BusyPassTime, or PaceFraction of the time since the wake-up.</summary>
    TimeSpan BusyPassTime(KsmAutoTuneObservation o) =>
        TimeSpan.FromTicks(Math.Max(_p.BusyPassTime.Ticks, (long)(_p.PaceFraction * (o.Elapsed - _wakeTime).Ticks)));

    bool Busy(KsmAutoTuneObservation o) => _p.BusyCpuFraction > 0 && o.MaxProcessCpuFraction >= _p.BusyCpuFraction;

    static string Cpu(KsmAutoTuneObservation o) =>
        o.MaxProcessCpuFraction is double f ? $"the busiest uses {100 * f:0.#}% of a core" : "no CPU reading";

    /// <summary>How long a paced pass should take: PaceFraction of the time since the wake-up, at least the burst pass time.</summary>
    TimeSpan PassTime(KsmAutoTuneObservation o) =>
        TimeSpan.FromTicks(Math.Max(_p.BurstPassTime.Ticks, (long)(_p.PaceFraction * (o.Elapsed - _wakeTime).Ticks)));

    /// <summary>
    /// Why the last pass shows convergence, or null: it saw no memory it had not seen before (what ksmd tracks did not
    /// change, and no process joined in the last two passes) and fewer than <paramref name="threshold"/> pages changed
    /// in it. Unshared pages are not a reason to go on: each was compared with every other page in the pass and has no
    /// twin, and only a page that changes can become one.
    /// </summary>
    string? Converged(KsmAutoTuneObservation o, long threshold)
    {
        if (_passChanged < 0 || _passChanged >= threshold || _prevPassTracked < 0 || Math.Abs(_passTracked - _prevPassTracked) >= threshold) return null;
        if (o.FullScans - _joinFullScans < 2) return null;
        return $"no new memory since the pass before and only {_passChanged} pages changed in it (< {threshold})";
    }

    /// <summary>
    /// The pages that changed in the pass that just ended: pages_volatile holds them, the pages seen for the first time
    /// and, with smart scan (6.7+), the pages it skipped in the pass (a skipped page leaves the tree). The skips are
    /// counted between the readings at the two pass ends, scaled to one pass (a reading lags the pass end by up to a
    /// poll, i.e. tens of thousands of pages at the full rate).
    /// </summary>
    long ChangedInPass(KsmAutoTuneObservation o)
    {
        long skipped = o.PagesSkipped ?? 0;
        long dSkipped = skipped - _passSkippedAt;
        long dEncountered = (o.PagesScanned ?? 0) + skipped - _passEncounteredAt;
        if (dSkipped < 0 || dEncountered < 0) return -1; // the counters went back (run=2)
        double perPass = o.PagesScanned is null || dEncountered == 0 ? 1 : Tracked(o) / (double)dEncountered;
        return Math.Max(0, o.PagesVolatile - (long)Math.Round(dSkipped * perPass));
    }

    /// <summary>Why the pass just judged did not show convergence: what changed in it and how much more ksmd tracks.</summary>
    string PassFacts(KsmAutoTuneObservation o) =>
        _passChanged < 0 || _prevPassTracked < 0 ? "" : $" ({_passChanged} pages changed in the pass, {_passTracked - _prevPassTracked:+#;-#;0} tracked{(o.FullScans - _joinFullScans < 2 ? ", a process joined in the last two passes" : "")})";

    static long Tracked(KsmAutoTuneObservation o) => o.PagesShared + o.PagesSharing + o.PagesUnshared + o.PagesVolatile;

    long YieldThreshold(KsmAutoTuneObservation o) => Math.Max(_p.MinYieldPages, (long)(_p.YieldFraction * o.MergeablePages));

    static double Rate(long pages, long sleep) => pages / (double)Math.Max(1, sleep);

    static string MiB(long pages) => (pages * (double)Environment.SystemPageSize / Units.MiB).ToString("0.#", CultureInfo.InvariantCulture);
}
