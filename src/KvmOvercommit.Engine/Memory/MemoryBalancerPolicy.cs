using System.Globalization;

namespace KvmOvercommit.Engine.Memory;

/// <summary>The knobs of the balloon balancer (Invoke-KvmMemoryBalancer), in the spirit of oVirt MOM and Proxmox auto-ballooning.</summary>
public sealed class MemoryBalancerPolicy
{
    /// <summary>Host memory used (MemTotal − MemAvailable, or a cgroup's usage against its limit) above which the host is under pressure, in percent (Proxmox: 80).</summary>
    public double HostTargetPercent { get; set; } = 80;
    /// <summary>Memory PSI "some avg10" above which the host is under pressure, in percent; 0 ignores PSI.</summary>
    public double PsiThresholdPercent { get; set; } = 10;
    /// <summary>Balloons deflate only once use is this many points below the target (no flapping around it).</summary>
    public double HysteresisPercent { get; set; } = 5;
    /// <summary>At most this percent of a guest's -m is taken or given back per round.</summary>
    public double MaxStepPercent { get; set; } = 10;
    /// <summary>A guest's minimum when no MinimumMB applies to it, in percent of its -m.</summary>
    public double DefaultMinimumPercent { get; set; } = 50;
    /// <summary>Minimum per guest in MiB, by guest name (wildcards; "*" for every guest). A guest's balloon never leaves it less.</summary>
    public Dictionary<string, long> MinimumMB { get; set; } = new(StringComparer.Ordinal);
    /// <summary>Shares per guest by name (wildcards), default <see cref="DefaultShares"/>: spare memory is given back in proportion to them.</summary>
    public Dictionary<string, int> Shares { get; set; } = new(StringComparer.Ordinal);
    /// <summary>Shares of a guest no Shares entry names (Proxmox: 1000).</summary>
    public int DefaultShares { get; set; } = 1000;
    /// <summary>Memory a guest keeps available to itself (percent of its own MemTotal, at least <see cref="GuestReserveMinMB"/>); the balloon never takes it.</summary>
    public double GuestReservePercent { get; set; } = 10;
    /// <summary>The least a guest keeps available, in MiB.</summary>
    public long GuestReserveMinMB { get; set; } = 8;

    /// <summary>Checks every value; InvalidArgument naming the first bad one.</summary>
    public void Validate()
    {
        static void Range(string name, double v, double lo, double hi)
        {
            if (double.IsNaN(v) || v < lo || v > hi)
                throw new KvmOcException(ErrorKind.InvalidArgument, "BalancerInvalidValue", $"{name} must be from {lo.ToString(CultureInfo.InvariantCulture)} to {hi.ToString(CultureInfo.InvariantCulture)} (got {v.ToString(CultureInfo.InvariantCulture)}).", name);
        }
        Range(nameof(HostTargetPercent), HostTargetPercent, 0, 100);
        Range(nameof(PsiThresholdPercent), PsiThresholdPercent, 0, 100);
        Range(nameof(HysteresisPercent), HysteresisPercent, 0, 100);
        Range(nameof(MaxStepPercent), MaxStepPercent, 0.1, 100);
        Range(nameof(DefaultMinimumPercent), DefaultMinimumPercent, 0, 100);
        Range(nameof(GuestReservePercent), GuestReservePercent, 0, 100);
        if (DefaultShares < 1) throw new KvmOcException(ErrorKind.InvalidArgument, "BalancerInvalidValue", $"Shares must be at least 1 (got {DefaultShares}).", "Shares");
        foreach (var (k, v) in MinimumMB)
            if (v < 1) throw new KvmOcException(ErrorKind.InvalidArgument, "BalancerInvalidValue", $"MinimumMB for '{k}' must be at least 1 MiB (got {v}).", k);
        foreach (var (k, v) in Shares)
            if (v < 1) throw new KvmOcException(ErrorKind.InvalidArgument, "BalancerInvalidValue", $"Shares for '{k}' must be at least 1 (got {v}).", k);
    }

    /// <summary>The minimum of a guest: the most specific MinimumMB entry (an exact name before a pattern before "*"), else DefaultMinimumPercent of -m; never above -m.</summary>
    public long MinimumFor(string name, long memoryMB)
    {
        long min = Lookup(MinimumMB, name) is long m ? m : (long)Math.Ceiling(memoryMB * DefaultMinimumPercent / 100.0);
        return Math.Clamp(min, 1, Math.Max(1, memoryMB));
    }

