using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Qcow;

/// <summary>
/// A real guest on our overlays (issue 3: "writing through an overlay — qemu-io, and a guest once guests exist"):
/// the tiny guest writes its disk with O_DIRECT through a chain of two overlays written by QcowOverlayWriter on a raw
/// base. While it runs, QEMU holds every image of the chain (InUse); after it powers off, the top overlay holds the
/// guest's data and passes `qemu-img check`, and the middle overlay and the base are byte for byte what they were.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class QcowGuestWriteTests
{
    const long MiB = 1024 * 1024;

    [SkippableFact]
    public async Task AGuestWritingThroughOurOverlaysChangesOnlyTheTopOverlay()
    {
        QemuImg.Require();
        var qemuIo = Prereq.RequireTool("qemu-io");
        using var f = await GuestFixture.CreateAsync();
        var raw = f.Dir.File("base, 1.raw");
        QemuImg.CreateBase(raw, "raw", 64 * MiB);
        Assert.Equal(0, QemuImg.Exec(qemuIo, "-f", "raw", "-c", "write -P 0x5a 0 4M", raw).Code);
        var mid = QcowOverlayWriter.CreateMany(new[] { f.Dir.File("mid.qcow2") }, raw, new QcowOverlayOptions()).Single();
        var top = QcowOverlayWriter.CreateMany(new[] { f.Dir.File("guest ü.qcow2") }, mid.Path, new QcowOverlayOptions { RelativeBackingPath = true }).Single();
        Assert.Equal(new[] { mid.Path, raw }, top.BackingChain);
        var (rawHash, midHash, topHash) = (QemuImg.Sha256(raw), QemuImg.Sha256(mid.Path), QemuImg.Sha256(top.Path));

        var g = await f.StartAsync(f.TinyOptions(f.Name("qcow-write"), top.Path, "kvmoc.io=write"));
        await GuestFixture.WaitForSerialAsync(g, "KVMOC-READY");
        long writes = 0;
        for (var until = DateTime.UtcNow.AddSeconds(60); writes < 512 && DateTime.UtcNow < until; await Task.Delay(250))
        {
            await using var q = await QmpClient.ConnectAsync(g.QmpSocket!);
            writes = (await q.ExecuteAsync("query-blockstats"))[0].GetProperty("stats").GetProperty("wr_operations").GetInt64();
        }
        Assert.True(writes >= 512, $"the guest wrote {writes} times through the overlay in 60 s");
        Assert.All(new[] { top.Path, mid.Path, raw }, p => Assert.True(QcowReader.Read(p).InUse, $"{p} is not in use while the guest runs"));
        Assert.Equal("QcowImageInUse", Assert.Throws<KvmOcException>(() =>
            QcowOverlayWriter.Plan(top.Path, QcowOverlayWriter.OpenBacking(mid.Path, null), new QcowOverlayOptions { Force = true })).ErrorId);

        var (stopped, _) = await GuestStopper.StopAsync(g, new GuestStopOptions { Timeout = TimeSpan.FromSeconds(30) }, NullObserver.Instance);
        Assert.Equal("stopped", stopped.State);
        Assert.Empty(f.Running());

        Assert.NotEqual(topHash, QemuImg.Sha256(top.Path));
        QemuImg.Check(top.Path);
        QemuImg.AssertAgrees(QemuImg.Info(top.Path), QcowReader.Read(top.Path));
        Assert.Equal(midHash, QemuImg.Sha256(mid.Path));
        Assert.Equal(rawHash, QemuImg.Sha256(raw));
        // the guest's zeros in its first MiB, the base's pattern below them; the base still has its own
        var guestView = QemuImg.Exec(qemuIo, "-f", "qcow2", "-r", "-c", "read -P 0 0 1M", "-c", "read -P 0x5a 1M 3M", top.Path);
        Assert.True(guestView.Code == 0 && !guestView.Out.Contains("Pattern verification failed"), guestView.Out + guestView.Err);
        var baseView = QemuImg.Exec(qemuIo, "-f", "raw", "-r", "-c", "read -P 0x5a 0 4M", raw);
        Assert.True(baseView.Code == 0 && !baseView.Out.Contains("Pattern verification failed"), baseView.Out + baseView.Err);
    }
}
