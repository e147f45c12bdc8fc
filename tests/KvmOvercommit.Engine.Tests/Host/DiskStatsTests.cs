using KvmOvercommit.Engine.Io;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Host;

public class DiskStatsTests
{
    [Fact]
    public void FourteenFieldLinesOfKernel310()
    {
        var all = DiskStatsParser.Parse(Fixture.Text("host/diskstats-3.10"), out int skipped);
        Assert.Equal(0, skipped);
        Assert.Equal(10, all.Count);
        var sda = all.Single(r => r.Name == "sda");
        Assert.Equal(14, sda.FieldCount);
        Assert.Equal(8, sda.Major);
        Assert.Equal(1538044UL, sda.ReadIos);
        Assert.Equal(298830144UL, sda.WriteSectors);
        Assert.Equal(6120334UL, sda.IoTicks);
        Assert.Equal(199070312UL, sda.TimeInQueue);
        Assert.Null(sda.DiscardIos);
        Assert.Null(sda.FlushIos);
    }

    [Fact]
    public void EighteenFieldLinesOfKernel418()
    {
        var nvme = DiskStatsParser.Parse(Fixture.Text("host/diskstats-4.18")).Single(r => r.Name == "nvme0n1");
        Assert.Equal(18, nvme.FieldCount);
        Assert.Equal(103311UL, nvme.DiscardIos);
        Assert.Equal(82644880UL, nvme.DiscardSectors);
        Assert.Equal(1203UL, nvme.DiscardTicks);
        Assert.Null(nvme.FlushIos);
    }

    [Fact]
    public void TwentyFieldLinesOfThisHost()
    {
        var vda = DiskStatsParser.Parse(Fixture.Text("host/live/diskstats")).Single(r => r.Name == "vda");
        Assert.Equal(20, vda.FieldCount);
        Assert.Equal(69112UL, vda.ReadIos);
        Assert.Equal(6011UL, vda.FlushIos);
        Assert.Equal(1726UL, vda.FlushTicks);
    }

    [Fact]
    public void OldPartitionLinesAndGarbage()
    {
        var all = DiskStatsParser.Parse("   3    1 hda1 35486 38030 38030 38030\nnot a line\n   8 0 sda x y z\n", out int skipped);
        var hda1 = Assert.Single(all);
        Assert.Equal(7, hda1.FieldCount);
        Assert.Equal(35486UL, hda1.ReadIos);
        Assert.Equal(38030UL, hda1.WriteSectors);
        Assert.Equal(2, skipped);
    }

    static DiskStatRecord Rec(ulong rd, ulong rsec, ulong rticks, ulong wr, ulong wsec, ulong wticks, ulong ioticks, ulong queue, ulong? dc = null, ulong? fl = null)
        => new() { Name = "sdx", ReadIos = rd, ReadSectors = rsec, ReadTicks = rticks, WriteIos = wr, WriteSectors = wsec, WriteTicks = wticks, IoTicks = ioticks, TimeInQueue = queue,
                   DiscardIos = dc, DiscardSectors = dc is null ? null : dc * 8, DiscardTicks = dc is null ? null : dc, FlushIos = fl, FlushTicks = fl is null ? null : fl * 2 };

    [Fact]
    public void IostatArithmetic()
    {
        var a = Rec(1000, 8000, 500, 2000, 16000, 3000, 10000, 40000, dc: 10, fl: 5);
        var b = Rec(1400, 11200, 900, 6000, 48000, 11000, 11500, 52000, dc: 30, fl: 15);
        var r = DeviceIopsSampler.Compute("sdx", a, b, 2.0, DateTimeOffset.UnixEpoch);
        Assert.Equal(200, r.ReadsPerSec);
        Assert.Equal(2000, r.WritesPerSec);
        Assert.Equal(10, r.DiscardsPerSec);
        Assert.Equal(5, r.FlushesPerSec);
        Assert.Equal(2210, r.Iops); // sysstat 12's tps: reads + writes + discards
        Assert.Equal(3200 * 512 / 2.0, r.ReadBytesPerSec);
        Assert.Equal(32000 * 512 / 2.0, r.WriteBytesPerSec);
        Assert.Equal(1.0, r.ReadAwaitMs);   // 400 ms / 400 reads
        Assert.Equal(2.0, r.WriteAwaitMs);  // 8000 ms / 4000 writes
        Assert.Equal(1.0, r.DiscardAwaitMs);
        Assert.Equal(2.0, r.FlushAwaitMs);
        Assert.Equal(6.0, r.AverageQueueSize); // 12000 ms weighted / 2000 ms
        Assert.Equal(75.0, r.UtilizationPercent); // 1500 ms busy of 2000 ms
    }

