using System.Text.Json;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Iops;

/// <summary>Set-/Get-KvmGuestIoLimit's engine on query-block answers captured from QEMU 7.2 on this machine.</summary>
public class IoLimitUnitTests
{
    // query-block of a guest started with -drive …,if=virtio,throttling.iops-total=200 (trimmed image details).
    const string Throttled = """
    [{"io-status":"ok","device":"virtio0","locked":false,"removable":false,
      "inserted":{"iops_rd":0,"detect_zeroes":"off","iops_wr":0,"group":"virtio0","ro":false,"node-name":"#block178",
                  "backing_file_depth":0,"drv":"qcow2","iops":200,"bps_wr":0,"write_threshold":0,"encrypted":false,"bps":0,"bps_rd":0,
                  "cache":{"no-flush":false,"direct":false,"writeback":true},"file":"d.qcow2"},
      "qdev":"/machine/peripheral-anon/device[0]/virtio-backend","type":"unknown"},
     {"device":"ide1-cd0","locked":false,"removable":true,"qdev":"/machine/unattached/device[23]","tray_open":false,"type":"unknown"}]
    """;
    // after block_set_io_throttle iops=300 iops_max=600 iops_max_length=5 group=g1
    const string Burst = """
    [{"device":"virtio0","qdev":"/machine/peripheral-anon/device[0]/virtio-backend",
      "inserted":{"iops_rd":0,"iops_max_length":5,"iops_wr":0,"group":"g1","iops":300,"bps_wr":0,"bps":0,"bps_rd":0,"iops_max":600}}]
    """;
    const string Unthrottled = """
    [{"device":"","qdev":"/machine/peripheral/vd0/virtio-backend","inserted":{"iops_rd":0,"iops_wr":0,"iops":0,"bps_wr":0,"bps":0,"bps_rd":0,"node-name":"n1"}}]
    """;

    static readonly KvmGuest Guest = new() { Name = "g1", Id = 42, QmpSocket = "/run/x/qmp.sock" };

    static List<KvmGuestIoLimit> Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return KvmGuestIoLimits.FromQueryBlock(doc.RootElement, Guest, DateTimeOffset.UnixEpoch);
    }

    [Fact]
    public void QueryBlockGivesOneRowPerDriveWithAMedium()
    {
        var d = Assert.Single(Parse(Throttled)); // the empty CD-ROM has no "inserted"
        Assert.Equal(("g1", 42, "virtio0", "/machine/peripheral-anon/device[0]/virtio-backend"), (d.Name, d.Id, d.Drive, d.QdevId));
        Assert.Equal(200, d.Iops);
        Assert.True(d.Throttled);
        Assert.Equal("virtio0", d.Group);
        Assert.Equal(0, d.IopsMax);

        var b = Assert.Single(Parse(Burst));
        Assert.Equal((300L, 600L, 5L, "g1"), (b.Iops, b.IopsMax, b.IopsMaxLength, b.Group));

        var u = Assert.Single(Parse(Unthrottled));
        Assert.Equal("vd0", u.Drive); // no -drive id: the device id from the qdev path
        Assert.False(u.Throttled);
        Assert.Null(u.Group);
    }

    [Fact]
    public void ArgumentsAlwaysCarryTheSixBaseLimitsAndTheQdevId()
    {
        var b = Assert.Single(Parse(Burst));
        var a = KvmGuestIoLimits.Arguments(b);
        Assert.Equal("""{"id":"/machine/peripheral-anon/device[0]/virtio-backend","bps":0,"bps_rd":0,"bps_wr":0,"iops":300,"iops_rd":0,"iops_wr":0,"iops_max":600,"iops_max_length":5,"group":"g1"}""", a.ToJsonString());
        Assert.Equal("iops=300 iops_max=600 iops_max_length=5 group=g1", KvmGuestIoLimits.Describe(b));
        var none = KvmGuestIoLimits.Merge(b, new IoLimitChange { Iops = 0 });
        Assert.Equal("none (all limits removed)", KvmGuestIoLimits.Describe(none));
        Assert.DoesNotContain("group", KvmGuestIoLimits.Arguments(none).ToJsonString()); // QEMU leaves the group when nothing is throttled
    }

    [Fact]
    public void MergeKeepsWhatIsNotGivenAndZeroRemovesALimitWithItsBurst()
    {
        var b = Assert.Single(Parse(Burst));
        var w = KvmGuestIoLimits.Merge(b, new IoLimitChange { Bps = 1_000_000 });
        Assert.Equal((300L, 600L, 5L, 1_000_000L, "g1"), (w.Iops, w.IopsMax, w.IopsMaxLength, w.Bps, w.Group));
        var off = KvmGuestIoLimits.Merge(b, new IoLimitChange { Iops = 0 });
        Assert.Equal((0L, 0L, 0L), (off.Iops, off.IopsMax, off.IopsMaxLength));
        Assert.False(off.Throttled);
        Assert.Equal(300, b.Iops); // the current reading is not changed
    }

    [Fact]
    public void ATotalLimitReplacesReadWriteLimitsOfItsKindAndTheOtherWayRound()
    {
        var b = Assert.Single(Parse(Burst));
        var rw = KvmGuestIoLimits.Merge(b, new IoLimitChange { IopsRead = 100, IopsWrite = 50 });
        Assert.Equal((0L, 100L, 50L, 0L), (rw.Iops, rw.IopsRead, rw.IopsWrite, rw.IopsMax)); // iops_max went with iops
        var total = KvmGuestIoLimits.Merge(rw, new IoLimitChange { Iops = 80 });
        Assert.Equal((80L, 0L, 0L), (total.Iops, total.IopsRead, total.IopsWrite));
    }

    [Fact]
    public void NegativeLimitsAndEmptyGroupsAreRefusedBeforeQemuIsAsked()
    {
        var e = Assert.Throws<KvmOcException>(() => KvmGuestIoLimits.Validate(new IoLimitChange { BpsWrite = -1 }));
        Assert.Equal(("IoLimitInvalid", ErrorKind.InvalidArgument), (e.ErrorId, e.Kind));
        Assert.Equal("IoLimitGroupInvalid", Assert.Throws<KvmOcException>(() => KvmGuestIoLimits.Validate(new IoLimitChange { Group = "a\nb" })).ErrorId);
        Assert.True(new IoLimitChange().IsEmpty);
        Assert.False(new IoLimitChange { Iops = 0 }.IsEmpty);
    }

    [Fact]
    public void StartOptionsPutTheLimitsOnTheDrive()
    {
        using var dir = new TempDir();
        var disk = System.IO.Path.Combine(dir.Path, "lim.qcow2");
        File.WriteAllBytes(disk, new byte[512]);
        var plan = GuestLauncher.Plan(new GuestStartOptions { Name = "iops-plan-" + Guid.NewGuid().ToString("N")[..6], DiskPath = disk, Accelerator = GuestAccelerator.Tcg, NoVnc = true, IopsLimit = 200, BpsLimit = 1048576, QemuPath = Prereq.RequireTool("qemu-system-x86_64") }, NullObserver.Instance);
        var drive = plan.Arguments[Array.IndexOf(plan.Arguments, "-drive") + 1];
        Assert.EndsWith(",if=virtio,throttling.iops-total=200,throttling.bps-total=1048576", drive);
        var e = Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(new GuestStartOptions { Name = "iops-nodisk", Kernel = disk, IopsLimit = 5, QemuPath = plan.Executable }, NullObserver.Instance));
        Assert.Equal("IoLimitNeedsDisk", e.ErrorId);
    }
}

