using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Host;

public class OvercommitTests
{
    const long MiB = 1024 * 1024;

    static OvercommitInputs TwoGuests() => new()
    {
        HostName = "h1",
        LogicalCpus = 4,
        MemoryTotalBytes = 16384 * MiB,
        MemoryAvailableBytes = 10240 * MiB,
        KsmSavedBytes = 600 * MiB,
        PageSize = 4096,
        HeadroomPercent = 10,
        CurrentIops = 300,
        Guests =
        {
            new GuestFacts { Name = "win7-1", MemoryBytes = 2048 * MiB, Vcpus = 1, RssBytes = 1800 * MiB, KsmMergingPages = 300 * 256, Disks = new[] { "/vm/win7-1.qcow2" } },
            new GuestFacts { Name = "win7-2", MemoryBytes = 2048 * MiB, Vcpus = 2, RssBytes = 1600 * MiB, KsmMergingPages = 300 * 256, Disks = new[] { "/vm/win7-2.qcow2" } },
        },
        DiskImages =
        {
            ["/vm/win7-1.qcow2"] = new DiskImageFacts { Path = "/vm/win7-1.qcow2", VirtualSizeBytes = 20480 * MiB, AllocatedBytes = 512 * MiB, BackingChain = new[] { new DiskImageFacts { Path = "/vm/base.qcow2", VirtualSizeBytes = 20480 * MiB, AllocatedBytes = 9216 * MiB } } },
            ["/vm/win7-2.qcow2"] = new DiskImageFacts { Path = "/vm/win7-2.qcow2", VirtualSizeBytes = 20480 * MiB, AllocatedBytes = 512 * MiB, BackingChain = new[] { new DiskImageFacts { Path = "/vm/base.qcow2", VirtualSizeBytes = 20480 * MiB, AllocatedBytes = 9216 * MiB } } },
        },
    };

    [Fact]
    public void RatiosAndCapacity()
    {
        var r = OvercommitCalculator.Compute(TwoGuests());
        Assert.Equal(3, r.GuestVcpus);
        Assert.Equal(0.75, r.VcpuRatio);
        Assert.False(r.VcpuAboveGuidance);
        Assert.Equal(1, r.MultiVcpuGuests);
        Assert.Equal(0.25, r.MemoryRatio);                        // 4096 / 16384
        Assert.Equal(3400 * MiB, r.GuestResidentBytes);
        Assert.Equal(2800 * MiB, r.EffectiveResidentBytes);       // 3400 − 600
        Assert.Equal(Math.Round(2800.0 / 16384, 3), r.EffectiveMemoryRatio);
        Assert.Equal(1400 * MiB, r.UniqueResidentPerGuestBytes);  // ((1800 − 300) + (1600 − 300)) / 2
        Assert.Equal((long)Math.Round(16384 * MiB * 0.1), r.HeadroomBytes);
        Assert.Equal(6, r.EstimatedAdditionalGuests);             // floor((10240 − 1638.4) / 1400) = 6
        var d = Assert.Single(r.DiskRatios);
        Assert.Equal("/vm/base.qcow2", d.BaseImage);
        Assert.Equal(2, d.DiskCount);
        Assert.Equal(40960 * MiB, d.VirtualBytes);
        Assert.Equal((512 + 512 + 9216) * MiB, d.AllocatedBytes); // the base counted once
        Assert.Equal(4.0, d.Ratio);
        Assert.Equal(4.0, r.DiskRatio);
        Assert.Equal(150, r.IopsPerGuest);
        Assert.Contains(r.Explanation, e => e.StartsWith("VcpuRatio = guest vCPUs / host logical CPUs = 3 / 4 = 0.75"));
        Assert.Contains(r.Explanation, e => e.Contains("= floor((10240 MiB − 10% of 16384 MiB = 1638.4 MiB) / 1400 MiB) = 6"));
        Assert.Contains(r.Explanation, e => e.Contains("virtual 40960 MiB / allocated 10240 MiB (overlays + base once) = 4"));
    }

