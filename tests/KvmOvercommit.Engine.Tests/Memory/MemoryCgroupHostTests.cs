using System.Diagnostics;
using KvmOvercommit.Engine.Memory;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;
using Xunit.Abstractions;

namespace KvmOvercommit.Engine.Tests.Memory;

/// <summary>
/// Guests in a real memory cgroup (cgroup v1, TCG): Start-KvmGuest -Cgroup, and the issue's OOM comparison — a fleet
/// whose cgroup is too small for every guest at full size loses a QEMU to the kernel's OOM killer without the balancer,
/// and none with it.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class MemoryCgroupHostTests
{
    readonly ITestOutputHelper _out;
    public MemoryCgroupHostTests(ITestOutputHelper output) => _out = output;

    const string V1Root = "/sys/fs/cgroup/memory";

    static MemoryCgroup NewCgroup(string stem, long limitMB)
    {
        Prereq.RequireRoot();
        Prereq.Require(File.Exists(Path.Combine(V1Root, "memory.limit_in_bytes")), "a cgroup v1 memory controller at /sys/fs/cgroup/memory");
        return MemoryCgroup.Create(Path.Combine(V1Root, $"{stem}-{Guid.NewGuid().ToString("N")[..6]}"), limitMB * Units.MiB);
    }

    /// <summary>Kills what the fixture started and removes the cgroup; fails the test when the cgroup stays.</summary>
    static void CleanUp(GuestFixture f, MemoryCgroup cg)
    {
        foreach (var p in f.Running()) GuestLauncher.kill(p.Id, 9);
        var problem = cg.Remove(TimeSpan.FromSeconds(15));
        Assert.True(problem is null, problem);
        Assert.False(Directory.Exists(cg.Path), $"cgroup {cg.Path} left behind");
    }

    [SkippableFact]
    public async Task StartKvmGuestCgroupStartsQemuInsideTheCgroupSoItsMemoryIsChargedThere()
    {
        using var f = await GuestFixture.CreateAsync();
        var cg = NewCgroup("kvmoc-start-test", 1024);
        try
        {
            var o = f.TinyOptions(f.Name("cg-start"), kernelArgs: "kvmoc.fill=64,3");
            o.MemoryMB = 256;
            o.Cgroup = Path.GetFileName(cg.Path); // a name under the v1 memory controller
            var plan = GuestLauncher.Plan(o, NullObserver.Instance);
            Assert.Equal(cg.Path, plan.Cgroup);
            Assert.EndsWith("/sh", plan.Executable);
            Assert.Equal(new[] { "-c", GuestLauncher.CgroupWrapper, cg.ProcsFile }, plan.Arguments.Take(3));
            var g = await f.StartAsync(plan, NullObserver.Instance);
            await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);
            Assert.Equal(new[] { g.Id }, cg.Pids());
            Assert.Contains(File.ReadAllLines($"/proc/{g.Id}/cgroup"), l => l.EndsWith(":memory:/" + Path.GetFileName(cg.Path), StringComparison.Ordinal));
            // Everything from the first page on is charged to the cgroup: at least the 64 MiB fill, and about QEMU's whole RSS.
            var rss = new QemuProcessScanner().Read(g.Id)!.RssBytes!.Value;
            long usage = cg.UsageBytes;
            _out.WriteLine($"QEMU RSS {Units.ToMiB(rss):0} MiB, cgroup usage {Units.ToMiB(usage):0} MiB");
            Assert.True(usage >= 64 * Units.MiB, $"usage {usage}");
            Assert.InRange(usage, rss * 0.8, rss * 1.2);
            Assert.True(g.MemoryMerge); // the wrapper does not confuse the parse of the planned command line
        }
        finally { CleanUp(f, cg); }
    }

    [SkippableFact]
    public void AFolderThatIsNotAMemoryCgroupIsRefusedBeforeAnythingStarts()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        foreach (var bad in new[] { "/tmp", "/sys/fs/cgroup/cpu", "no-such-cgroup-" + Guid.NewGuid().ToString("N")[..6] })
        {
            var o = new GuestStartOptions { Name = "cg-bad", Kernel = "/bin/sh", Cgroup = bad, NoVnc = true, Network = GuestNetwork.None, Accelerator = GuestAccelerator.Tcg };
            var e = Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(o, NullObserver.Instance));
            Assert.Equal("CgroupNotFound", e.ErrorId);
            Assert.Contains("not a memory cgroup", e.Message);
            Assert.NotNull(e.Hint);
        }
    }

    /// <summary>
    /// The numbers (measured by hand on this 2-core TCG host): a tiny guest with -m 256 charges ~173 MiB after boot and
    /// ~308 MiB once it has filled 128 MiB and freed it again (without free page reporting its freed pages stay with
    /// QEMU). Four of them, one after the other, in a 1000 MiB cgroup: without the balancer the fourth fill needs
    /// ~1234 MiB (an OOM kill, 234 MiB over); with the balancer (target 30% = 300 MiB, minimum 80 MiB) the guests that
    /// freed their fill are inflated between the starts (to ~190 MiB charged each), so the fourth fill peaked at 861 MiB
    /// (139 MiB under). The balloon also takes from a guest that has just booted and is about to fill: -DeflateOnOom lets
    /// that guest take pages back from its balloon instead of panicking ("System is deadlocked on memory", seen without it).
    /// </summary>
    [SkippableFact]
    public async Task AFleetTooBigForItsCgroupLosesAQemuToTheOomKillerWithoutTheBalancerAndNoneWithIt()
    {
        using var f = await GuestFixture.CreateAsync();
        var without = await RunFleetAsync(f, balancer: false);
        var with = await RunFleetAsync(f, balancer: true);
        _out.WriteLine($"without the balancer: {without.OomKills} OOM kill(s), {without.Alive} of 4 QEMUs alive, peak {without.PeakMB} MiB");
        _out.WriteLine($"with the balancer:    {with.OomKills} OOM kill(s), {with.Alive} of 4 QEMUs alive, peak {with.PeakMB} MiB, {with.Inflations} inflations");
        Assert.True(without.OomKills >= 1, $"no OOM kill without the balancer (peak {without.PeakMB} MiB)");
        Assert.True(without.Alive < 4, "every QEMU survived without the balancer");
        Assert.Equal(0, with.OomKills);
        Assert.Equal(4, with.Alive);
        Assert.True(with.Inflations > 0);
    }

    sealed record FleetOutcome(long OomKills, int Alive, long PeakMB, int Inflations);

    async Task<FleetOutcome> RunFleetAsync(GuestFixture f, bool balancer)
    {
        var cg = NewCgroup(balancer ? "kvmoc-oom-bal" : "kvmoc-oom", 1000);
        var stem = balancer ? "oomb" : "oom";
        var guests = new List<KvmGuest>();
        using var stop = new CancellationTokenSource();
        Task<KvmMemoryBalancerResult>? running = null;
        try
        {
            if (balancer)
            {
                var options = new MemoryBalancerOptions
                {
                    Names = new[] { stem + "-*" }, Cgroup = cg.Path, Interval = TimeSpan.FromSeconds(1),
                    Policy = new MemoryBalancerPolicy { HostTargetPercent = 30, PsiThresholdPercent = 0, MaxStepPercent = 25, MinimumMB = { ["*"] = 80 } },
                    OnDecision = d => _out.WriteLine(d.ToString()),
                };
                running = Task.Run(() => MemoryBalancer.RunAsync(options, NullObserver.Instance, stop.Token));
            }
            for (int i = 1; i <= 4; i++)
            {
                var o = f.TinyOptions(f.Name(stem), kernelArgs: $"kvmoc.quiet kvmoc.fill=128,{i},2");
                o.MemoryMB = 256;
                o.FreePageReporting = false; // the freed fill stays with QEMU: only the balloon gives it back
                o.DeflateOnOom = true;
                o.NoVnc = true;
                o.Cgroup = cg.Path;
                var g = await f.StartAsync(o);
                guests.Add(g);
                // Until it has filled and freed (or was killed), then 10 s for the balancer to act before the next one.
                var sw = Stopwatch.StartNew();
                while (sw.Elapsed < TimeSpan.FromSeconds(150) && ProcessLiveness.IsAlive(HostRoots.Default, g.Id, null)
                       && !(File.Exists(g.SerialLog) && File.ReadAllText(g.SerialLog!).Contains(TinyGuestInit.FreedMarker)))
                    await Task.Delay(250);
                await Task.Delay(TimeSpan.FromSeconds(10));
                _out.WriteLine($"{(balancer ? "with" : "without")}: guest {i} after {sw.Elapsed.TotalSeconds:0} s: usage {Units.ToMiB(cg.UsageBytes):0} MiB, OOM kills {cg.OomKills}, {cg.Pids().Count} QEMU(s) in the cgroup");
            }
            int alive = guests.Count(g => ProcessLiveness.IsAlive(HostRoots.Default, g.Id, null));
            long kills = cg.OomKills, peak = (long)Units.ToMiB(cg.PeakBytes ?? 0);
            int inflations = 0;
            if (running is not null)
            {
                stop.Cancel();
                inflations = (await running).Inflations;
                running = null;
            }
            return new FleetOutcome(kills, alive, peak, inflations);
        }
        finally
        {
            stop.Cancel();
            if (running is not null) try { await running; } catch (Exception e) { _out.WriteLine("balancer: " + e.Message); }
            foreach (var g in guests) GuestLauncher.kill(g.Id, 9);
            CleanUp(f, cg);
        }
    }
}