    [Fact]
    public void IdleDeviceAndMissingKernelFields()
    {
        var a = Rec(1, 1, 1, 1, 1, 1, 1, 1);
        var r = DeviceIopsSampler.Compute("sdx", a, a, 1.0, DateTimeOffset.UnixEpoch);
        Assert.Equal(0, r.Iops);
        Assert.Equal(0, r.ReadAwaitMs);
        Assert.Null(r.DiscardsPerSec);
        Assert.Null(r.FlushAwaitMs);
    }

    [Fact]
    public void CountersWrapAt32Bits()
    {
        Assert.Equal(20UL, DeviceIopsSampler.Delta(uint.MaxValue - 9, 10));
        Assert.Equal(5UL, DeviceIopsSampler.Delta(10, 15));
        Assert.Equal(0UL, DeviceIopsSampler.Delta(ulong.MaxValue - 5, 3)); // a 64-bit counter going back was reset
    }

    [Fact]
    public void TotalRowSumsRatesAndWeighsAwaits()
    {
        var x = DeviceIopsSampler.Compute("a", Rec(0, 0, 0, 0, 0, 0, 0, 0), Rec(100, 800, 100, 0, 0, 0, 500, 1000), 1, DateTimeOffset.UnixEpoch);
        var y = DeviceIopsSampler.Compute("b", Rec(0, 0, 0, 0, 0, 0, 0, 0), Rec(300, 2400, 900, 0, 0, 0, 900, 3000), 1, DateTimeOffset.UnixEpoch);
        var t = DeviceIopsSampler.Sum(new[] { x, y });
        Assert.Equal("Total", t.Device);
        Assert.Equal(400, t.ReadsPerSec);
        Assert.Equal(2.5, t.ReadAwaitMs); // (100×1 + 300×3) / 400
        Assert.Equal(4.0, t.AverageQueueSize);
        Assert.Equal(90, t.UtilizationPercent);
    }

    [Fact]
    public void DefaultSelectionWithoutSysBlockUsesNameHeuristic()
    {
        var names = DiskStatsParser.Parse(Fixture.Text("host/diskstats-3.10")).Select(r => r.Name).ToList();
        Assert.Equal(new[] { "sda", "sdb", "md126", "dm-0", "dm-1" }, BlockDevices.Select(names, null, null));
        var nvme = DiskStatsParser.Parse(Fixture.Text("host/diskstats-4.18")).Select(r => r.Name).ToList();
        Assert.Equal(new[] { "nvme0n1", "dm-0" }, BlockDevices.Select(nvme, null, null));
        Assert.Equal(new[] { "zram0" }, BlockDevices.Select(nvme, null, new[] { "zram0" }));
        Assert.Equal(new[] { "nvme0n1", "nvme0n1p1", "nvme0n1p2" }, BlockDevices.Select(nvme, null, new[] { "nvme*" }));
    }

    [Fact]
    public void DefaultSelectionUsesSysBlock()
    {
        using var t = new TempDir();
        foreach (var d in new[] { "vda", "loop0", "zram0", "md127", "dm-0", "cciss!c0d0" }) Directory.CreateDirectory(t.File($"sys/block/{d}"));
        var roots = new HostRoots(Sys: t.File("sys"));
        var names = new List<string> { "loop0", "vda", "vda1", "zram0", "md127", "dm-0", "cciss/c0d0", "cciss/c0d0p1" };
        Assert.Equal(new[] { "vda", "md127", "dm-0", "cciss/c0d0" }, BlockDevices.Select(names, BlockDevices.ReadWholeDisks(roots), Array.Empty<string>(), roots));
        Assert.Equal(new[] { "loop0", "vda" }, BlockDevices.Select(names, BlockDevices.ReadWholeDisks(roots), new[] { "loop0", "/dev/vda" }, roots));
    }

    [Fact]
    public void UnknownDeviceIsNotFoundAndListsTheDevicesThatExist()
    {
        var names = DiskStatsParser.Parse(Fixture.Text("host/diskstats-3.10")).Select(r => r.Name).ToList();
        var e = Assert.Throws<KvmOcException>(() => BlockDevices.Select(names, null, new[] { "sda", "sdz" }));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        Assert.Equal("DeviceNotFound", e.ErrorId);
        Assert.Equal("sdz", e.Target);
        Assert.Contains("'sdz'", e.Message);
        Assert.Contains("sda, sdb, md126, dm-0, dm-1, loop0, ram0", e.Message);
        Assert.Contains("3 partitions", e.Message);
        // A wildcard that matches nothing is not an error (PowerShell convention).
        Assert.Empty(BlockDevices.Select(names, null, new[] { "nvme*" }));
    }

