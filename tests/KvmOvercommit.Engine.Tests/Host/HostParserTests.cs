using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Host;

public class HostParserTests
{
    [Fact]
    public void XeonTwoSocketsHyperthreaded()
    {
        var c = CpuInfoParser.Parse(Fixture.Text("host/cpuinfo-xeon-2s-ht"));
        Assert.Equal(32, c.LogicalCpus);
        Assert.Equal(2, c.Sockets);
        Assert.Equal(16, c.Cores);
        Assert.Equal(2, c.ThreadsPerCore);
        Assert.Equal("Intel(R) Xeon(R) CPU E5-2650 v2 @ 2.60GHz", c.Model);
        Assert.Equal("GenuineIntel", c.Vendor);
        Assert.True(c.VirtualizationSupported);
        Assert.Equal("vmx", c.VirtualizationFlag);
        Assert.Equal((1200 + 2600 + 1200 + 1800.523) / 4, c.Mhz!.Value, 3);
        Assert.Contains("ept", c.Flags);
    }

    [Fact]
    public void ThisHostsCpuinfoCapture()
    {
        var c = CpuInfoParser.Parse(Fixture.Text("host/live/cpuinfo"));
        Assert.Equal(2, c.LogicalCpus);
        Assert.Equal(1, c.Sockets);
        Assert.Equal(2, c.Cores);
        Assert.Equal(1, c.ThreadsPerCore);
        Assert.Equal("AMD EPYC", c.Model);
        Assert.False(c.VirtualizationSupported); // a nested VM without svm: QEMU runs with TCG here
        CpuInfoParser.ApplyLoadAvg(c, Fixture.Text("host/live/loadavg"));
        Assert.NotNull(c.LoadAverage15);
        Assert.NotNull(c.RunnableTasks);
    }

    [Fact]
    public void LiveCpuinfoMatchesSysfsOnlineCpus()
    {
        var c = CpuInfoParser.Parse(File.ReadAllText("/proc/cpuinfo"));
        // /sys/devices/system/cpu/online is a range list like "0-1" or "0-3,5".
        int online = File.ReadAllText("/sys/devices/system/cpu/online").Trim().Split(',')
            .Sum(r => r.Contains('-') ? int.Parse(r.Split('-')[1]) - int.Parse(r.Split('-')[0]) + 1 : 1);
        Assert.Equal(online, c.LogicalCpus);
        Assert.Equal(c.LogicalCpus, c.Cores * c.ThreadsPerCore);
    }

    [Fact]
    public void LoadAverageLine()
    {
        var c = new HostCpu();
        CpuInfoParser.ApplyLoadAvg(c, "1.66 1.81 1.06 2/134 15847\n");
        Assert.Equal(1.66, c.LoadAverage1);
        Assert.Equal(1.81, c.LoadAverage5);
        Assert.Equal(1.06, c.LoadAverage15);
        Assert.Equal(2, c.RunnableTasks);
    }

    [Fact]
    public void OldKernelMeminfoWithoutMemAvailable()
    {
        var m = MemInfoParser.ToHostMemory(Fixture.Text("host/meminfo-centos6"));
        Assert.True(m.AvailableEstimated);
        Assert.Equal(32876412L * 1024, m.TotalBytes);
        Assert.Equal((1203340L + 412880 + 18320152) * 1024, m.AvailableBytes);
        Assert.Equal((32876412L - 1203340 - 412880 - 18320152) * 1024, m.UsedMinusBuffersCacheBytes);
        Assert.Equal(36124108L * 1024, m.CommittedAsBytes);
        Assert.Equal(11024860L * 1024, m.AnonPagesBytes);
        Assert.Equal(8388600L * 1024, m.SwapTotalBytes);
        Assert.Equal(8301220L * 1024, m.SwapFreeBytes);
    }

    [Fact]
    public void ThisHostsMeminfoCapture()
    {
        var m = MemInfoParser.ToHostMemory(Fixture.Text("host/live/meminfo"));
        Assert.False(m.AvailableEstimated);
        Assert.Equal(24683620L * 1024, m.TotalBytes);
        Assert.Equal(23786532L * 1024, m.AvailableBytes);
        Assert.Equal(8404L * 1024, m.BuffersBytes);
        Assert.Equal(1090900L * 1024, m.CachedBytes);
        Assert.Equal(0, m.SwapTotalBytes);
    }

    [Fact]
    public void MeminfoKeepsUnitlessValues()
    {
        var d = MemInfoParser.Parse("HugePages_Total:      16\nHugepagesize:       2048 kB\n");
        Assert.Equal(16, d["HugePages_Total"]);
        Assert.Equal(2048 * 1024, d["Hugepagesize"]);
    }

