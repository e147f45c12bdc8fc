using KvmOvercommit.Engine.Memory;

namespace KvmOvercommit.Engine.Tests.Memory;

/// <summary>The balancer's policy on fake inputs: pressure, steps, minimums, guest reserves, shares, hysteresis, PSI.</summary>
public class MemoryBalancerPolicyTests
{
    const long MiB = 1024 * 1024;

    static MemoryPressureReading Host(double usedPercent, double? psi = 0) => new() { TotalBytes = 10240 * MiB, UsedBytes = (long)(10240 * MiB * usedPercent / 100), PsiSomeAvg10 = psi };

    static BalloonGuestState G(string name, int id, long memoryMB, double actual, double? available = null, double? total = null) =>
        new() { Name = name, Id = id, MemoryMB = memoryMB, ActualMB = actual, GuestAvailableMB = available, GuestTotalMB = total };

    [Fact]
    public void UnderPressureTheGuestWithTheMostFreeMemoryGivesFirstAStepAtATime()
    {
        var c = new MemoryBalancerController(new MemoryBalancerPolicy { HostTargetPercent = 80, MaxStepPercent = 10 });
        // 85% used: 5% of 10240 MiB = 512 MiB short. Steps: 10% of -m.
        var r = c.Decide(Host(85), new[] { G("busy", 1, 2048, 2048, available: 100, total: 1900), G("idle", 2, 2048, 2048, available: 1500, total: 1900), G("mid", 3, 1024, 1024, available: 600, total: 950) });
        Assert.True(r.Pressure);
        var idle = r.Decisions.Single(d => d.Name == "idle");
        Assert.Equal(BalloonAction.Inflate, idle.Action);
        Assert.Equal(2048 - 205, idle.TargetMB); // a step: 10% of 2048
        Assert.Contains("85% used > target 80%", idle.Reason);
        Assert.Equal(BalloonAction.Inflate, r.Decisions.Single(d => d.Name == "mid").Action);
        Assert.Equal(1024 - 102, r.Decisions.Single(d => d.Name == "mid").TargetMB);
        // busy: 100 MiB available is below its reserve (10% of 1900 = 190): it gets memory back instead (it is at -m already: nothing).
        Assert.Equal(BalloonAction.Hold, r.Decisions.Single(d => d.Name == "busy").Action);
    }

    [Fact]
    public void InflationStopsAtTheShortfall()
    {
        var c = new MemoryBalancerController(new MemoryBalancerPolicy { HostTargetPercent = 80, MaxStepPercent = 50 });
        // 81% used: 102.4 MiB short; the first guest's step covers it all.
        var r = c.Decide(Host(81), new[] { G("a", 1, 1024, 1024, 900, 1000), G("b", 2, 1024, 1024, 800, 1000) });
        var a = r.Decisions.Single(d => d.Name == "a");
        Assert.Equal(BalloonAction.Inflate, a.Action);
        Assert.InRange(a.TargetMB, 1024 - 103, 1024 - 101);
        Assert.Equal(BalloonAction.Hold, r.Decisions.Single(d => d.Name == "b").Action);
    }

    [Fact]
    public void RoundAfterRoundTheBalloonGoesDownToTheMinimumAndNeverBelow()
    {
        // The acceptance scenario: -m 256, ~40 MiB used in the guest, target 1% (always pressure), minimum 100.
        var policy = new MemoryBalancerPolicy { HostTargetPercent = 1, MinimumMB = { ["*"] = 100 } };
        var c = new MemoryBalancerController(policy);
        double actual = 256;
        var targets = new List<long>();
        for (int round = 0; round < 20; round++)
        {
            double total = actual - 36, available = total - 40; // the guest kernel keeps ~36 MiB; 40 MiB in use
            var r = c.Decide(Host(50), new[] { G("t1", 7, 256, actual, available, total) });
            var d = Assert.Single(r.Decisions);
            if (d.Action == BalloonAction.Inflate) { targets.Add(d.TargetMB); actual = d.TargetMB; } // the guest follows at once here
        }
        Assert.All(targets, t => Assert.True(t >= 100, $"target {t}"));
        Assert.InRange(actual, 100, 110);
        Assert.Equal(Enumerable.Range(0, targets.Count - 1).Select(i => true), targets.Zip(targets.Skip(1), (x, y) => y < x)); // strictly downward
        Assert.True(targets.Zip(new[] { 256L }.Concat(targets), (t, prev) => prev - t).All(step => step <= 26), "no step above 10% of 256 MiB");
    }

    [Fact]
    public void ABalloonStillOnItsWayIsNotPulledBack()
    {
        var c = new MemoryBalancerController(new MemoryBalancerPolicy { HostTargetPercent = 1, MinimumMB = { ["*"] = 100 } });
        var first = c.Decide(Host(50), new[] { G("t", 1, 256, 256) }).Decisions.Single();
        Assert.Equal(230, first.TargetMB);
        // The guest has only reached 250 when the next round comes: the step goes on from the target, not from 250.
        var second = c.Decide(Host(50), new[] { G("t", 1, 256, 250) }).Decisions.Single();
        Assert.Equal(BalloonAction.Inflate, second.Action);
        Assert.Equal(204, second.TargetMB);
    }