    [Fact]
    public void WithoutPerGuestKsmCountsTheHostWideSavingIsShared()
    {
        var inp = TwoGuests();
        inp.Guests[1].KsmMergingPages = null;
        var r = OvercommitCalculator.Compute(inp);
        Assert.Equal(1400 * MiB, r.UniqueResidentPerGuestBytes); // (3400 − 600) / 2
        Assert.Contains(r.Explanation, e => e.Contains("per-guest KSM counts are not available"));
    }

    [Fact]
    public void AboveTheFiveToOneGuidance()
    {
        var inp = TwoGuests();
        inp.LogicalCpus = 2;
        for (int i = 0; i < 9; i++) inp.Guests.Add(new GuestFacts { Name = $"g{i}", Vcpus = 1, MemoryBytes = 128 * MiB });
        var r = OvercommitCalculator.Compute(inp);
        Assert.Equal(6.0, r.VcpuRatio); // 12 / 2
        Assert.True(r.VcpuAboveGuidance);
        Assert.Contains(r.Explanation, e => e.Contains("above the 5:1 guidance"));
    }

    [Fact]
    public void NoGuestsGiveASensibleReport()
    {
        var r = OvercommitCalculator.Compute(new OvercommitInputs { HostName = "h", LogicalCpus = 2, MemoryTotalBytes = 1024 * MiB, MemoryAvailableBytes = 900 * MiB, KsmSavedBytes = 0 });
        Assert.Equal(0, r.GuestCount);
        Assert.Equal(0, r.VcpuRatio);
        Assert.Equal(0, r.MemoryRatio);
        Assert.Equal(0, r.EffectiveMemoryRatio);
        Assert.Equal(0, r.DiskRatio);
        Assert.Null(r.EstimatedAdditionalGuests);
        Assert.Null(r.UniqueResidentPerGuestBytes);
        Assert.Contains(r.Explanation, e => e.Contains("no guests are running, so there is no average guest to size") && e.Contains("= 797.6 MiB"));
    }

    [Fact]
    public void DisksThatCannotBeInspectedGiveNoDiskRatio()
    {
        var inp = TwoGuests();
        inp.DiskImages.Clear();
        var r = OvercommitCalculator.Compute(inp);
        Assert.Null(r.DiskRatio);
        Assert.Contains(r.Explanation, e => e.StartsWith("DiskRatio: unknown"));
        foreach (var g in inp.Guests) g.Disks = Array.Empty<string>();
        r = OvercommitCalculator.Compute(inp);
        Assert.Equal(0, r.DiskRatio);
        Assert.Contains(r.Explanation, e => e.StartsWith("DiskRatio = 0: no guest has a disk image."));
    }