    /// <summary>The shares of a guest (the most specific Shares entry, else DefaultShares).</summary>
    public int SharesFor(string name) => Lookup(Shares, name) is int s ? s : DefaultShares;

    static T? Lookup<T>(Dictionary<string, T> map, string name) where T : struct
    {
        if (map.TryGetValue(name, out var exact)) return exact;
        foreach (var (k, v) in map.Where(kv => kv.Key != "*" && Wildcard.ContainsWildcard(kv.Key)).OrderByDescending(kv => kv.Key.Length))
            if (new Wildcard(k).IsMatch(name)) return v;
        return map.TryGetValue("*", out var all) ? all : null;
    }
}

/// <summary>What the host's memory looks like now: the balancer's pressure inputs.</summary>
public sealed class MemoryPressureReading
{
    /// <summary>The memory the pressure is measured against: MemTotal, or the cgroup's limit.</summary>
    public long TotalBytes { get; set; }
    /// <summary>Memory in use: MemTotal − MemAvailable, or the cgroup's usage minus its inactive file cache.</summary>
    public long UsedBytes { get; set; }
    /// <summary>UsedBytes / TotalBytes in percent.</summary>
    public double UsedPercent => TotalBytes > 0 ? Math.Round(100.0 * UsedBytes / TotalBytes, 2) : 0;
    /// <summary>/proc/pressure/memory "some avg10" in percent, or null without PSI.</summary>
    public double? PsiSomeAvg10 { get; set; }
    /// <summary>What is measured: "host" or "cgroup &lt;path&gt;".</summary>
    public string Source { get; set; } = "host";
}

/// <summary>One guest as the balancer sees it in a round.</summary>
public sealed class BalloonGuestState
{
    /// <summary>Guest name.</summary>
    public string Name { get; set; } = "";
    /// <summary>QEMU pid.</summary>
    public int Id { get; set; }
    /// <summary>The guest's -m in MiB (the most it can have).</summary>
    public long MemoryMB { get; set; }
    /// <summary>What it has now (query-balloon actual), in MiB.</summary>
    public double ActualMB { get; set; }
    /// <summary>MemAvailable the guest reports (balloon statistics), in MiB; null when it reports none.</summary>
    public double? GuestAvailableMB { get; set; }
    /// <summary>MemTotal the guest reports, in MiB; null when it reports none.</summary>
    public double? GuestTotalMB { get; set; }
}

/// <summary>What the balancer does to one guest's balloon in a round.</summary>
public enum BalloonAction
{
    /// <summary>Leave it.</summary>
    Hold,
    /// <summary>Inflate the balloon: the guest gets less.</summary>
    Inflate,
    /// <summary>Deflate the balloon: the guest gets more back.</summary>
    Deflate,
}

/// <summary>One balloon decision, with its reason.</summary>
[OutputObject]
public sealed class KvmMemoryBalancerDecision
{
    /// <summary>Seconds since the balancer started.</summary>
    public double Seconds { get; set; }
    /// <summary>Guest name.</summary>
    public string Name { get; set; } = "";
    /// <summary>QEMU pid.</summary>
    public int Id { get; set; }
    /// <summary>Inflate, Deflate or Hold.</summary>
    public BalloonAction Action { get; set; }
    /// <summary>The guest's actual memory when decided, in MiB.</summary>
    public double ActualMB { get; set; }
    /// <summary>The new balloon target, in MiB.</summary>
    public long TargetMB { get; set; }
    /// <summary>The guest's -m, in MiB.</summary>
    public long MemoryMB { get; set; }
    /// <summary>The guest's minimum, in MiB.</summary>
    public long MinimumMB { get; set; }
    /// <summary>Host (or cgroup) memory used, in percent, when decided.</summary>
    public double UsedPercent { get; set; }
    /// <summary>Why.</summary>
    public string Reason { get; set; } = "";
    /// <summary>False under -WhatIf (decided, not set).</summary>
    public bool Applied { get; set; }

    /// <inheritdoc />
    public override string ToString() => $"{Seconds,7:0.0} s {Name} (pid {Id}): {Action} {ActualMB:0.#} → {TargetMB} MiB: {Reason}";
}

/// <summary>One round's outcome: the pressure verdict and the decisions (Hold decisions for the guests left alone).</summary>
public sealed class MemoryBalancerRound
{
    /// <summary>True when the host (or cgroup) is under pressure.</summary>
    public bool Pressure { get; set; }
    /// <summary>True when there is spare memory to give back (use below target − hysteresis).</summary>
    public bool Relaxed { get; set; }
    /// <summary>Why the round judged the host so.</summary>
    public string Verdict { get; set; } = "";
    /// <summary>One decision per guest.</summary>
    public List<KvmMemoryBalancerDecision> Decisions { get; set; } = new();
}