    [Fact]
    public void MeminfoWithoutTotalIsInvalidData()
    {
        var e = Assert.Throws<KvmOcException>(() => MemInfoParser.ToHostMemory("MemFree: 12 kB\n"));
        Assert.Equal(ErrorKind.InvalidData, e.Kind);
    }

    [Fact]
    public void LiveMeminfoTotalsAgreeWithFree()
    {
        var free = Prereq.RequireTool("free");
        var psi = new System.Diagnostics.ProcessStartInfo(free, "-b") { RedirectStandardOutput = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var lines = p.StandardOutput.ReadToEnd().Split('\n');
        p.WaitForExit();
        var mem = lines.First(l => l.StartsWith("Mem:")).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var swap = lines.First(l => l.StartsWith("Swap:")).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var m = new HostInfoReader(guests: () => Array.Empty<Qemu.KvmGuest>()).ReadMemory();
        Assert.Equal(long.Parse(mem[1]), m.TotalBytes);
        Assert.Equal(long.Parse(swap[1]), m.SwapTotalBytes);
    }

    [Fact]
    public void ReaderOnAFakeOldHostWithKsm()
    {
        using var t = new TempDir();
        t.Write("proc/meminfo", Fixture.Text("host/meminfo-centos6"));
        t.Write("proc/cpuinfo", Fixture.Text("host/cpuinfo-xeon-2s-ht"));
        t.Write("proc/loadavg", "12.50 10.25 9.00 7/2034 99120\n");
        t.Write("sys/kernel/mm/ksm/run", "1\n");
        t.Write("sys/kernel/mm/ksm/pages_sharing", "1000\n");
        t.Write("sys/kernel/mm/ksm/ksm_zero_pages", "24\n");
        t.Write("sys/kernel/mm/ksm/pages_shared", "100\n");
        var guests = new[]
        {
            new Qemu.KvmGuest { Name = "win7-1", Id = 10, MemoryMB = 1024, CpuCount = 1 },
            new Qemu.KvmGuest { Name = "win7-2", Id = 11, MemoryMB = 2048, CpuCount = 2 },
        };
        var reader = new HostInfoReader(new HostRoots(Sys: t.File("sys"), Proc: t.File("proc"), Dev: t.File("dev")), () => guests);
        var m = reader.ReadMemory();
        Assert.True(m.AvailableEstimated);
        Assert.Equal(1024L * Environment.SystemPageSize, m.KsmSavedBytes);
        Assert.Equal(3072L * 1024 * 1024, m.GuestCommittedBytes);
        Assert.Equal(2, m.GuestCount);
        var c = reader.ReadCpu();
        Assert.Equal(32, c.LogicalCpus);
        Assert.Equal(3, c.GuestVcpus);
        Assert.Equal(Math.Round(3 / 32.0, 3), c.VcpuRatio);
        Assert.Equal(12.5, c.LoadAverage1);
        Assert.Equal(7, c.RunnableTasks);
        Assert.False(c.KvmDeviceExists);
        Assert.Equal(c.Timestamp.Offset, TimeSpan.Zero);
    }

    [Fact]
    public void NoKsmMeansNullSavings()
    {
        using var t = new TempDir();
        t.Write("proc/meminfo", Fixture.Text("host/live/meminfo"));
        var reader = new HostInfoReader(new HostRoots(Sys: t.File("sys"), Proc: t.File("proc")), () => Array.Empty<Qemu.KvmGuest>());
        Assert.Null(reader.ReadMemory().KsmSavedBytes);
    }

    [Fact]
    public void BlogRaid10()
    {
        var arrays = MdStatParser.Parse(Fixture.Text("host/mdstat-blog-raid10"));
        Assert.Equal(2, arrays.Count);
        var a = arrays[0];
        Assert.Equal("md126", a.Name);
        Assert.Equal("raid10", a.Level);
        Assert.Equal("active", a.State);
        Assert.Null(a.ReadOnly);
        Assert.Equal(new[] { "sda1", "sdb1", "sdc1", "sdd1" }, a.Devices.Select(d => d.Device));
        Assert.Equal(new[] { 0, 1, 2, 3 }, a.Devices.Select(d => d.Role));
        Assert.Equal(1953260544, a.Blocks);
        Assert.Equal(1953260544L * 1024, a.SizeBytes);
        Assert.Equal(512, a.ChunkKB);
        Assert.Equal("1.2", a.SuperVersion);
        Assert.Equal("2 near-copies", a.Layout);
        Assert.Equal("UUUU", a.Health);
        Assert.Equal(4, a.RaidDisks);
        Assert.Equal(4, a.ActiveDisks);
        Assert.False(a.Degraded);
        Assert.Null(a.SyncAction);
        Assert.Equal("3/15 pages [12KB], 65536KB chunk", a.Bitmap);
        Assert.Equal("raid1", arrays[1].Level);
        Assert.Null(arrays[1].ChunkKB);
    }

    [Fact]
    public void DegradedArrays()
    {
        var arrays = MdStatParser.Parse(Fixture.Text("host/mdstat-degraded"));
        var md0 = arrays.Single(a => a.Name == "md0");
        Assert.True(md0.Degraded);
        Assert.Equal("U_", md0.Health);
        Assert.True(md0.Devices.Single(d => d.Device == "sdb1").Failed);
        Assert.False(md0.Devices.Single(d => d.Device == "sda1").Failed);
        var md1 = arrays.Single(a => a.Name == "md1");
        Assert.Equal("raid5", md1.Level);
        Assert.Equal(2, md1.Algorithm);
        Assert.Equal(512, md1.ChunkKB);
        Assert.Equal(3, md1.ActiveDisks);
        Assert.True(md1.Degraded);
        Assert.True(md1.Devices.Single(d => d.Device == "sdd").Spare);
        Assert.Equal(4, md1.Devices.Single(d => d.Device == "sdd").Role);
    }

    [Fact]
    public void RecoveryCheckResyncAndOtherLevels()
    {
        var arrays = MdStatParser.Parse(Fixture.Text("host/mdstat-recovery")).ToDictionary(a => a.Name);
        Assert.Equal(7, arrays.Count);
        var md2 = arrays["md2"];
        Assert.Equal("raid6", md2.Level);
        Assert.Equal(64, md2.ChunkKB);
        Assert.Equal("check", md2.SyncAction);
        Assert.Equal(15.2, md2.SyncPercent);
        Assert.Equal(TimeSpan.FromMinutes(171.3), md2.SyncFinish);
        Assert.Equal(161122, md2.SyncSpeedKBPerSec);
        Assert.False(md2.Degraded);
        var md1 = arrays["md1"];
        Assert.Equal("recovery", md1.SyncAction);
        Assert.Equal(8.5, md1.SyncPercent);
        Assert.Equal(180685, md1.SyncSpeedKBPerSec);
        Assert.True(md1.Degraded);
        var md3 = arrays["md3"];
        Assert.Equal("auto-read-only", md3.ReadOnly);
        Assert.Equal("resync", md3.SyncAction);
        Assert.Equal("PENDING", md3.SyncState);
        Assert.Null(md3.SyncPercent);
        Assert.True(arrays["md4"].Devices.Single(d => d.Device == "sdm1").Journal);
        Assert.True(arrays["md5"].Devices.Single(d => d.Device == "sdo1").WriteMostly);
        Assert.Equal("resync", arrays["md5"].SyncAction);
        Assert.Equal(52.9, arrays["md5"].SyncPercent);
        var md6 = arrays["md6"];
        Assert.Equal("inactive", md6.State);
        Assert.Null(md6.Level);
        Assert.All(md6.Devices, d => Assert.True(d.Spare));
        Assert.Equal(3906767024, md6.Blocks);
        Assert.Null(md6.Health);
        var md7 = arrays["md7"];
        Assert.Equal("raid0", md7.Level);
        Assert.Equal(256, md7.ChunkKB);
    }

    [Fact]
    public void NoArrays()
    {
        Assert.Empty(MdStatParser.Parse(Fixture.Text("host/mdstat-empty")));
        Assert.Empty(MdStatParser.Parse(""));
    }

    [Fact]
    public void NoMdDriverMeansNoArrays()
    {
        using var t = new TempDir();
        Directory.CreateDirectory(t.File("proc"));
        var reader = new HostInfoReader(new HostRoots(Proc: t.File("proc")), () => Array.Empty<Qemu.KvmGuest>());
        Assert.Empty(reader.ReadMdRaid());
        var e = Assert.Throws<KvmOcException>(() => reader.ReadMdRaid(t.File("saved-mdstat")));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        Assert.Equal(t.File("saved-mdstat"), e.Target);
    }

    [Fact]
    public void MdArraysRoundTripThroughJson()
    {
        var arrays = MdStatParser.Parse(Fixture.Text("host/mdstat-recovery"));
        var json = System.Text.Json.JsonSerializer.Serialize(arrays);
        var back = System.Text.Json.JsonSerializer.Deserialize<List<MdRaidArray>>(json)!;
        Assert.Equal(arrays.Select(a => a.Name), back.Select(a => a.Name));
        Assert.Equal(arrays.Select(a => a.SyncFinish), back.Select(a => a.SyncFinish));
    }
}