    [Fact]
    public async Task UnknownDeviceOnThisHost()
    {
        var sampler = new DeviceIopsSampler();
        var e = await Assert.ThrowsAsync<KvmOcException>(async () =>
        {
            await foreach (var _ in sampler.SampleAsync(new DeviceIopsOptions { Device = new[] { "nosuchdisk0" } })) { }
        });
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        foreach (var d in BlockDevices.ReadWholeDisks(HostRoots.Default)!) Assert.Contains(d, e.Message);
    }

    [Fact]
    public async Task SamplerStreamsDeltasOverTheElapsedTime()
    {
        using var t = new TempDir();
        var proc = t.File("proc");
        t.Write("proc/diskstats", " 254 0 vda 100 0 800 50 200 0 1600 100 0 1000 2000 0 0 0 0 10 5\n   7 0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
        int step = 0;
        var sampler = new DeviceIopsSampler(new HostRoots(Sys: t.File("nosys"), Proc: proc), async (delay, ct) =>
        {
            await Task.Delay(50, ct);
            step++;
            File.WriteAllText(Path.Combine(proc, "diskstats"), $" 254 0 vda {100 + 10 * step} 0 {800 + 80 * step} 50 {200 + 30 * step} 0 1600 100 0 1000 2000 0 0 0 0 10 5\n");
        });
        var rows = new List<DeviceIops>();
        await foreach (var r in sampler.SampleAsync(new DeviceIopsOptions { Interval = TimeSpan.FromMilliseconds(50), Count = 3, Total = true }))
            rows.Add(r);
        Assert.Equal(6, rows.Count); // vda + Total, three times; loop0 is not watched by default
        Assert.Equal(new[] { "vda", "Total", "vda", "Total", "vda", "Total" }, rows.Select(r => r.Device));
        Assert.Equal(new[] { 1, 1, 2, 2, 3, 3 }, rows.Select(r => r.Sample));
        foreach (var r in rows.Where(r => r.Device == "vda"))
        {
            Assert.InRange(r.IntervalSeconds, 0.03, 5);
            Assert.Equal(10, r.ReadsPerSec * r.IntervalSeconds, 6);
            Assert.Equal(30, r.WritesPerSec * r.IntervalSeconds, 6);
            Assert.Equal(40, r.Iops * r.IntervalSeconds, 6);
            Assert.Equal(80 * 512, r.ReadBytesPerSec * r.IntervalSeconds, 3);
        }
    }

    [Fact]
    public async Task CancellationStopsAContinuousSampler()
    {
        using var cts = new CancellationTokenSource();
        var sampler = new DeviceIopsSampler();
        int last = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var r in sampler.SampleAsync(new DeviceIopsOptions { Interval = TimeSpan.FromMilliseconds(20), Count = null, Total = true }, ct: cts.Token))
            {
                last = r.Sample;
                if (r.Sample == 3) cts.Cancel();
            }
        });
        Assert.Equal(3, last);
    }

    [Fact]
    public void ScheduleSkipsMissedDeadlinesInsteadOfReadingBackToBack()
    {
        var interval = TimeSpan.FromSeconds(10);
        long Ago(double intervals) => System.Diagnostics.Stopwatch.GetTimestamp() - (long)(intervals * 10 * System.Diagnostics.Stopwatch.Frequency);
        Assert.InRange(Schedule.NextDue(Ago(2.4), interval).TotalSeconds, 5.5, 6.0);   // 0.6 intervals to the 3rd grid point
        Assert.InRange(Schedule.NextDue(Ago(2.6), interval).TotalSeconds, 13.5, 14.0);  // under half an interval to the 3rd: the 4th
        Assert.InRange(Schedule.NextDue(Ago(2.97), interval).TotalSeconds, 10.0, 10.3); // too close to the 3rd: the 4th
        Assert.InRange(Schedule.NextDue(Ago(0), interval).TotalSeconds, 9.9, 10.0);
    }

    [Fact]
    public void WholeDiskBehindAFile()
    {
        var disk = BlockDevices.WholeDiskOf(AppContext.BaseDirectory);
        Prereq.Require(disk is not null, "the test folder on a block device");
        Assert.Contains(disk!, BlockDevices.ReadWholeDisks(HostRoots.Default)!);
    }

    [Fact]
    public async Task BadIntervalIsInvalidArgument()
    {
        var e = await Assert.ThrowsAsync<KvmOcException>(async () =>
        {
            await foreach (var _ in new DeviceIopsSampler().SampleAsync(new DeviceIopsOptions { Interval = TimeSpan.Zero })) { }
        });
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
    }
}