/// <summary>The limits on a real tiny guest under TCG writing its disk flat out (kvmoc.io=write).</summary>
[Collection(HostSerialCollection.Name)]
public class IoLimitHostTests
{
    [SkippableFact]
    public async Task AnIopsLimitCapsAWritingGuestAndRemovingItLetsItRun()
    {
        using var f = await GuestFixture.CreateAsync();
        var disk = f.CreateDisk(f.Dir.File("limited.qcow2"), size: "16M");
        var o = f.TinyOptions(f.Name("limit"), disk, "kvmoc.io=write");
        o.IopsLimit = 200;
        var g = await f.StartAsync(o);
        await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);

        var read = Assert.Single(await KvmGuestIoLimits.GetAsync(g, null, default));
        Assert.Equal((200L, true), (read.Iops, read.Throttled));
        var limited = await SampleAsync(g, 10);
        Assert.InRange(limited, 20, 210);

        // -WhatIf: a plan reads the limits and changes nothing.
        var plans = await KvmGuestIoLimits.PlanAsync(g, null, new IoLimitChange { Iops = 0 }, default);
        Assert.Equal(200, Assert.Single(await KvmGuestIoLimits.GetAsync(g, null, default)).Iops);
        var plan = Assert.Single(plans);
        Assert.Equal("Set I/O limits: none (all limits removed)", plan.Action);

        var after = await KvmGuestIoLimits.ApplyAsync(plan, NullObserver.Instance, default);
        Assert.Equal((0L, false), (after.Iops, after.Throttled));
        Assert.Equal(200, plan.Current.Iops); // what -PassThru returns, to restore
        var free = await SampleAsync(g, 5);
        Assert.True(free > 3 * 210, $"unlimited {free} IOPS, limited {limited}");

        // Restore from the previous reading, and a burst QEMU refuses becomes IoLimitInvalid.
        var back = await KvmGuestIoLimits.ApplyAsync((await KvmGuestIoLimits.PlanAsync(g, null, Restore(plan.Current), default)).Single(), NullObserver.Instance, default);
        Assert.Equal(200, back.Iops);
        var bad = (await KvmGuestIoLimits.PlanAsync(g, null, new IoLimitChange { Iops = 0, IopsMax = 100 }, default)).Single();
        Assert.Equal("IoLimitInvalid", (await Assert.ThrowsAsync<KvmOcException>(() => KvmGuestIoLimits.ApplyAsync(bad, NullObserver.Instance, default))).ErrorId);
        Assert.Equal("DriveNotFound", (await Assert.ThrowsAsync<KvmOcException>(() => KvmGuestIoLimits.GetAsync(g, new[] { "nosuch" }, default))).ErrorId);
    }

    static IoLimitChange Restore(KvmGuestIoLimit l) => new() { Iops = l.Iops, IopsRead = l.IopsRead, IopsWrite = l.IopsWrite, Bps = l.Bps, BpsRead = l.BpsRead, BpsWrite = l.BpsWrite, IopsMax = l.IopsMax, Group = l.Group };

    static async Task<double> SampleAsync(KvmGuest g, int seconds)
    {
        var rows = new List<KvmGuestIops>();
        var errors = new List<KvmOcException>();
        await new KvmGuestIopsSampler().RunAsync(new[] { g }, TimeSpan.FromSeconds(seconds), 1, rows.Add, errors.Add, NullObserver.Instance, default);
        Assert.Empty(errors);
        return Assert.Single(rows).Iops;
    }
}
