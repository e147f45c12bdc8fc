using System.Diagnostics;
using KvmOvercommit.Engine.Memory;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;
using Xunit.Abstractions;

namespace KvmOvercommit.Engine.Tests.Memory;

/// <summary>The balancer on real tiny guests (TCG): the acceptance run.</summary>
[Collection(HostSerialCollection.Name)]
public class MemoryBalancerHostTests
{
    readonly ITestOutputHelper _out;
    public MemoryBalancerHostTests(ITestOutputHelper output) => _out = output;

    [SkippableFact]
    public async Task TwoGuestsGoDownToTheirMinimumUnderPressureAndBackToTheirSizeAfterwards()
    {
        using var f = await GuestFixture.CreateAsync();
        var guests = new List<KvmGuest>();
        foreach (var stem in new[] { "bal-a", "bal-b" })
        {
            var o = f.TinyOptions(f.Name(stem), kernelArgs: "kvmoc.fill=16,4"); // ~40 MiB in use: the guest's own ~25 MiB plus the fill
            o.MemoryMB = 256;
            guests.Add(await f.StartAsync(o));
        }
        foreach (var g in guests) await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);

        var samples = new List<(double Seconds, int Id, double ActualMB)>();
        var clock = Stopwatch.StartNew();
        var options = new MemoryBalancerOptions
        {
            Names = guests.Select(g => g.Name).ToArray(),
            Duration = TimeSpan.FromSeconds(40),
            Interval = TimeSpan.FromSeconds(1),
            Policy = new MemoryBalancerPolicy { HostTargetPercent = 1, MinimumMB = { ["*"] = 100 } },
            OnRound = (round, states) => { lock (samples) foreach (var s in states) samples.Add((clock.Elapsed.TotalSeconds, s.Id, s.ActualMB)); },
        };
        var obs = new RecordingObserver();
        var result = await MemoryBalancer.RunAsync(options, obs, default);
        double end = clock.Elapsed.TotalSeconds;

        foreach (var d in result.Decisions.Take(12)) _out.WriteLine(d.ToString());
        Assert.Equal(2, result.Guests.Count);
        Assert.True(result.PressureRounds == result.Rounds && result.Rounds >= 20, $"{result.PressureRounds} of {result.Rounds} rounds under pressure");
        foreach (var g in guests)
        {
            var mine = samples.Where(s => s.Id == g.Id).ToList();
            Assert.All(mine, s => Assert.True(s.ActualMB >= 100, $"{g.Name} at {s.ActualMB} MiB after {s.Seconds:0.0} s"));
            var reached = mine.FirstOrDefault(s => s.ActualMB <= 110);
            Assert.True(reached != default, $"{g.Name} never got to 110 MiB: lowest {mine.Min(s => s.ActualMB)}");
            _out.WriteLine($"{g.Name}: 256 → {reached.ActualMB} MiB after {reached.Seconds:0.0} s; lowest {mine.Min(s => s.ActualMB)} MiB; final {result.Guests.Single(x => x.Id == g.Id).FinalActualMB} MiB");
            Assert.True(reached.Seconds <= 30, $"{g.Name} reached {reached.ActualMB} MiB only after {reached.Seconds:0.0} s");
            Assert.InRange(mine.Last().ActualMB, 100, 110);
            var summary = result.Guests.Single(x => x.Id == g.Id);
            Assert.True(summary.LowestActualMB >= 100);
            Assert.Equal(100, summary.MinimumMB);
            Assert.Equal(256.0, summary.FinalActualMB);
            Assert.Equal(256.0, (await KvmGuestBalloon.GetAsync(g, default)).ActualMB);
        }
        double back = end - options.Duration.Value.TotalSeconds;
        _out.WriteLine($"rounds {result.Rounds}, inflations {result.Inflations}; back at 256 MiB {back:0.0} s after the run; balancer CPU {result.ProcessCpuSeconds} s ({result.ProcessCpuPercent}%)");
        Assert.True(back <= 10 + 2, $"back at 256 only {back:0.0} s after the run"); // 2 s: the final round's own duration
        Assert.True(result.DeflatedAtExit);
        Assert.Empty(obs.Warnings);
    }

    [SkippableFact]
    public async Task WhatIfDecidesButSetsNothingAndLeaveBalloonsLeavesThem()
    {
        using var f = await GuestFixture.CreateAsync();
        var o = f.TinyOptions(f.Name("bal-dry"));
        o.MemoryMB = 192;
        var g = await f.StartAsync(o);
        await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);
        var policy = new MemoryBalancerPolicy { HostTargetPercent = 1, MinimumMB = { ["*"] = 150 } };

        var dry = await MemoryBalancer.RunAsync(new MemoryBalancerOptions { Names = new[] { g.Name }, Duration = TimeSpan.FromSeconds(3), Interval = TimeSpan.FromSeconds(1), Policy = policy, DryRun = true }, NullObserver.Instance, default);
        Assert.True(dry.DryRun);
        Assert.NotEmpty(dry.Decisions);
        Assert.All(dry.Decisions, d => Assert.False(d.Applied));
        Assert.Equal(192.0, (await KvmGuestBalloon.GetAsync(g, default)).ActualMB);

        var left = await MemoryBalancer.RunAsync(new MemoryBalancerOptions { Names = new[] { g.Name }, Duration = TimeSpan.FromSeconds(6), Interval = TimeSpan.FromSeconds(1), Policy = policy, LeaveBalloons = true }, NullObserver.Instance, default);
        Assert.False(left.DeflatedAtExit);
        Assert.All(left.Decisions, d => Assert.True(d.Applied));
        var sw = Stopwatch.StartNew();
        double actual;
        do { await Task.Delay(300); actual = (await KvmGuestBalloon.GetAsync(g, default)).ActualMB; } while (actual > 151 && sw.Elapsed < TimeSpan.FromSeconds(15));
        Assert.InRange(actual, 150, 151); // left at its minimum
        Assert.Equal(150L, (await KvmGuestBalloon.GetAsync(g, default)).TargetMB);
    }
}