    [Fact]
    public void HeadroomOutOfRangeIsInvalidArgument()
    {
        var inp = TwoGuests();
        inp.HeadroomPercent = 100;
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<KvmOcException>(() => OvercommitCalculator.Compute(inp)).Kind);
    }

    [Fact]
    public void ReportRoundTripsThroughJson()
    {
        var r = OvercommitCalculator.Compute(TwoGuests());
        var back = System.Text.Json.JsonSerializer.Deserialize<OvercommitReport>(System.Text.Json.JsonSerializer.Serialize(r))!;
        Assert.Equal(r.EstimatedAdditionalGuests, back.EstimatedAdditionalGuests);
        Assert.Equal(r.Explanation, back.Explanation);
        Assert.Equal(r.DiskRatios.Length, back.DiskRatios.Length);
    }

    [Fact]
    public void QemuImgBackingChainJson()
    {
        const string json = """
        [
            { "virtual-size": 21474836480, "filename": "/vm/win7-1.qcow2", "format": "qcow2", "actual-size": 200704, "backing-filename": "base.qcow2", "full-backing-filename": "/vm/base.qcow2" },
            { "virtual-size": 21474836480, "filename": "/vm/base.qcow2", "format": "qcow2", "actual-size": 9663676416 }
        ]
        """;
        var f = DiskImageProbe.Parse(json)!;
        Assert.Equal("/vm/win7-1.qcow2", f.Path);
        Assert.Equal(200704, f.AllocatedBytes);
        Assert.Equal(21474836480, f.VirtualSizeBytes);
        var b = Assert.Single(f.BackingChain);
        Assert.Equal("/vm/base.qcow2", b.Path);
        Assert.Equal(9663676416, b.AllocatedBytes);
        Assert.Null(DiskImageProbe.Parse("not json"));
    }

    [SkippableFact]
    public async Task QemuImgOnARealOverlay()
    {
        var qemuImg = Prereq.RequireTool("qemu-img");
        using var t = new TempDir();
        Run(qemuImg, "create", "-q", "-f", "qcow2", t.File("base.qcow2"), "64M");
        Run(qemuImg, "create", "-q", "-f", "qcow2", "-b", t.File("base.qcow2"), "-F", "qcow2", t.File("o1.qcow2"));
        var f = await DiskImageProbe.ProbeAsync(t.File("o1.qcow2"), NullObserver.Instance, default);
        Assert.NotNull(f);
        Assert.Equal(64 * MiB, f!.VirtualSizeBytes);
        Assert.Equal(new FileInfo(t.File("o1.qcow2")).Length > 0, f.AllocatedBytes > 0);
        Assert.Equal(t.File("base.qcow2"), Assert.Single(f.BackingChain).Path);
        Assert.Null(await DiskImageProbe.ProbeAsync(t.File("missing.qcow2"), NullObserver.Instance, default));
    }

    static void Run(string exe, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(exe);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    [Fact]
    public async Task LiveReportOnAHostWithoutGuests()
    {
        var b = new OvercommitReportBuilder(guests: () => Array.Empty<KvmGuest>());
        var r = await b.BuildAsync(10, 0.2, probeDisks: true, NullObserver.Instance, default);
        Assert.Equal(0, r.GuestCount);
        Assert.Equal(Environment.MachineName, r.HostName);
        Assert.True(r.LogicalCpus >= 1);
        Assert.True(r.MemoryTotalBytes > 0);
        Assert.InRange(r.MemoryAvailableBytes, 1, r.MemoryTotalBytes);
        Assert.Null(r.EstimatedAdditionalGuests);
        Assert.NotNull(r.CurrentIops);
        Assert.Equal(0, r.VcpuRatio);
        Assert.NotEmpty(r.Explanation);
    }

    [Fact]
    public async Task LiveReportCountsTheGuestsTheScannerSees()
    {
        var guests = new List<KvmGuest>
        {
            new() { Name = "a", Id = 1, MemoryMB = 128, CpuCount = 1, RssBytes = 100 * MiB, KsmMergingPages = 0 },
            new() { Name = "b", Id = 2, MemoryMB = 256, CpuCount = 2, RssBytes = 200 * MiB, KsmMergingPages = 0 },
        };
        var b = new OvercommitReportBuilder(guests: () => guests);
        var r = await b.BuildAsync(10, 0, probeDisks: false, NullObserver.Instance, default);
        Assert.Equal(2, r.GuestCount);
        Assert.Equal(3, r.GuestVcpus);
        Assert.Equal(384 * MiB, r.GuestMemoryBytes);
        Assert.Equal(150 * MiB, r.UniqueResidentPerGuestBytes);
        Assert.NotNull(r.EstimatedAdditionalGuests);
        Assert.Null(r.CurrentIops);
        var mem = new HostInfoReader(guests: () => guests).ReadMemory();
        Assert.Equal(384 * MiB, mem.GuestCommittedBytes);
        var cpu = new HostInfoReader(guests: () => guests).ReadCpu();
        Assert.Equal(3, cpu.GuestVcpus);
        Assert.Equal(2, cpu.GuestCount);
    }
}