/// <summary>
/// The balancer's policy, pure: from the pressure reading and the guests' balloons it decides each balloon's target.
/// Under pressure it inflates the balloons of the guests with the most memory available (the guest's own MemAvailable
/// from the balloon statistics, else what lies above its minimum), at most MaxStepPercent of a guest's -m per round,
/// never below the guest's minimum nor into the memory the guest keeps available to itself, until the shortfall is
/// covered. Without pressure (use below target − hysteresis) it deflates toward each guest's -m, the spare memory split
/// by shares, at most a step per guest. A guest short of memory itself gets a step back whatever the host's state.
/// It remembers the targets it set, so a balloon still on its way is not pulled back.
/// </summary>
public sealed class MemoryBalancerController
{
    readonly MemoryBalancerPolicy _policy;
    readonly Dictionary<int, long> _targets = new();

    /// <summary>A controller with the given policy (validated).</summary>
    public MemoryBalancerController(MemoryBalancerPolicy? policy = null)
    {
        _policy = policy ?? new MemoryBalancerPolicy();
        _policy.Validate();
    }

    /// <summary>The policy.</summary>
    public MemoryBalancerPolicy Policy => _policy;

    /// <summary>The target last decided for a guest, or null.</summary>
    public long? LastTarget(int id) => _targets.TryGetValue(id, out var t) ? t : null;

