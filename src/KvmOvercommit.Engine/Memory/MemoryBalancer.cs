using System.Diagnostics;
using KvmOvercommit.Engine.Ksm.AutoTune;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Memory;

/// <summary>Options of one run of the balloon balancer.</summary>
public sealed class MemoryBalancerOptions
{
    /// <summary>Guest names (wildcards); null or empty: every guest with a balloon and QMP.</summary>
    public string[]? Names { get; set; }
    /// <summary>QEMU pids.</summary>
    public int[]? Ids { get; set; }
    /// <summary>How long to run; null runs until cancelled (a service).</summary>
    public TimeSpan? Duration { get; set; }
    /// <summary>Time between rounds.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(2);
    /// <summary>The policy.</summary>
    public MemoryBalancerPolicy Policy { get; set; } = new();
    /// <summary>A memory cgroup whose usage against its limit is the pressure (instead of the host's MemAvailable).</summary>
    public string? Cgroup { get; set; }
    /// <summary>Leave the balloons as they are at exit (default: deflate every guest to its -m).</summary>
    public bool LeaveBalloons { get; set; }
    /// <summary>Decide but set nothing (-WhatIf).</summary>
    public bool DryRun { get; set; }
    /// <summary>Run the adaptive KSM tuner alongside, in the same process (one daemon in place of ksmtuned plus MOM).</summary>
    public bool WithKsmAutoTune { get; set; }
    /// <summary>The balloon's guest-stats polling interval set on guests that do not poll (seconds).</summary>
    public int StatsPollingSeconds { get; set; } = BalloonStatistics.DefaultPollingSeconds;
    /// <summary>Kernel file roots (tests point these at fake trees).</summary>
    public HostRoots? Roots { get; set; }
    /// <summary>Called with every round (tests and the CLI watch these).</summary>
    public Action<MemoryBalancerRound, IReadOnlyList<BalloonGuestState>>? OnRound { get; set; }
    /// <summary>Called with every Inflate/Deflate decision.</summary>
    public Action<KvmMemoryBalancerDecision>? OnDecision { get; set; }
}

/// <summary>One guest over a balancer run.</summary>
[OutputObject]
public sealed class KvmMemoryBalancerGuest
{
    /// <summary>Guest name.</summary>
    public string Name { get; set; } = "";
    /// <summary>QEMU pid.</summary>
    public int Id { get; set; }
    /// <summary>The guest's -m, in MiB.</summary>
    public long MemoryMB { get; set; }
    /// <summary>Its minimum, in MiB.</summary>
    public long MinimumMB { get; set; }
    /// <summary>Its shares.</summary>
    public int Shares { get; set; }
    /// <summary>The lowest actual memory read in any round, in MiB.</summary>
    public double LowestActualMB { get; set; }
    /// <summary>Actual memory at the end (after the exit deflation unless -LeaveBalloons), in MiB; null when unreadable.</summary>
    public double? FinalActualMB { get; set; }
    /// <summary>Inflations of its balloon.</summary>
    public int Inflations { get; set; }
    /// <summary>Deflations of its balloon.</summary>
    public int Deflations { get; set; }
}

/// <summary>What a run of Invoke-KvmMemoryBalancer did.</summary>
[OutputObject]
public sealed class KvmMemoryBalancerResult
{
    /// <summary>The host.</summary>
    public string HostName { get; set; } = "";
    /// <summary>When it started (UTC).</summary>
    public DateTimeOffset StartTime { get; set; }
    /// <summary>How long it ran.</summary>
    public TimeSpan Duration { get; set; }
    /// <summary>Rounds made.</summary>
    public int Rounds { get; set; }
    /// <summary>Rounds under pressure.</summary>
    public int PressureRounds { get; set; }
    /// <summary>Balloon inflations (all guests).</summary>
    public int Inflations { get; set; }
    /// <summary>Balloon deflations (all guests, without the exit deflation).</summary>
    public int Deflations { get; set; }
    /// <summary>What the pressure was measured on: host or cgroup &lt;path&gt;.</summary>
    public string PressureSource { get; set; } = "host";
    /// <summary>The policy's target, in percent used.</summary>
    public double HostTargetPercent { get; set; }
    /// <summary>The guests it balanced.</summary>
    public List<KvmMemoryBalancerGuest> Guests { get; set; } = new();
    /// <summary>The Inflate/Deflate decisions, in order (the most recent 1000).</summary>
    public List<KvmMemoryBalancerDecision> Decisions { get; set; } = new();
    /// <summary>CPU seconds the balancer's own process used (user + system), the KSM tuner included.</summary>
    public double ProcessCpuSeconds { get; set; }
    /// <summary>ProcessCpuSeconds over Duration, in percent of one core.</summary>
    public double ProcessCpuPercent => Duration.TotalSeconds > 0 ? Math.Round(100 * ProcessCpuSeconds / Duration.TotalSeconds, 2) : 0;
    /// <summary>True when the balloons were deflated to each guest's -m at exit.</summary>
    public bool DeflatedAtExit { get; set; }
    /// <summary>True under -WhatIf: nothing was set.</summary>
    public bool DryRun { get; set; }
    /// <summary>True when Ctrl+C, SIGTERM or the caller ended the run (rather than -Duration).</summary>
    public bool Stopped { get; set; }
    /// <summary>The KSM tuner's result under -WithKsmAutoTune.</summary>
    public KsmAutoTuneResult? KsmAutoTune { get; set; }
}

