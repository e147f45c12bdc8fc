using KvmOvercommit.Engine;
using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Io;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Iops;

/// <summary>The IOPS budget of Get-OvercommitReport on explicit inputs, and the fio probe on a capture and for real.</summary>
public class IopsBudgetTests
{
    static OvercommitInputs Host(int guests, double? capacity, long? limitSum = null, int limited = 0, double? peak = null, double? current = null) => new()
    {
        HostName = "h",
        LogicalCpus = 2,
        MemoryTotalBytes = 24L * 1024 * Units.MiB,
        MemoryAvailableBytes = 20L * 1024 * Units.MiB,
        KsmSavedBytes = 0,
        Guests = Enumerable.Range(1, guests).Select(i => new GuestFacts { Name = $"g{i}", MemoryBytes = 128 * Units.MiB, Vcpus = 1, RssBytes = 200 * Units.MiB, KsmMergingPages = 0 }).ToList(),
        DeviceIopsCapacity = capacity,
        DeviceIopsCapacitySource = capacity is null ? null : "given",
        IopsLimitSum = limitSum,
        GuestsWithIopsLimit = limited,
        PeakIops = peak,
        CurrentIops = current,
    };

    [Fact]
    public void EveryGuestLimitedTheLimitsAreTheBudget()
    {
        // The blog's figure: 5000 IOPS; 4 guests at 200 each use 800, so 21 more of 200 fit; memory allows far more.
        var r = OvercommitCalculator.Compute(Host(4, 5000, limitSum: 800, limited: 4, peak: 750, current: 700));
        Assert.Equal(5000, r.DeviceIopsCapacity);
        Assert.Equal(750, r.PeakIops);
        Assert.Equal(800, r.IopsLimitSum);
        Assert.Equal(0.16, r.IopsRatio);
        Assert.Equal(21, r.EstimatedAdditionalGuestsByIops);   // floor((5000 − 800) / 200)
        Assert.True(r.EstimatedAdditionalGuests > 21);
        Assert.Equal("Iops", r.LimitingResource);
        Assert.Contains(r.Explanation, l => l == "EstimatedAdditionalGuestsByIops = floor((capacity − IOPS in use) / IOPS per guest) = floor((5000 − 800) / 200) = 21; IOPS in use = the limits' sum 800; per guest = 800 / 4 = 200 (every guest has a limit)");
        Assert.Contains(r.Explanation, l => l.StartsWith("IopsRatio = IOPS limits / capacity = 800 / 5000 (given) = 0.16", StringComparison.Ordinal));
        Assert.Contains(r.Explanation, l => l.StartsWith("LimitingResource = Iops: memory allows ", StringComparison.Ordinal));
    }

    [Fact]
    public void WithoutLimitsTheMeasuredPeakIsTheBudgetAndMemoryCanBeTheLimit()
    {
        var r = OvercommitCalculator.Compute(Host(4, 100000, peak: 40, current: 20));
        Assert.Null(r.IopsRatio);
        Assert.Equal(9996, r.EstimatedAdditionalGuestsByIops); // floor((100000 − 40) / 10)
        Assert.Equal("Memory", r.LimitingResource);
        Assert.Contains(r.Explanation, l => l.Contains("the peak device IOPS 40; per guest = 40 / 4 = 10 (no guest has an IOPS limit", StringComparison.Ordinal));

        // Only some guests limited: the measured figure counts, and the explanation says why.
        var some = OvercommitCalculator.Compute(Host(4, 1000, limitSum: 200, limited: 1, peak: 400));
        Assert.Equal(0.2, some.IopsRatio);
        Assert.Equal(6, some.EstimatedAdditionalGuestsByIops); // floor((1000 − 400) / 100)
        Assert.Contains(some.Explanation, l => l.Contains("only 1 of 4 guests have a limit", StringComparison.Ordinal));
    }

    [Fact]
    public void LimitsAboveTheCapacityGiveNoMoreGuestsAndSayItIsOvercommitted()
    {
        var r = OvercommitCalculator.Compute(Host(10, 1000, limitSum: 2000, limited: 10));
        Assert.Equal(2, r.IopsRatio);
        Assert.Equal(0, r.EstimatedAdditionalGuestsByIops);
        Assert.Equal("Iops", r.LimitingResource);
        Assert.Contains(r.Explanation, l => l.Contains("promise more IOPS than the device has", StringComparison.Ordinal));
    }