    static string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);

    /// <summary>True when this reading is pressure (use above the target, or PSI above its threshold): every guest must then be read.</summary>
    public bool UnderPressure(MemoryPressureReading p) => p.UsedPercent > _policy.HostTargetPercent || PsiOver(p);

    bool PsiOver(MemoryPressureReading p) => _policy.PsiThresholdPercent > 0 && p.PsiSomeAvg10 is double avg && avg > _policy.PsiThresholdPercent;

    /// <summary>Decides one round. <paramref name="seconds"/> stamps the decisions.</summary>
    public MemoryBalancerRound Decide(MemoryPressureReading p, IReadOnlyList<BalloonGuestState> guests, double seconds = 0)
    {
        var pol = _policy;
        foreach (var gone in _targets.Keys.Where(id => guests.All(g => g.Id != id)).ToList()) _targets.Remove(gone);
        double used = p.UsedPercent;
        bool psi = PsiOver(p);
        bool over = used > pol.HostTargetPercent;
        var round = new MemoryBalancerRound { Pressure = over || psi };
        round.Relaxed = !round.Pressure && used < pol.HostTargetPercent - pol.HysteresisPercent && !(p.PsiSomeAvg10 is double a2 && pol.PsiThresholdPercent > 0 && a2 > pol.PsiThresholdPercent / 2);
        round.Verdict = over ? $"{p.Source} {F(used)}% used > target {F(pol.HostTargetPercent)}%"
            : psi ? $"memory PSI some avg10 {F(p.PsiSomeAvg10!.Value)}% > {F(pol.PsiThresholdPercent)}%"
            : round.Relaxed ? $"{p.Source} {F(used)}% used < target {F(pol.HostTargetPercent)}% − {F(pol.HysteresisPercent)}"
            : $"{p.Source} {F(used)}% used, within {F(pol.HysteresisPercent)} points below the target {F(pol.HostTargetPercent)}%";

        var states = guests.Select(g =>
        {
            long min = pol.MinimumFor(g.Name, g.MemoryMB);
            long step = Math.Max(1, (long)Math.Round(g.MemoryMB * pol.MaxStepPercent / 100.0));
            double? reserve = g.GuestTotalMB is double t ? Math.Max(pol.GuestReserveMinMB, t * pol.GuestReservePercent / 100.0) : null;
            bool starved = g.GuestAvailableMB is double av && reserve is double r && av < r;
            long? last = LastTarget(g.Id);
            return (G: g, Min: min, Step: step, Reserve: reserve, Starved: starved, Last: last);
        }).ToList();

        KvmMemoryBalancerDecision D(BalloonGuestState g, long min, BalloonAction a, long target, string reason) => new()
        {
            Seconds = Math.Round(seconds, 1), Name = g.Name, Id = g.Id, Action = a, ActualMB = Math.Round(g.ActualMB, 1), TargetMB = target,
            MemoryMB = g.MemoryMB, MinimumMB = min, UsedPercent = used, Reason = reason,
        };

        var byId = new Dictionary<int, KvmMemoryBalancerDecision>();
        // A guest short of memory gets a step back first, whatever the host's state.
        foreach (var s in states.Where(s => s.Starved))
        {
            double from = Math.Max(s.G.ActualMB, s.Last ?? 0);
            long target = Math.Min(s.G.MemoryMB, (long)Math.Floor(from) + s.Step);
            if (target > s.G.ActualMB + 0.5)
                byId[s.G.Id] = D(s.G, s.Min, BalloonAction.Deflate, target, $"guest has {F(s.G.GuestAvailableMB!.Value)} MiB available, below its reserve {F(s.Reserve!.Value)} MiB: +{target - (long)Math.Floor(from)} MiB");
        }

        if (round.Pressure)
        {
            double need = over ? Units.ToMiB(p.UsedBytes - (long)(p.TotalBytes * pol.HostTargetPercent / 100.0)) : double.MaxValue;
            foreach (var s in states.Where(s => !byId.ContainsKey(s.G.Id))
                         .OrderByDescending(s => s.G.GuestAvailableMB ?? (s.G.ActualMB - s.Min)).ThenBy(s => s.G.Id))
            {
                if (need <= 0) break;
                double from = Math.Min(s.G.ActualMB, s.Last ?? double.MaxValue);
                // The limits on what this guest gives: a step, its minimum, what it keeps available, the shortfall.
                var limits = new List<(double Room, string Why)> { (s.Step, $"a step of {s.Step} MiB"), (from - s.Min, $"its minimum {s.Min} MiB") };
                if (s.G.GuestAvailableMB is double av && s.Reserve is double res)
                {
                    // The guest's available figure is from before any inflation still under way: count that in.
                    double inFlight = Math.Max(0, s.G.ActualMB - from);
                    limits.Add((av - inFlight - res, $"the {F(res)} MiB it keeps available of {F(av)} MiB"));
                }
                if (need < double.MaxValue) limits.Add((need, $"the host's shortfall of {F(need)} MiB"));
                var bound = limits.OrderBy(l => l.Room).First();
                long take = (long)Math.Floor(bound.Room);
                if (take < 1) continue;
                long target = Math.Max((long)Math.Ceiling(from) - take, s.Min);
                need -= take;
                byId[s.G.Id] = D(s.G, s.Min, BalloonAction.Inflate, target,
                    $"{round.Verdict}; {F(s.G.GuestAvailableMB ?? from - s.Min)} MiB free in the guest: −{take} MiB (limited by {bound.Why})");
            }
        }
        else if (round.Relaxed)
        {
            double spare = Units.ToMiB((long)(p.TotalBytes * pol.HostTargetPercent / 100.0) - p.UsedBytes);
            var wanting = states.Where(s => !byId.ContainsKey(s.G.Id) && Math.Max(s.G.ActualMB, s.Last ?? 0) < s.G.MemoryMB - 0.5).ToList();
            long totalShares = wanting.Sum(s => (long)pol.SharesFor(s.G.Name));
            foreach (var s in wanting)
            {
                int shares = pol.SharesFor(s.G.Name);
                double from = Math.Max(s.G.ActualMB, s.Last ?? 0);
                double portion = totalShares > 0 ? spare * shares / totalShares : 0;
                long give = (long)Math.Floor(Math.Min(Math.Min(portion, s.Step), s.G.MemoryMB - from));
                if (give < 1 && s.G.MemoryMB - from >= 0.5 && portion >= s.G.MemoryMB - from) give = 1;
                if (give < 1) continue;
                long target = Math.Min(s.G.MemoryMB, (long)Math.Floor(from) + give);
                byId[s.G.Id] = D(s.G, s.Min, BalloonAction.Deflate, target,
                    $"{round.Verdict}: {F(spare)} MiB spare, {shares} of {totalShares} shares → {F(portion)} MiB: +{give} MiB toward {s.G.MemoryMB} MiB");
            }
        }

        foreach (var s in states)
        {
            if (byId.TryGetValue(s.G.Id, out var d))
            {
                _targets[s.G.Id] = d.TargetMB;
                round.Decisions.Add(d);
            }
            else
            {
                round.Decisions.Add(D(s.G, s.Min, BalloonAction.Hold, s.Last ?? (long)Math.Round(s.G.ActualMB), round.Verdict));
            }
        }
        return round;
    }
}