/// <summary>
/// Invoke-KvmMemoryBalancer / kvmoc memory balance: every round it reads the pressure
/// (<see cref="MemoryPressureReader"/>) and the guests' balloons and statistics over QMP (under pressure every guest;
/// otherwise only those whose balloon holds memory back, the others every <see cref="FullReadInterval"/>), lets
/// <see cref="MemoryBalancerController"/> decide, and sets the balloons (QMP balloon). On exit — normal, cancelled or
/// failed — it deflates every guest it balanced back to its -m (unless LeaveBalloons).
/// </summary>
public static class MemoryBalancer
{
    /// <summary>How many decisions the result keeps.</summary>
    public const int MaxDecisionsKept = 1000;

    /// <summary>For -WhatIf and ShouldProcess: what the balancer will do.</summary>
    public static string Describe(MemoryBalancerOptions o) =>
        $"balance guest balloons against {(o.Cgroup is null ? "host" : "cgroup " + o.Cgroup)} memory (target {o.Policy.HostTargetPercent}% used, step {o.Policy.MaxStepPercent}% per {o.Interval.TotalSeconds:0.#} s) "
        + (o.Duration is TimeSpan d ? $"for {d.TotalSeconds:0.#} s" : "until stopped")
        + (o.LeaveBalloons ? ", leaving the balloons as they are at exit" : ", then deflate every balloon to its -m")
        + (o.WithKsmAutoTune ? "; tune KSM adaptively alongside" : "");