    [Fact]
    public void WithoutCapacityIdleGuestsOrNoGuestsTheEstimateIsUnknownWithTheReason()
    {
        var none = OvercommitCalculator.Compute(Host(2, null, peak: 5));
        Assert.Null(none.EstimatedAdditionalGuestsByIops);
        Assert.Null(none.LimitingResource);
        Assert.Contains(none.Explanation, l => l.StartsWith("EstimatedAdditionalGuestsByIops: unknown — no device IOPS capacity", StringComparison.Ordinal));
        var idle = OvercommitCalculator.Compute(Host(2, 5000, peak: 0));
        Assert.Null(idle.EstimatedAdditionalGuestsByIops);
        Assert.Contains(idle.Explanation, l => l.Contains("the guests do no I/O now", StringComparison.Ordinal));
        var empty = OvercommitCalculator.Compute(Host(0, 5000));
        Assert.Null(empty.EstimatedAdditionalGuestsByIops);
        Assert.Contains(empty.Explanation, l => l.Contains("no guests are running, so there is no IOPS per guest", StringComparison.Ordinal));
    }

    [Fact]
    public void LimitSumCountsAThrottleGroupOncePerQemuAndOnlyFullyLimitedDrives()
    {
        KvmGuestIoLimit D(int pid, string drive, long iops, string? group, long rd = 0, long wr = 0) => new() { Id = pid, Drive = drive, Iops = iops, IopsRead = rd, IopsWrite = wr, Group = group, Throttled = iops + rd + wr > 0 };
        var drives = new[]
        {
            D(1, "virtio0", 200, "virtio0"), D(2, "virtio0", 200, "virtio0"),   // default groups: same name, different QEMUs
            D(3, "virtio0", 500, "web"), D(3, "virtio1", 500, "web"),           // one group of two drives
            D(4, "virtio0", 0, null, rd: 100, wr: 50),                           // read + write
            D(5, "virtio0", 0, null, rd: 100),                                   // reads only: not an IOPS limit
        };
        Assert.Equal(200 + 200 + 500 + 150, OvercommitReportBuilder.SumIopsLimits(drives));
        Assert.Null(OvercommitReportBuilder.SumIopsLimits(new[] { D(9, "virtio0", 0, null) }));
    }

    [Fact]
    public void FioJsonGivesReadAndWriteIopsAndLatencies()
    {
        var r = DeviceIopsCapacityProbe.Parse("fio: some warning\n" + Fixture.Text("host/fio-randrw-3.33.json"), "/srv");
        Assert.Equal((41517.5, 41340.7, 82858.1), (r.ReadIops, r.WriteIops, r.Iops));
        Assert.Equal((0.3287, 0.4321), (r.ReadLatencyMs!.Value, r.WriteLatencyMs!.Value));
        Assert.Equal(1.001, r.RuntimeSeconds);
        Assert.Equal("fio-3.33", r.FioVersion);
        Assert.Equal("FioOutputInvalid", Assert.Throws<KvmOcException>(() => DeviceIopsCapacityProbe.Parse("no json", "/srv")).ErrorId);
        Assert.Equal("FioOutputInvalid", Assert.Throws<KvmOcException>(() => DeviceIopsCapacityProbe.Parse("{\"jobs\":[]}", "/srv")).ErrorId);
    }

    [Fact]
    public void ProbeOptionsAreCheckedBeforeFioRuns()
    {
        using var dir = new TempDir();
        Assert.Equal("PathNotFound", Assert.Throws<KvmOcException>(() => DeviceIopsCapacityProbe.Validate(new DeviceIopsCapacityOptions { Path = dir.File("nope") })).ErrorId);
        Assert.Equal("BlockSizeInvalid", Assert.Throws<KvmOcException>(() => DeviceIopsCapacityProbe.Validate(new DeviceIopsCapacityOptions { Path = dir.Path, BlockSizeBytes = 1000 })).ErrorId);
        Assert.Equal("ReadPercentInvalid", Assert.Throws<KvmOcException>(() => DeviceIopsCapacityProbe.Validate(new DeviceIopsCapacityOptions { Path = dir.Path, ReadPercent = 101 })).ErrorId);
        var args = DeviceIopsCapacityProbe.Arguments(new DeviceIopsCapacityOptions(), "/srv/a:b");
        Assert.Contains("--filename=/srv/a\\:b", args);   // fio splits file names at ':'
        Assert.Contains("--direct=1", args);
        Assert.Contains("--rw=randrw", args);
    }
}