/// <summary>The balancer with the KSM tuner alongside, and against a real memory cgroup.</summary>
[Collection(HostSerialCollection.Name)]
public class MemoryBalancerCgroupAndKsmTests
{
    [SkippableFact]
    public async Task WithKsmAutoTuneTheTunerRunsAlongsideAndLeavesKsmLow()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        using var f = await GuestFixture.CreateAsync();
        using var guard = new KvmOvercommit.Engine.Ksm.KsmSettingsGuard();
        var g = await f.StartAsync(f.TinyOptions(f.Name("bal-ksm"), kernelArgs: "kvmoc.fill=8,2"));
        await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);
        var r = await MemoryBalancer.RunAsync(new MemoryBalancerOptions
        {
            Names = new[] { g.Name }, Duration = TimeSpan.FromSeconds(6), Interval = TimeSpan.FromSeconds(1), WithKsmAutoTune = true,
            Policy = new MemoryBalancerPolicy { HostTargetPercent = 99, PsiThresholdPercent = 0 },
        }, NullObserver.Instance, default);
        Assert.NotNull(r.KsmAutoTune);
        Assert.InRange(r.KsmAutoTune!.Duration.TotalSeconds, 4, 12);
        var now = KvmOvercommit.Engine.Ksm.KsmStatReader.Read();
        Assert.Equal(r.KsmAutoTune.ExitPagesToScan, now.PagesToScan);
        Assert.Equal(r.KsmAutoTune.ExitSleepMilliseconds, now.SleepMilliseconds);
        Assert.Single(r.Guests);
        Assert.True(r.ProcessCpuSeconds >= 0);
        foreach (var p in f.Running()) GuestLauncher.kill(p.Id, 9);
        guard.Dispose();
        Assert.Empty(guard.RemainingDifferences);
    }

    [SkippableFact]
    public async Task AgainstACgroupLimitTheCgroupsUsageIsThePressure()
    {
        Prereq.RequireRoot();
        var root = "/sys/fs/cgroup/memory";
        Prereq.Require(File.Exists(Path.Combine(root, "memory.limit_in_bytes")), "a cgroup v1 memory controller at /sys/fs/cgroup/memory");
        using var f = await GuestFixture.CreateAsync();
        var cg = Path.Combine(root, "kvmoc-memory-test-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(cg);
        try
        {
            File.WriteAllText(Path.Combine(cg, "memory.limit_in_bytes"), (1024L * 1024 * 1024).ToString());
            var o = f.TinyOptions(f.Name("bal-cg"), kernelArgs: "kvmoc.fill=32,6");
            o.MemoryMB = 256;
            var g = await f.StartAsync(o);
            File.WriteAllText(Path.Combine(cg, "cgroup.procs"), g.Id.ToString()); // the guest's RAM is touched from here on, charged to the cgroup
            await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);
            var reading = MemoryPressureReader.ReadCgroup(cg);
            Assert.InRange(reading.UsedBytes, 32L * 1024 * 1024, 512L * 1024 * 1024);

            var r = await MemoryBalancer.RunAsync(new MemoryBalancerOptions
            {
                Names = new[] { g.Name }, Cgroup = cg, Duration = TimeSpan.FromSeconds(6), Interval = TimeSpan.FromSeconds(1),
                Policy = new MemoryBalancerPolicy { HostTargetPercent = 2, PsiThresholdPercent = 0, MinimumMB = { ["*"] = 150 } },
            }, NullObserver.Instance, default);
            Assert.Equal("cgroup " + cg, r.PressureSource);
            Assert.Equal(r.Rounds, r.PressureRounds); // its usage is above 2% of 1 GiB, though the host is far from it
            Assert.True(r.Inflations > 0);
            Assert.Contains(r.Decisions, d => d.Reason.StartsWith("cgroup " + cg, StringComparison.Ordinal));
            Assert.Equal(256.0, r.Guests.Single().FinalActualMB);

            // The same host judged by its own memory (a few percent used) is not under pressure at 80%.
            var host = await MemoryBalancer.RunAsync(new MemoryBalancerOptions { Names = new[] { g.Name }, Duration = TimeSpan.FromSeconds(2), Interval = TimeSpan.FromSeconds(1), DryRun = true }, NullObserver.Instance, default);
            Assert.Equal(0, host.PressureRounds);
        }
        finally
        {
            foreach (var p in f.Running()) GuestLauncher.kill(p.Id, 9);
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < TimeSpan.FromSeconds(10))
            {
                try { Directory.Delete(cg); break; } catch (IOException) { Thread.Sleep(200); }
            }
        }
        Assert.False(Directory.Exists(cg), $"cgroup {cg} left behind");
    }
}