    /// <summary>Runs until Duration passes or <paramref name="ct"/> is cancelled; cancellation ends it normally.</summary>
    public static async Task<KvmMemoryBalancerResult> RunAsync(MemoryBalancerOptions options, IOperationObserver? observer, CancellationToken ct)
    {
        observer ??= NullObserver.Instance;
        if (options.Duration is TimeSpan dur && dur <= TimeSpan.Zero)
            throw new KvmOcException(ErrorKind.InvalidArgument, "BalancerInvalidDuration", $"Duration must be positive (got {dur}).", dur);
        if (options.Interval < TimeSpan.FromMilliseconds(100))
            throw new KvmOcException(ErrorKind.InvalidArgument, "BalancerInvalidInterval", $"The interval must be at least 0.1 s (got {options.Interval.TotalSeconds} s).", options.Interval);
        var roots = options.Roots ?? HostRoots.Default;
        var controller = new MemoryBalancerController(options.Policy);
        var pressureReader = new MemoryPressureReader(roots, options.Cgroup);
        var inventory = new KvmGuestInventory(roots);
        var clock = Stopwatch.StartNew();
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var result = new KvmMemoryBalancerResult
        {
            HostName = Environment.MachineName, StartTime = DateTimeOffset.UtcNow, HostTargetPercent = options.Policy.HostTargetPercent,
            PressureSource = pressureReader.CgroupPath is null ? "host" : "cgroup " + pressureReader.CgroupPath, DryRun = options.DryRun,
        };
        var seen = new Dictionary<int, (KvmGuest Guest, KvmMemoryBalancerGuest Summary)>();
        var noBalloon = new HashSet<int>();
        List<KvmGuest>? guests = null;
        var lastScan = TimeSpan.Zero;
        var known = new Dictionary<int, (BalloonGuestState State, TimeSpan ReadAt)>();
        var sessions = new Dictionary<int, StatsSession>();

        using var tunerCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Task<KsmAutoTuneResult>? tuner = options.WithKsmAutoTune && !options.DryRun
            ? Task.Run(() => KsmAutoTuner.RunAsync(new KsmAutoTuneOptions { Duration = options.Duration, Roots = options.Roots }, observer, tunerCts.Token))
            : null;
        try
        {
            var lastProgress = TimeSpan.FromSeconds(-10);
            while (!ct.IsCancellationRequested)
            {
                var roundStart = clock.Elapsed;
                var pressure = pressureReader.Read();
                // The /proc scan for guests (new ones, gone ones) at most every RescanInterval; the list in between.
                if (guests is null || clock.Elapsed - lastScan >= RescanInterval)
                {
                    guests = inventory.Find(options.Names is { Length: > 0 } ? options.Names : null, options.Ids is { Length: > 0 } ? options.Ids : null)
                        .Where(g => g.QmpSocket is not null && g.FreePageReporting is not null /* null = no balloon device */).ToList();
                    lastScan = clock.Elapsed;
                }
                // Without pressure only a guest whose balloon holds memory back can get something (a step back, or memory
                // it is short of): the others are not asked over QMP, only every FullReadInterval. Under pressure, all are.
                bool pressed = controller.UnderPressure(pressure);
                var toRead = guests.Where(g => pressed || !known.TryGetValue(g.Id, out var k) || k.State.ActualMB < g.MemoryMB - 0.5 || clock.Elapsed - k.ReadAt >= FullReadInterval).ToList();
                var fresh = await ReadGuestsAsync(toRead, options.StatsPollingSeconds, noBalloon, sessions, observer, ct).ConfigureAwait(false);
                foreach (var (g, st) in fresh) known[g.Id] = (st, clock.Elapsed);
                var freshIds = fresh.Select(x => x.Guest.Id).ToHashSet();
                var states = fresh.Concat(guests.Where(g => !freshIds.Contains(g.Id) && !noBalloon.Contains(g.Id) && known.ContainsKey(g.Id)).Select(g => (Guest: g, State: known[g.Id].State))).ToList();
                foreach (var gone in known.Keys.Where(id => guests.All(g => g.Id != id)).ToList()) { known.Remove(gone); sessions.Remove(gone); }
                foreach (var (g, s) in states)
                {
                    if (!seen.TryGetValue(g.Id, out var entry))
                    {
                        entry = (g, new KvmMemoryBalancerGuest
                        {
                            Name = g.Name, Id = g.Id, MemoryMB = g.MemoryMB, MinimumMB = options.Policy.MinimumFor(g.Name, g.MemoryMB),
                            Shares = options.Policy.SharesFor(g.Name), LowestActualMB = s.ActualMB,
                        });
                        seen[g.Id] = entry;
                        observer.Verbose($"Balancing guest '{g.Name}' (pid {g.Id}): -m {g.MemoryMB} MiB, minimum {entry.Summary.MinimumMB} MiB, {entry.Summary.Shares} shares.");
                    }
                    entry.Summary.LowestActualMB = Math.Min(entry.Summary.LowestActualMB, s.ActualMB);
                }
                var stateList = states.Select(x => x.State).ToList();
                var round = controller.Decide(pressure, stateList, clock.Elapsed.TotalSeconds);
                result.Rounds++;
                if (round.Pressure) result.PressureRounds++;
                foreach (var d in round.Decisions.Where(d => d.Action != BalloonAction.Hold))
                {
                    var (guest, summary) = seen[d.Id];
                    if (!options.DryRun)
                    {
                        try
                        {
                            await KvmGuestBalloon.ApplyAsync(KvmGuestBalloon.Plan(guest, d.TargetMB), wait: false, TimeSpan.Zero, NullObserver.Instance, ct).ConfigureAwait(false);
                            d.Applied = true;
                        }
                        catch (KvmOcException e)
                        {
                            observer.Warning($"Could not set the balloon of guest '{d.Name}' to {d.TargetMB} MiB: {e.Message}");
                            continue;
                        }
                    }
                    if (d.Action == BalloonAction.Inflate) { result.Inflations++; summary.Inflations++; } else { result.Deflations++; summary.Deflations++; }
                    if (known.TryGetValue(d.Id, out var k)) known[d.Id] = (k.State, TimeSpan.FromDays(-1)); // read it again next round
                    if (result.Decisions.Count >= MaxDecisionsKept) result.Decisions.RemoveAt(0);
                    result.Decisions.Add(d);
                    observer.Verbose((options.DryRun ? "What if: " : "") + d);
                    options.OnDecision?.Invoke(d);
                }
                options.OnRound?.Invoke(round, stateList);
                var elapsed = clock.Elapsed;
                if (elapsed - lastProgress >= TimeSpan.FromSeconds(1))
                {
                    lastProgress = elapsed;
                    int pct = options.Duration is TimeSpan total ? (int)Math.Min(100, 100 * elapsed.TotalSeconds / total.TotalSeconds) : -1;
                    int left = options.Duration is TimeSpan t2 ? (int)Math.Max(0, (t2 - elapsed).TotalSeconds) : -1;
                    double ballooned = stateList.Sum(s => Math.Max(0, s.MemoryMB - s.ActualMB));
                    observer.Progress(new ProgressInfo("Memory balancer",
                        $"{(round.Pressure ? "pressure" : round.Relaxed ? "relaxed" : "steady")}: {pressure.UsedPercent:0.#}% used (target {options.Policy.HostTargetPercent:0.#}%), {stateList.Count} guest(s), {ballooned:0} MiB ballooned", pct, left));
                }
                var wait = options.Interval - (clock.Elapsed - roundStart);
                if (wait < TimeSpan.Zero) wait = TimeSpan.Zero;
                if (options.Duration is TimeSpan limit)
                {
                    var remaining = limit - clock.Elapsed;
                    if (remaining <= TimeSpan.Zero) break;
                    if (remaining < wait) wait = remaining;
                }
                try { await Task.Delay(wait, ct).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
            }
            result.Stopped = ct.IsCancellationRequested;
        }
        finally
        {
            observer.Progress(new ProgressInfo("Memory balancer", "exiting", -1, -1));
            if (!options.LeaveBalloons && !options.DryRun)
            {
                await DeflateAllAsync(seen.Values.Select(v => v.Guest).ToList(), roots, observer).ConfigureAwait(false);
                result.DeflatedAtExit = true;
            }
            tunerCts.Cancel();
            if (tuner is not null)
            {
                try { result.KsmAutoTune = await tuner.ConfigureAwait(false); }
                catch (KvmOcException e) { observer.Warning($"The KSM tuner failed: {e.Message}"); }
            }
            observer.Progress(new ProgressInfo("Memory balancer", "done", 100, 0, Completed: true));
        }
        // Final readings (the exit deflation, if any, is done or timed out by now).
        foreach (var (guest, summary) in seen.Values)
        {
            try { summary.FinalActualMB = (await KvmGuestBalloon.GetAsync(guest, CancellationToken.None).ConfigureAwait(false)).ActualMB; }
            catch (KvmOcException) { summary.FinalActualMB = null; }
            result.Guests.Add(summary);
        }
        result.Duration = clock.Elapsed;
        result.ProcessCpuSeconds = Math.Round((Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds, 3);
        return result;
    }

    /// <summary>How often the balancer scans /proc for guests that started or ended.</summary>
    public static readonly TimeSpan RescanInterval = TimeSpan.FromSeconds(5);

    /// <summary>How often a guest at its full size is read without pressure (its statistics, and whether someone else changed its balloon).</summary>
    public static readonly TimeSpan FullReadInterval = TimeSpan.FromSeconds(30);

    /// <summary>What the balancer learned once about a guest's balloon device: its QOM path and the statistics polling interval.</summary>
    sealed class StatsSession
    {
        public string? DevicePath;
        public long Interval;
        public DateTimeOffset? TurnedOnAt;
    }

    /// <summary>
    /// Reads the guests' balloons and statistics (8 at a time); guests without a working balloon are skipped (said once).
    /// One QMP connection per guest and round (QEMU serves one client at a time, so none is kept open): query-balloon and
    /// qom-get guest-stats, the device path and polling interval found once per guest (<paramref name="sessions"/>).
    /// </summary>
    static async Task<List<(KvmGuest Guest, BalloonGuestState State)>> ReadGuestsAsync(List<KvmGuest> guests, int statsPolling, HashSet<int> noBalloon, Dictionary<int, StatsSession> sessions, IOperationObserver observer, CancellationToken ct)
    {
        using var gate = new SemaphoreSlim(8);
        var tasks = guests.Select(async g =>
        {
            await gate.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                StatsSession? session;
                lock (sessions) sessions.TryGetValue(g.Id, out session);
                await using var qmp = await KvmGuestInventory.ConnectAsync(g.QmpSocket!, KvmGuestBalloon.QmpTimeout, ct).ConfigureAwait(false);
                qmp.CommandTimeout = KvmGuestBalloon.QmpTimeout;
                var m = KvmGuestBalloon.FromQueryBalloon(await qmp.ExecuteAsync("query-balloon", null, ct).ConfigureAwait(false), g, null, DateTimeOffset.UtcNow);
                try
                {
                    session = await StatsAsync(qmp, session, m, statsPolling, ct).ConfigureAwait(false);
                    lock (sessions) sessions[g.Id] = session;
                }
                catch (KvmOcException e) when (e.ErrorId.StartsWith("Qmp", StringComparison.Ordinal) && e.Kind != ErrorKind.Timeout && e.Kind != ErrorKind.ConnectionError)
                {
                    observer.Verbose($"Guest '{g.Name}': no balloon statistics: {e.Message}");
                    session ??= new StatsSession();
                }
                // A report from before polling was turned on can be minutes old (the tiny guest's is from before its fill): not used.
                bool stale = session.TurnedOnAt is { } on && !(m.StatsLastUpdate >= on);
                return (g, (BalloonGuestState?)new BalloonGuestState
                {
                    Name = g.Name, Id = g.Id, MemoryMB = g.MemoryMB, ActualMB = m.ActualMB,
                    GuestAvailableMB = stale ? null : m.GuestAvailableMB, GuestTotalMB = stale ? null : Units.ToMiB(m.GuestTotalBytes),
                });
            }
            catch (KvmOcException e)
            {
                lock (sessions) sessions.Remove(g.Id);
                lock (noBalloon)
                    if (noBalloon.Add(g.Id)) observer.Verbose($"Guest '{g.Name}' (pid {g.Id}) is left out: {e.Message}");
                return (g, null);
            }
            finally { gate.Release(); }
        }).ToList();
        var done = await Task.WhenAll(tasks).ConfigureAwait(false);
        return done.Where(x => x.Item2 is not null).Select(x => (x.g, x.Item2!)).ToList();
    }

    /// <summary>The guest's statistics into <paramref name="m"/>; the device path and polling interval are found (and polling turned on) the first time.</summary>
    static async Task<StatsSession> StatsAsync(QmpClient qmp, StatsSession? session, KvmGuestMemory m, int statsPolling, CancellationToken ct)
    {
        if (session is null)
        {
            session = new StatsSession { DevicePath = await BalloonStatistics.FindDevicePathAsync(qmp, ct).ConfigureAwait(false) };
            if (session.DevicePath is not null)
            {
                session.Interval = (await qmp.ExecuteAsync("qom-get", new System.Text.Json.Nodes.JsonObject { ["path"] = session.DevicePath, ["property"] = "guest-stats-polling-interval" }, ct).ConfigureAwait(false)).GetInt64();
                if (session.Interval == 0 && statsPolling > 0)
                {
                    await qmp.ExecuteAsync("qom-set", new System.Text.Json.Nodes.JsonObject { ["path"] = session.DevicePath, ["property"] = "guest-stats-polling-interval", ["value"] = statsPolling }, ct).ConfigureAwait(false);
                    session.Interval = statsPolling;
                    session.TurnedOnAt = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds());
                }
            }
        }
        if (session.DevicePath is not null)
        {
            var stats = await qmp.ExecuteAsync("qom-get", new System.Text.Json.Nodes.JsonObject { ["path"] = session.DevicePath, ["property"] = "guest-stats" }, ct).ConfigureAwait(false);
            BalloonStatistics.Apply(stats, m, session.Interval);
        }
        return session;
    }