    [Fact]
    public void WithoutPressureTheSpareMemoryGoesBackBySharesAStepAtATime()
    {
        var policy = new MemoryBalancerPolicy { HostTargetPercent = 80, MaxStepPercent = 100, Shares = { ["gold"] = 3000 } };
        var c = new MemoryBalancerController(policy);
        // 79.5% used: spare 51.2 MiB; gold has 3000 shares against 1000: it gets three quarters.
        var r = c.Decide(Host(74.5), new[] { G("gold", 1, 1024, 512), G("plain", 2, 1024, 512), G("full", 3, 1024, 1024) });
        Assert.True(r.Relaxed);
        double spare = 10240 * 0.80 - 10240 * 0.745; // 563.2 MiB
        var gold = r.Decisions.Single(d => d.Name == "gold");
        var plain = r.Decisions.Single(d => d.Name == "plain");
        Assert.Equal(BalloonAction.Deflate, gold.Action);
        Assert.Equal(512 + (long)Math.Floor(spare * 0.75), gold.TargetMB);
        Assert.Equal(512 + (long)Math.Floor(spare * 0.25), plain.TargetMB);
        Assert.Contains("3000 of 4000 shares", gold.Reason);
        Assert.Equal(BalloonAction.Hold, r.Decisions.Single(d => d.Name == "full").Action);
    }

    [Fact]
    public void DeflationIsBoundedByTheStepAndTheGuestsSize()
    {
        var c = new MemoryBalancerController(new MemoryBalancerPolicy { HostTargetPercent = 80, MaxStepPercent = 10 });
        var r = c.Decide(Host(10), new[] { G("a", 1, 256, 100), G("b", 2, 256, 250) });
        Assert.Equal(126, r.Decisions.Single(d => d.Name == "a").TargetMB); // +26 (10% of 256)
        Assert.Equal(256, r.Decisions.Single(d => d.Name == "b").TargetMB); // +6, to its -m
    }

    [Fact]
    public void InsideTheHysteresisBandNothingMoves()
    {
        var c = new MemoryBalancerController(new MemoryBalancerPolicy { HostTargetPercent = 80, HysteresisPercent = 5 });
        var r = c.Decide(Host(77), new[] { G("a", 1, 1024, 512, 400, 480) });
        Assert.False(r.Pressure);
        Assert.False(r.Relaxed);
        Assert.Equal(BalloonAction.Hold, Assert.Single(r.Decisions).Action);
        Assert.Contains("within 5 points below the target 80%", r.Verdict);
    }

    [Fact]
    public void MemoryPsiIsPressureEvenBelowTheTarget()
    {
        var c = new MemoryBalancerController(new MemoryBalancerPolicy { HostTargetPercent = 80, PsiThresholdPercent = 10 });
        var r = c.Decide(Host(30, psi: 25.5), new[] { G("a", 1, 1024, 1024, 800, 1000) });
        Assert.True(r.Pressure);
        Assert.Contains("PSI some avg10 25.5% > 10%", r.Verdict);
        Assert.Equal(BalloonAction.Inflate, Assert.Single(r.Decisions).Action);
        // PSI off: the same host is relaxed.
        Assert.True(new MemoryBalancerController(new MemoryBalancerPolicy { PsiThresholdPercent = 0 }).Decide(Host(30, psi: 25.5), new[] { G("a", 1, 1024, 1024) }).Relaxed);
    }

    [Fact]
    public void AGuestShortOfMemoryGetsAStepBackEvenUnderPressure()
    {
        var c = new MemoryBalancerController(new MemoryBalancerPolicy { HostTargetPercent = 50 });
        var r = c.Decide(Host(90), new[] { G("starved", 1, 1024, 600, available: 20, total: 560), G("rich", 2, 1024, 1024, 900, 990) });
        var s = r.Decisions.Single(d => d.Name == "starved");
        Assert.Equal(BalloonAction.Deflate, s.Action);
        Assert.Equal(702, s.TargetMB);
        Assert.Contains("below its reserve 56 MiB", s.Reason);
        Assert.Equal(BalloonAction.Inflate, r.Decisions.Single(d => d.Name == "rich").Action);
    }

    [Fact]
    public void TheGuestsOwnReserveLimitsTheInflation()
    {
        var c = new MemoryBalancerController(new MemoryBalancerPolicy { HostTargetPercent = 1, MaxStepPercent = 50 });
        // 60 MiB available, reserve max(8, 10% of 200) = 20: at most 40 MiB may go, though the step would allow 128.
        var d = c.Decide(Host(50), new[] { G("a", 1, 256, 236, available: 60, total: 200) }).Decisions.Single();
        Assert.Equal(196, d.TargetMB);
        Assert.Contains("limited by the 20 MiB it keeps available of 60 MiB", d.Reason);
    }