/// <summary>The fio probe on the real disk (it loads the disk for a few seconds, so it runs with the other host tests).</summary>
[Collection(HostSerialCollection.Name)]
public class DeviceIopsCapacityHostTests
{
    [SkippableFact]
    public async Task ARealFioProbeMeasuresTheDeviceAndRemovesItsFile()
    {
        Prereq.RequireTool("fio");
        var dir = Path.Combine("/var/tmp", "kvmoc-iops-capacity-" + Guid.NewGuid().ToString("N")[..8]); // /tmp may be tmpfs (no O_DIRECT)
        Directory.CreateDirectory(dir);
        try
        {
            var r = await DeviceIopsCapacityProbe.MeasureAsync(new DeviceIopsCapacityOptions { Path = dir, Duration = TimeSpan.FromSeconds(2), FileSizeBytes = 32 * Units.MiB }, NullObserver.Instance, default);
            Assert.True(r.Iops > 100, $"{r.Iops} IOPS");
            Assert.InRange(r.ReadIops / r.Iops, 0.3, 0.7);
            Assert.InRange(r.RuntimeSeconds, 1.5, 10);
            Assert.NotNull(r.Device);
            Assert.StartsWith("fio-", r.FioVersion, StringComparison.Ordinal);
            Assert.Empty(Directory.GetFileSystemEntries(dir)); // the probe file is gone

            // Cancelled while fio runs: the file is removed too.
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(700));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => DeviceIopsCapacityProbe.MeasureAsync(new DeviceIopsCapacityOptions { Path = dir, Duration = TimeSpan.FromSeconds(5), FileSizeBytes = 32 * Units.MiB }, NullObserver.Instance, cts.Token));
            Assert.Empty(Directory.GetFileSystemEntries(dir));

            // The report measures it itself and explains the budget.
            var report = await new OvercommitReportBuilder { MeasureCapacity = new DeviceIopsCapacityOptions { Path = dir, Duration = TimeSpan.FromSeconds(1), FileSizeBytes = 16 * Units.MiB } }
                .BuildAsync(10, 2, probeDisks: false, NullObserver.Instance, default);
            Assert.True(report.DeviceIopsCapacity > 100);
            Assert.StartsWith("measured (fio on " + dir, report.DeviceIopsCapacitySource, StringComparison.Ordinal);
            Assert.NotNull(report.PeakIops);
            Assert.True(report.PeakIops >= report.CurrentIops, $"peak {report.PeakIops} < average {report.CurrentIops}");
            Assert.Empty(Directory.GetFileSystemEntries(dir));
        }
        finally { Directory.Delete(dir, true); }
    }
}

/// <summary>The fleet pieces that need no host: the load commands, the key argument, ansible-inventory's JSON.</summary>
public class FleetUnitTests
{
    [Fact]
    public void IoLoadCommandsRunDetachedAndRandomWritesDrawANewBlockEachTime()
    {
        Assert.Equal("setsid sh -c \"echo \\$\\$ > /kvmoc-io-load.pid; exec timeout 30 sh -c 'while :; do dd if=/dev/zero of=/dev/vda bs=4096 count=256 oflag=direct 2>/dev/null; done'\" </dev/null >/dev/null 2>&1 & sleep 1", KvmOvercommit.Engine.Fleet.FleetReach.IoLoadCommand("Write", 30));
        // The stop ends that process group (the guest's busybox has no pkill).
        Assert.Equal("kill -TERM -$(cat /kvmoc-io-load.pid) 2>/dev/null; killall dd 2>/dev/null; rm -f /kvmoc-io-load.pid; true", KvmOvercommit.Engine.Fleet.FleetReach.StopIoLoadCommand);
        Assert.Contains("seek=\\$((RANDOM % 4096))", KvmOvercommit.Engine.Fleet.FleetReach.IoLoadCommand("RandomWrite"));
        Assert.Contains("iflag=direct", KvmOvercommit.Engine.Fleet.FleetReach.IoLoadCommand("read"));
        Assert.Equal("IoLoadInvalid", Assert.Throws<KvmOcException>(() => KvmOvercommit.Engine.Fleet.FleetReach.IoLoadCommand("Trim")).ErrorId);
    }

    [Fact]
    public void TheSshKeyGoesOnTheKernelCommandLineWithCommasForSpaces()
    {
        Assert.Equal("kvmoc.sshkey=ssh-ed25519,AAAAC3Nz,me@host", TinyGuestFleet.KernelArgumentForKey("ssh-ed25519 AAAAC3Nz me@host\n"));
        Assert.Equal("SshKeyInvalid", Assert.Throws<KvmOcException>(() => TinyGuestFleet.KernelArgumentForKey("not a key")).ErrorId);
        Assert.Equal("SshKeyInvalid", Assert.Throws<KvmOcException>(() => TinyGuestFleet.KernelArgumentForKey("ssh-rsa AAA,B")).ErrorId);
    }

    [Fact]
    public void AnsibleInventoryListGivesTheHosts()
    {
        const string list = """{"_meta":{"hostvars":{"web-2":{"ansible_host":"10.213.0.12"},"web-1":{"ansible_host":"10.213.0.11"}}},"all":{"children":["ungrouped","web"]},"web":{"hosts":["web-1","web-2"]}}""";
        Assert.Equal(new[] { "web-1", "web-2" }, KvmOvercommit.Engine.Fleet.FleetReach.HostsOf(list));
    }
}
