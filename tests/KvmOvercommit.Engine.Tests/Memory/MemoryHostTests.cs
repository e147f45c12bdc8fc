using System.Diagnostics;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;
using Xunit.Abstractions;

namespace KvmOvercommit.Engine.Tests.Memory;

/// <summary>
/// Memory beyond KSM on real tiny guests (TCG): merge opt-out, free page reporting, balloon statistics. Every guest is
/// killed by the fixture; KSM settings are restored exactly.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class MemoryHostTests
{
    readonly ITestOutputHelper _out;
    public MemoryHostTests(ITestOutputHelper output) => _out = output;

    static long? ProcLong(int pid, string file)
    {
        try { return long.Parse(File.ReadAllText($"/proc/{pid}/{file}").Trim(), System.Globalization.CultureInfo.InvariantCulture); }
        catch (IOException) { return null; }
    }

    [SkippableFact]
    public async Task AGuestWithMemoryMergeOffMergesNothingWhileItsIdenticalTwinMerges()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        using var f = await GuestFixture.CreateAsync();
        using var guard = new KsmSettingsGuard();
        var start = KsmStatReader.Read();
        new KsmTuner().Set(KsmTuning.ForProfile(KsmTuningProfile.Aggressive).With(new KsmTuning { AdvisorMode = start.AdvisorMode is null ? null : "none", Run = KsmRunState.Merging }));

        var closedOptions = f.TinyOptions(f.Name("mem-nomerge"), kernelArgs: "kvmoc.fill=16,3");
        closedOptions.MemoryMerge = false;
        var closed = await f.StartAsync(closedOptions);
        var twin = await f.StartAsync(f.TinyOptions(f.Name("mem-twin"), kernelArgs: "kvmoc.fill=16,3"));
        Assert.False(closed.MemoryMerge);
        Assert.True(twin.MemoryMerge);
        Assert.Contains("mem-merge=off", File.ReadAllText(Path.Combine(closed.RunDirectory!, GuestLauncher.CommandLineFile)));
        await GuestFixture.WaitForSerialAsync(closed, TinyGuestInit.ReadyMarker);
        await GuestFixture.WaitForSerialAsync(twin, TinyGuestInit.ReadyMarker);

        // Wait until the twin merged its repeated fill (16 copies of one 1 MiB block), then two more full scans.
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(90) && !(ProcLong(twin.Id, "ksm_merging_pages") > 2048)) await Task.Delay(500);
        long scans = KsmStatReader.Read().FullScans ?? 0;
        while (sw.Elapsed < TimeSpan.FromSeconds(120) && (KsmStatReader.Read().FullScans ?? 0) < scans + 2) await Task.Delay(200);

        long twinPages = ProcLong(twin.Id, "ksm_merging_pages") ?? -1, closedPages = ProcLong(closed.Id, "ksm_merging_pages") ?? -1;
        _out.WriteLine($"ksm_merging_pages: mem-merge=off {closedPages}, twin {twinPages}; full scans {KsmStatReader.Read().FullScans - scans} after the twin merged");
        Assert.True(twinPages > 2048, $"twin merged {twinPages} pages");
        Assert.Equal(0, closedPages);

        // Get-KvmGuest reads it from the command line (as for a hand-started guest).
        var listed = new KvmGuestInventory().Find(new[] { closed.Name, twin.Name }, null);
        Assert.False(listed.Single(g => g.Id == closed.Id).MemoryMerge);
        Assert.True(listed.Single(g => g.Id == twin.Id).MemoryMerge);
        Assert.Equal(0, listed.Single(g => g.Id == closed.Id).KsmMergingPages);

        foreach (var p in f.Running()) GuestLauncher.kill(p.Id, 9);
        guard.Dispose();
        Assert.Empty(guard.RemainingDifferences);
    }

    [SkippableFact]
    public void AHandStartedGuestShowsItsMergeAndBalloonSettings()
    {
        using var hand = new GuestOps.HandStartedQemu(Prereq.RequireTool("qemu-system-x86_64"), "-machine", "pc,mem-merge=off", "-name", "guest=mem-hand-" + Guid.NewGuid().ToString("N")[..6],
            "-m", "32", "-device", "virtio-balloon-pci,id=b0,free-page-reporting=on");
        var g = new QemuProcessScanner().Read(hand.Pid);
        Assert.NotNull(g);
        Assert.False(g!.MemoryMerge);
        Assert.True(g.FreePageReporting);
        Assert.False(g.DeflateOnOom);
        // QEMU did not madvise(MADV_MERGEABLE) any mapping: no VmFlags line carries "mg".
        Assert.DoesNotContain(File.ReadAllText($"/proc/{hand.Pid}/smaps").Split('\n'), l => l.StartsWith("VmFlags:", StringComparison.Ordinal) && (l + " ").Contains(" mg ", StringComparison.Ordinal));
    }

    static long Rss(int pid) => (ProcFiles.StatusKb(File.ReadAllText($"/proc/{pid}/status"), "VmRSS") ?? 0);

    [SkippableFact]
    public async Task FreePageReportingGivesAFreedFillBackToTheHostAndWithoutItNothingComesBack()
    {
        using var f = await GuestFixture.CreateAsync();
        const int fillMiB = 64;
        var withOptions = f.TinyOptions(f.Name("fpr-on"), kernelArgs: $"kvmoc.fill={fillMiB},7,6");
        withOptions.MemoryMB = 192;
        withOptions.FreePageReporting = true;
        var withoutOptions = f.TinyOptions(f.Name("fpr-off"), kernelArgs: $"kvmoc.fill={fillMiB},8,6");
        withoutOptions.MemoryMB = 192;
        withoutOptions.FreePageReporting = false;
        var with = await f.StartAsync(withOptions);
        var without = await f.StartAsync(withoutOptions);
        Assert.True(with.FreePageReporting);
        Assert.False(without.FreePageReporting);
        await GuestFixture.WaitForSerialAsync(with, TinyGuestInit.ReadyMarker, TimeSpan.FromSeconds(120));
        long withFilled = Rss(with.Id);
        await GuestFixture.WaitForSerialAsync(without, TinyGuestInit.ReadyMarker, TimeSpan.FromSeconds(120));
        long withoutFilled = Rss(without.Id);

        await GuestFixture.WaitForSerialAsync(with, TinyGuestInit.FreedMarker, TimeSpan.FromSeconds(60));
        await GuestFixture.WaitForSerialAsync(without, TinyGuestInit.FreedMarker, TimeSpan.FromSeconds(60));
        // Page reporting runs 2 s after enough free memory gathers; give it time, then read both again.
        var sw = Stopwatch.StartNew();
        double withBack = 0;
        while (sw.Elapsed < TimeSpan.FromSeconds(30))
        {
            withBack = (double)(withFilled - Rss(with.Id)) / (fillMiB * Units.MiB);
            if (withBack >= 0.9) break;
            await Task.Delay(500);
        }
        if (sw.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(TimeSpan.FromSeconds(10) - sw.Elapsed); // the same wait for the guest without reporting
        withBack = (double)(withFilled - Rss(with.Id)) / (fillMiB * Units.MiB);
        double withoutBack = (double)(withoutFilled - Rss(without.Id)) / (fillMiB * Units.MiB);
        _out.WriteLine($"{fillMiB} MiB filled then freed: with free page reporting RSS {withFilled / Units.MiB} → {Rss(with.Id) / Units.MiB} MiB ({withBack:P0} back); " +
                       $"without: {withoutFilled / Units.MiB} → {Rss(without.Id) / Units.MiB} MiB ({withoutBack:P0} back), {sw.Elapsed.TotalSeconds:0.0} s after the free");
        Assert.True(withBack >= 0.8, $"with reporting only {withBack:P0} of the fill came back");
        Assert.True(withoutBack <= 0.1, $"without reporting {withoutBack:P0} came back");
    }

    [SkippableFact]
    public async Task TheBalloonStatisticsShowTheGuestsOwnViewAndAreNullWhereNoGuestReports()
    {
        using var f = await GuestFixture.CreateAsync();
        var g = await f.StartAsync(f.TinyOptions(f.Name("stats"), kernelArgs: "kvmoc.fill=32,2"));
        using var bare = new GuestOps.HandStartedQemu(Prereq.RequireTool("qemu-system-x86_64"), "-name", "guest=mem-bare-" + Guid.NewGuid().ToString("N")[..6], "-m", "64",
            "-device", "virtio-balloon-pci"); // no guest OS: nobody answers the statistics request
        await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);

        var m = await KvmGuestBalloon.GetAsync(g, 2, NullObserver.Instance, default);
        _out.WriteLine($"free {m.GuestFreeMB} MiB, available {m.GuestAvailableMB} MiB, total {m.GuestTotalBytes / Units.MiB} MiB, caches {m.GuestDiskCachesBytes / Units.MiB} MiB, " +
                       $"swap in/out {m.GuestSwapInBytes}/{m.GuestSwapOutBytes}, faults {m.GuestMajorFaults}/{m.GuestMinorFaults}, last update {m.StatsLastUpdate:O}, interval {m.StatsPollingIntervalSeconds}");
        Assert.Equal(2, m.StatsPollingIntervalSeconds);
        Assert.NotNull(m.StatsLastUpdate);
        Assert.InRange(m.StatsLastUpdate!.Value, DateTimeOffset.UtcNow.AddSeconds(-30), DateTimeOffset.UtcNow.AddSeconds(5));
        Assert.InRange(m.GuestTotalBytes!.Value, 64 * Units.MiB, 128 * Units.MiB);
        Assert.InRange(m.GuestFreeBytes!.Value, 1, m.GuestTotalBytes!.Value - 32 * Units.MiB); // the 32 MiB fill is not free
        Assert.InRange(m.GuestAvailableBytes!.Value, 1, m.GuestTotalBytes!.Value);
        Assert.True(m.GuestMinorFaults > 0);
        Assert.NotNull(m.GuestMajorFaults);
        Assert.Equal(0, m.GuestSwapOutBytes); // no swap in the tiny guest

        // Shrinking the balloon shows in the guest's own total.
        await KvmGuestBalloon.ApplyAsync(KvmGuestBalloon.Plan(g, 96), true, TimeSpan.FromSeconds(30), NullObserver.Instance, default);
        var sw = Stopwatch.StartNew();
        KvmGuestMemory after;
        do { await Task.Delay(500); after = await KvmGuestBalloon.GetAsync(g, 2, NullObserver.Instance, default); }
        while (after.GuestTotalBytes > m.GuestTotalBytes - 24 * Units.MiB && sw.Elapsed < TimeSpan.FromSeconds(20));
        Assert.True(after.GuestTotalBytes <= m.GuestTotalBytes - 24 * Units.MiB, $"guest total {after.GuestTotalBytes / Units.MiB} MiB after ballooning to 96 (was {m.GuestTotalBytes / Units.MiB})");

        var none = await KvmGuestBalloon.GetAsync(new QemuProcessScanner().Read(bare.Pid)!, 2, NullObserver.Instance, default);
        Assert.Null(none.StatsLastUpdate);
        Assert.Null(none.GuestFreeBytes);
        Assert.Null(none.GuestMajorFaults);
        Assert.Equal(2, none.StatsPollingIntervalSeconds);
    }
}
