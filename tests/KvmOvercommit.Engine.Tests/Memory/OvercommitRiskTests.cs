using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Memory;

/// <summary>The risk side of Get-OvercommitReport: KsmUnmergeRiskBytes, BalloonedBytes, SwapFreeBytes and the warning.</summary>
public class OvercommitRiskTests
{
    const long MiB = 1024 * 1024;

    static OvercommitInputs Inputs(long availableMiB, long swapFreeMiB, long? pagesSharing) => new()
    {
        HostName = "h1", LogicalCpus = 4, MemoryTotalBytes = 16384 * MiB, MemoryAvailableBytes = availableMiB * MiB, KsmSavedBytes = 600 * MiB, PageSize = 4096,
        SwapFreeBytes = swapFreeMiB * MiB, KsmPagesSharing = pagesSharing,
        Guests =
        {
            new GuestFacts { Name = "a", MemoryBytes = 2048 * MiB, Vcpus = 1, RssBytes = 1800 * MiB, KsmMergingPages = 0, BalloonActualBytes = 1536 * MiB },
            new GuestFacts { Name = "b", MemoryBytes = 2048 * MiB, Vcpus = 1, RssBytes = 1600 * MiB, KsmMergingPages = 0, BalloonActualBytes = 2048 * MiB },
            new GuestFacts { Name = "c", MemoryBytes = 1024 * MiB, Vcpus = 1, RssBytes = 900 * MiB, KsmMergingPages = 0 }, // no QMP: not counted
        },
    };

    [Fact]
    public void TheRiskIsPagesSharingTimesThePageSizeAndTheBalloonsAreSummed()
    {
        var r = OvercommitCalculator.Compute(Inputs(10240, 1024, 153600)); // 600 MiB shared
        Assert.Equal(600 * MiB, r.KsmUnmergeRiskBytes);
        Assert.Equal(600.0, r.KsmUnmergeRiskMiB);
        Assert.Equal(512 * MiB, r.BalloonedBytes); // (2048 − 1536) + (2048 − 2048)
        Assert.Equal(1024 * MiB, r.SwapFreeBytes);
        Assert.False(r.KsmUnmergeRiskExceedsAvailable);
        Assert.Empty(r.Warnings);
        Assert.Contains(r.Explanation, e => e == "KsmUnmergeRiskBytes = pages_sharing × page size = 153600 × 4096 = 600 MiB; covered by available + free swap = 10240 MiB + 1024 MiB = 11264 MiB");
        Assert.Contains(r.Explanation, e => e.StartsWith("BalloonedBytes = sum of (-m − balloon actual) over 2 guest(s) with a readable balloon = 4096 MiB − 3584 MiB = 512 MiB", StringComparison.Ordinal));
    }

    [Fact]
    public void ARiskAboveAvailablePlusFreeSwapWarnsWithTheShortfall()
    {
        var r = OvercommitCalculator.Compute(Inputs(400, 100, 153600));
        Assert.True(r.KsmUnmergeRiskExceedsAvailable);
        var w = Assert.Single(r.Warnings);
        Assert.Contains("600 MiB at once, but only 500 MiB", w);
        Assert.Contains(r.Explanation, e => e.EndsWith("covered by available + free swap = 400 MiB + 100 MiB = 500 MiB: short by 100 MiB", StringComparison.Ordinal));
        // Exactly covered is not short.
        Assert.False(OvercommitCalculator.Compute(Inputs(500, 100, 153600)).KsmUnmergeRiskExceedsAvailable);
    }

    [Fact]
    public void WithoutKsmThereIsNoRiskAndWithoutBalloonsNothingIsHeldBack()
    {
        var inp = Inputs(100, 0, null);
        foreach (var g in inp.Guests) g.BalloonActualBytes = null;
        var r = OvercommitCalculator.Compute(inp);
        Assert.Null(r.KsmUnmergeRiskBytes);
        Assert.False(r.KsmUnmergeRiskExceedsAvailable);
        Assert.Equal(0, r.BalloonedBytes);
        Assert.Empty(r.Warnings);
        Assert.Contains("KsmUnmergeRiskBytes: none — this kernel has no KSM.", r.Explanation);
        Assert.Contains("BalloonedBytes = 0: no guest's balloon could be read.", r.Explanation);
    }

    /// <summary>A fake host: meminfo with little available and some swap, KSM's 6.18 tree with pages_sharing 2048.</summary>
    static TempDir FakeHost(long availableKb, long swapFreeKb)
    {
        var d = new TempDir("kvmoc-risk");
        var proc = Path.Combine(d.Path, "proc");
        Directory.CreateDirectory(proc);
        var live = Fixture.PathOf("host/live");
        File.Copy(Path.Combine(live, "cpuinfo"), Path.Combine(proc, "cpuinfo"));
        File.Copy(Path.Combine(live, "loadavg"), Path.Combine(proc, "loadavg"));
        File.WriteAllText(Path.Combine(proc, "meminfo"), $"MemTotal:       24576000 kB\nMemFree:          {availableKb} kB\nMemAvailable:     {availableKb} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapTotal:       {swapFreeKb} kB\nSwapFree:        {swapFreeKb} kB\n");
        return d;
    }