    [Fact]
    public void MinimumsAndSharesResolveByExactNameThenPatternThenStar()
    {
        var p = new MemoryBalancerPolicy { MinimumMB = { ["*"] = 100, ["web*"] = 300, ["web1"] = 400 }, Shares = { ["db*"] = 2000 } };
        Assert.Equal(400, p.MinimumFor("web1", 1024));
        Assert.Equal(300, p.MinimumFor("web2", 1024));
        Assert.Equal(100, p.MinimumFor("db1", 1024));
        Assert.Equal(64, p.MinimumFor("db1", 64)); // never above -m
        Assert.Equal(512, new MemoryBalancerPolicy().MinimumFor("x", 1024)); // default: half of -m
        Assert.Equal(2000, p.SharesFor("db7"));
        Assert.Equal(1000, p.SharesFor("web1"));
    }

    [Theory]
    [InlineData(nameof(MemoryBalancerPolicy.HostTargetPercent), 101)]
    [InlineData(nameof(MemoryBalancerPolicy.MaxStepPercent), 0)]
    [InlineData(nameof(MemoryBalancerPolicy.PsiThresholdPercent), -1)]
    public void BadValuesAreInvalidArgument(string knob, double value)
    {
        var p = new MemoryBalancerPolicy();
        typeof(MemoryBalancerPolicy).GetProperty(knob)!.SetValue(p, value);
        var e = Assert.Throws<KvmOcException>(() => new MemoryBalancerController(p));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Equal("BalancerInvalidValue", e.ErrorId);
        Assert.Equal(knob, e.Target);
        Assert.Equal("BalancerInvalidValue", Assert.Throws<KvmOcException>(() => new MemoryBalancerController(new MemoryBalancerPolicy { MinimumMB = { ["*"] = 0 } })).ErrorId);
    }

    [Fact]
    public void PressureReadingsComeFromMeminfoPsiAndCgroupFiles()
    {
        Assert.Equal(12.5, MemoryPressureReader.ParsePsi("some avg10=12.50 avg60=3.00 avg300=1.00 total=123\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=5\n"));
        Assert.Null(MemoryPressureReader.ParsePsi(null));
        using var d = new Infrastructure.TempDir("kvmoc-cg");
        var v1 = Path.Combine(d.Path, "fs", "cgroup", "memory", "fleet");
        Directory.CreateDirectory(v1);
        File.WriteAllText(Path.Combine(v1, "memory.limit_in_bytes"), $"{1024 * MiB}\n");
        File.WriteAllText(Path.Combine(v1, "memory.usage_in_bytes"), $"{900 * MiB}\n");
        File.WriteAllText(Path.Combine(v1, "memory.stat"), $"cache 0\ninactive_file {50 * MiB}\ntotal_inactive_file {100 * MiB}\n");
        var proc = Path.Combine(d.Path, "proc", "pressure");
        Directory.CreateDirectory(proc);
        File.WriteAllText(Path.Combine(proc, "memory"), "some avg10=1.25 avg60=0 avg300=0 total=1\n");
        var roots = new HostRoots(Sys: d.Path, Proc: Path.Combine(d.Path, "proc"));
        var r = new MemoryPressureReader(roots, "fleet").Read();
        Assert.Equal(1024 * MiB, r.TotalBytes);
        Assert.Equal(800 * MiB, r.UsedBytes); // usage − total_inactive_file
        Assert.Equal(78.12, r.UsedPercent); // 78.125, rounded to even
        Assert.Equal(1.25, r.PsiSomeAvg10);
        Assert.StartsWith("cgroup ", r.Source);

        var v2 = Path.Combine(d.Path, "v2");
        Directory.CreateDirectory(v2);
        File.WriteAllText(Path.Combine(v2, "memory.max"), "max\n");
        File.WriteAllText(Path.Combine(v2, "memory.current"), "1000\n");
        Assert.Equal("CgroupHasNoLimit", Assert.Throws<KvmOcException>(() => MemoryPressureReader.ReadCgroup(v2)).ErrorId);
        File.WriteAllText(Path.Combine(v2, "memory.max"), $"{2048 * MiB}\n");
        File.WriteAllText(Path.Combine(v2, "memory.current"), $"{1024 * MiB}\n");
        File.WriteAllText(Path.Combine(v2, "memory.stat"), $"anon 0\ninactive_file {24 * MiB}\n");
        Assert.Equal(1000 * MiB, MemoryPressureReader.ReadCgroup(v2).UsedBytes);
        Assert.Equal("CgroupNotFound", Assert.Throws<KvmOcException>(() => new MemoryPressureReader(roots, "nope")).ErrorId);
    }
}
