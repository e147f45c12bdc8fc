using System.Diagnostics;
using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Tests.GuestOps;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Qcow;

/// <summary>
/// Our overlays used by real QEMU: writes through an overlay land in the overlay and never in the base, and an image a
/// running QEMU (qemu-io, qemu-system-x86_64 under TCG) holds is reported InUse and never replaced, even with -Force.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class QcowRealQemuTests
{
    const long MiB = 1024 * 1024;

    [SkippableFact]
    public void WritingThroughAnOverlayChangesTheOverlayAndLeavesTheBaseIdentical()
    {
        QemuImg.Require();
        var qemuIo = Prereq.RequireTool("qemu-io");
        using var dir = new TempDir("kvmoc-qcow io");
        var basePath = dir.File("base, v3.qcow2");
        QemuImg.CreateBase(basePath, "qcow2", 64 * MiB);
        Assert.Equal(0, QemuImg.Exec(qemuIo, "-f", "qcow2", "-c", "write -P 0x5a 0 4M", basePath).Code); // a base with data
        var rawBase = dir.File("base.raw");
        QemuImg.CreateBase(rawBase, "raw", 64 * MiB);
        foreach (var (b, relative) in new[] { (basePath, false), (rawBase, true) })
        {
            var baseHash = QemuImg.Sha256(b);
            var overlays = QcowOverlayWriter.CreateMany(new[] { "g1", "g2" }.Select(n => dir.File($"{n}-{Path.GetFileName(b)}.qcow2")), b,
                new QcowOverlayOptions { RelativeBackingPath = relative, ClusterSize = 4096 }).ToList();
            var top = QcowOverlayWriter.CreateMany(new[] { overlays[0].Path + ".top" }, overlays[0].Path, new QcowOverlayOptions()).Single();
            foreach (var o in overlays.Append(top))
            {
                var before = QemuImg.Sha256(o.Path);
                var (code, output, err) = QemuImg.Exec(qemuIo, "-f", "qcow2", "-c", "write -P 0xa5 1M 3M", "-c", "write -z 8M 64k", "-c", "read -P 0xa5 1M 3M", o.Path);
                Assert.True(code == 0 && !output.Contains("Pattern verification failed"), $"{o.Path}: {output} {err}");
                if (b == basePath)
                {
                    var rd = QemuImg.Exec(qemuIo, "-f", "qcow2", "-r", "-c", "read -P 0x5a 0 1M", "-c", "read -P 0x5a 4M 0", o.Path);
                    Assert.DoesNotContain("Pattern verification failed", rd.Out);
                }
                Assert.NotEqual(before, QemuImg.Sha256(o.Path));
                QemuImg.Check(o.Path);
                Assert.Equal(baseHash, QemuImg.Sha256(b));
                var read = QcowReader.Read(o.Path);
                QemuImg.AssertAgrees(QemuImg.Info(o.Path), read);
            }
            Assert.Equal(baseHash, QemuImg.Sha256(b));
        }
    }

    [SkippableFact]
    public void AnImageQemuIoHoldsIsInUseAndNeverReplaced()
    {
        QemuImg.Require();
        var qemuIo = Prereq.RequireTool("qemu-io");
        using var dir = new TempDir("kvmoc-qcow");
        var (basePath, guest) = GuestOnBase(dir);
        Assert.False(QcowReader.Read(guest).InUse);
        // qemu-io keeps the image open (and locked) while it waits for commands on stdin
        var psi = new ProcessStartInfo(qemuIo) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-f", "qcow2", guest }) psi.ArgumentList.Add(a);
        using var holder = Process.Start(psi)!;
        try
        {
            WaitUntil(() => QcowReader.ReadHeader(guest).InUse, "qemu-io to lock the image");
            AssertHeldAndProtected(guest, basePath);
        }
        finally
        {
            holder.StandardInput.WriteLine("quit");
            if (!holder.WaitForExit(5000)) holder.Kill();
        }
        WaitUntil(() => !QcowReader.ReadHeader(guest).InUse, "qemu-io to release the lock");
        var replaced = QcowOverlayWriter.CreateMany(new[] { guest }, basePath, new QcowOverlayOptions { Force = true }).Single();
        Assert.False(replaced.InUse);
    }

    [SkippableFact]
    public void AnImageARunningQemuSystemHoldsIsInUseAndNeverReplaced()
    {
        QemuImg.Require();
        var qemu = Prereq.RequireTool("qemu-system-x86_64");
        using var dir = new TempDir("kvmoc-qcow");
        var (basePath, guest) = GuestOnBase(dir);
        var hash = QemuImg.Sha256(guest);
        using (new HandStartedQemu(qemu, "-accel", "tcg", "-m", "32", "-S", "-drive", $"file={guest},format=qcow2,if=virtio"))
        {
            AssertHeldAndProtected(guest, basePath);
            Assert.Equal(hash, QemuImg.Sha256(guest));
            // qemu-img itself agrees: it cannot take the lock
            Assert.NotEqual(0, QemuImg.Exec("qemu-img", "info", guest).Code);
            QemuImg.AssertAgrees(QemuImg.Info(guest, shared: true), QcowReader.Read(guest));
        }
        WaitUntil(() => !QcowReader.ReadHeader(guest).InUse, "QEMU to release the lock");
    }

    /// <summary>A qcow2 base made by qemu-img and one overlay of ours on it.</summary>
    static (string Base, string Guest) GuestOnBase(TempDir dir)
    {
        var basePath = dir.File("base.qcow2");
        QemuImg.CreateBase(basePath, "qcow2", 16 * MiB);
        return (basePath, QcowOverlayWriter.CreateMany(new[] { dir.File("win7-1.qcow2") }, basePath, new QcowOverlayOptions()).Single().Path);
    }

    static void AssertHeldAndProtected(string guest, string basePath)
    {
        var img = QcowReader.Read(guest);
        Assert.True(img.InUse);
        Assert.True(QcowReader.Read(basePath).InUse); // QEMU holds the whole chain (the backing with shared read locks)
        var b = QcowOverlayWriter.OpenBacking(basePath, null); // reading a base in use is fine
        var e = Assert.Throws<KvmOcException>(() => QcowOverlayWriter.Plan(guest, b, new QcowOverlayOptions { Force = true }));
        Assert.Equal(ErrorKind.ResourceBusy, e.Kind);
        Assert.Equal("QcowImageInUse", e.ErrorId);
        Assert.Equal(guest, e.Target);
        // without -Force it is busy as well (the lock is checked first: the more useful answer)
        Assert.Equal(ErrorKind.ResourceBusy, Assert.Throws<KvmOcException>(() => QcowOverlayWriter.Plan(guest, b, new QcowOverlayOptions())).Kind);
        var errors = new List<KvmOcException>();
        Assert.Empty(QcowOverlayWriter.CreateMany(new[] { guest }, basePath, new QcowOverlayOptions { Force = true }, null, errors.Add));
        Assert.Equal(ErrorKind.ResourceBusy, Assert.Single(errors).Kind);
        // the base a guest runs on is held too: replacing it (with another backing) is refused the same way
        var other = Path.Combine(Path.GetDirectoryName(basePath)!, "other.raw");
        using (var f = File.Create(other)) f.SetLength(MiB);
        var e2 = Assert.Throws<KvmOcException>(() => QcowOverlayWriter.Plan(basePath, QcowOverlayWriter.OpenBacking(other, null), new QcowOverlayOptions { Force = true }));
        Assert.Equal("QcowImageInUse", e2.ErrorId);
    }

    static void WaitUntil(Func<bool> condition, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(20)) throw new Xunit.Sdk.XunitException($"timed out waiting for {what}");
            Thread.Sleep(50);
        }
    }
}