    [Fact]
    public async Task TheBuilderReadsSwapAndPagesSharingFromTheTreeAndWarnsThroughTheObserver()
    {
        using var d = FakeHost(availableKb: 4096, swapFreeKb: 2048); // 6 MiB cover against 8 MiB shared (2048 pages)
        var roots = new HostRoots(Sys: Fixture.PathOf("ksm/sys-6.18-merging"), Proc: Path.Combine(d.Path, "proc"));
        var guests = new List<KvmGuest> { new() { Name = "a", Id = 1, MemoryMB = 128, CpuCount = 1, RssBytes = 100 * MiB, KsmMergingPages = 0 } };
        var obs = new RecordingObserver();
        var r = await new OvercommitReportBuilder(roots, () => guests).BuildAsync(10, 0, probeDisks: false, obs, default);
        Assert.Equal(2048 * 4096L, r.KsmUnmergeRiskBytes);
        Assert.Equal(2 * MiB, r.SwapFreeBytes);
        Assert.True(r.KsmUnmergeRiskExceedsAvailable);
        Assert.Equal(0, r.BalloonedBytes);
        Assert.Contains(obs.Warnings, w => w.Contains("8 MiB at once, but only 6 MiB", StringComparison.Ordinal));

        using var roomy = FakeHost(availableKb: 8 * 1024 * 1024, swapFreeKb: 0);
        obs = new RecordingObserver();
        r = await new OvercommitReportBuilder(roots with { Proc = Path.Combine(roomy.Path, "proc") }, () => guests).BuildAsync(10, 0, probeDisks: false, obs, default);
        Assert.False(r.KsmUnmergeRiskExceedsAvailable);
        Assert.Empty(obs.Warnings);
    }

    [Fact]
    public void TheNewFiguresRoundTripThroughJson()
    {
        var r = OvercommitCalculator.Compute(Inputs(400, 100, 153600));
        var json = System.Text.Json.JsonSerializer.Serialize(r, OutputJson.Default.OvercommitReport);
        var back = System.Text.Json.JsonSerializer.Deserialize(json, OutputJson.Default.OvercommitReport)!;
        Assert.Equal(r.KsmUnmergeRiskBytes, back.KsmUnmergeRiskBytes);
        Assert.Equal(r.BalloonedBytes, back.BalloonedBytes);
        Assert.Equal(r.SwapFreeBytes, back.SwapFreeBytes);
        Assert.Equal(r.Warnings, back.Warnings);
        Assert.True(back.KsmUnmergeRiskExceedsAvailable);
    }
}

/// <summary>A real run: a tiny guest ballooned to 64 of 128 MiB shows as 64 MiB BalloonedBytes in the live report.</summary>
[Collection(HostSerialCollection.Name)]
public class OvercommitRiskHostTests
{
    [SkippableFact]
    public async Task ABalloonedTinyGuestCountsInTheLiveReport()
    {
        using var f = await GuestFixture.CreateAsync();
        var g = await f.StartAsync(f.TinyOptions(f.Name("risk")));
        await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);
        await KvmGuestBalloon.ApplyAsync(KvmGuestBalloon.Plan(g, 64), true, TimeSpan.FromSeconds(60), NullObserver.Instance, default);
        var r = await new OvercommitReportBuilder(guests: () => new QemuProcessScanner().Scan().Where(x => x.Id == g.Id).ToList()).BuildAsync(10, 0, false, NullObserver.Instance, default);
        Assert.InRange(r.BalloonedBytes, 63 * MiB, 65 * MiB);
        Assert.Equal(r.GuestMemoryBytes - r.Guests.Single().BalloonActualBytes, r.BalloonedBytes);
        var meminfo = File.ReadAllText("/proc/meminfo");
        Assert.Equal(ProcFilesSwapFree(meminfo), r.SwapFreeBytes);
        if (File.Exists("/sys/kernel/mm/ksm/pages_sharing")) Assert.NotNull(r.KsmUnmergeRiskBytes);
        Assert.Contains(r.Explanation, e => e.StartsWith("KsmUnmergeRiskBytes", StringComparison.Ordinal));
    }

    static long ProcFilesSwapFree(string meminfo) =>
        long.Parse(meminfo.Split('\n').First(l => l.StartsWith("SwapFree:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;

    const long MiB = 1024 * 1024;
}