    /// <summary>Sets every guest's balloon to its -m and waits up to 10 s for them to get there.</summary>
    static async Task DeflateAllAsync(List<KvmGuest> guests, HostRoots roots, IOperationObserver observer)
    {
        var scanner = new QemuProcessScanner(roots);
        var alive = guests.Where(g => scanner.Read(g.Id) is not null).ToList();
        foreach (var g in alive)
        {
            try
            {
                await KvmGuestBalloon.ApplyAsync(KvmGuestBalloon.Plan(g, g.MemoryMB), wait: false, TimeSpan.Zero, NullObserver.Instance, CancellationToken.None).ConfigureAwait(false);
                observer.Verbose($"Exit: guest '{g.Name}' balloon target back to {g.MemoryMB} MiB.");
            }
            catch (KvmOcException e) { observer.Warning($"Could not deflate the balloon of guest '{g.Name}' at exit: {e.Message}"); }
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        var pending = alive.ToList();
        while (pending.Count > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200).ConfigureAwait(false);
            var still = new List<KvmGuest>();
            foreach (var g in pending)
            {
                try { if ((await KvmGuestBalloon.GetAsync(g, CancellationToken.None).ConfigureAwait(false)).ActualMB < g.MemoryMB - 1) still.Add(g); }
                catch (KvmOcException) { }
            }
            pending = still;
        }
        foreach (var g in pending) observer.Warning($"Guest '{g.Name}' is not back at {g.MemoryMB} MiB 10 s after the exit deflation.");
    }
}
