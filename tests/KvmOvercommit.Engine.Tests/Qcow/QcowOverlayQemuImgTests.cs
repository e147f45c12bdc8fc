using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Qcow;

/// <summary>
/// Overlays written by QcowOverlayWriter against overlays written by `qemu-img create -f qcow2 -b B -F fmt` for the same
/// inputs: byte for byte identical, `qemu-img check` clean, and `qemu-img info` agreeing field by field with QcowReader.
/// </summary>
public class QcowOverlayQemuImgTests
{
    const long MiB = 1024 * 1024, GiB = 1024 * MiB, TiB = 1024 * GiB;

    public static TheoryData<long, int> SizesAndClusters()
    {
        var data = new TheoryData<long, int>();
        foreach (int cs in new[] { 4096, 8192, 65536, 512 * 1024, 2 * 1024 * 1024 })
            foreach (long size in new[] { 1 * MiB, 1000 * 1000 + 7, 1 * GiB, 1 * TiB, 2 * TiB + 4096, 16 * TiB })
                if (!(cs == 4096 && size > 8 * TiB)) data.Add(size, cs); // 4 KiB clusters map at most 8 TiB (QEMU's L1 limit)
        data.Add(8 * TiB, 4096); // the largest 4 KiB-cluster image: several refcount blocks after the L1 table
        return data;
    }

    /// <summary>Our overlay and qemu-img's (same stored backing name, format, cluster size and size) side by side in one folder.</summary>
    static QcowImage CreateBoth(string folder, string backing, QcowOverlayOptions options, out string ours, out string theirs)
    {
        ours = Path.Combine(folder, "ours.qcow2");
        theirs = Path.Combine(folder, "qemu.qcow2");
        var b = QcowOverlayWriter.OpenBacking(backing, options.BackingFormat);
        var plan = QcowOverlayWriter.Plan(ours, b, options);
        var written = QcowOverlayWriter.Apply(plan);
        // a relative -b is resolved by qemu-img against the new image's folder, as QEMU does when it opens the image
        QemuImg.CreateOverlay(theirs, plan.BackingFile, plan.BackingFormat, options.ClusterSize, options.SizeBytes);
        return written;
    }

    static void AssertSameAsQemuImg(string ours, string theirs, QcowImage written)
    {
        Assert.True(File.ReadAllBytes(ours).AsSpan().SequenceEqual(File.ReadAllBytes(theirs)), $"{ours} differs from qemu-img's {theirs}");
        QemuImg.Check(ours);
        var read = QcowReader.Read(ours);
        var info = QemuImg.Info(ours);
        QemuImg.AssertAgrees(info, read);
        QemuImg.AssertAgrees(info, written); // what New-QcowOverlay returns is what Get-QcowImage reads back
        Assert.Equal(read.BackingChain, written.BackingChain);
        Assert.Equal(QemuImg.Chain(ours), read.BackingChain);
        // qemu-img's own overlay reads the same too (apart from the name)
        var theirsRead = QcowReader.Read(theirs);
        QemuImg.AssertAgrees(QemuImg.Info(theirs), theirsRead);
        Assert.Equal(read.VirtualSize, theirsRead.VirtualSize);
        Assert.Equal(read.BackingFile, theirsRead.BackingFile);
    }

    [SkippableTheory]
    [MemberData(nameof(SizesAndClusters))]
    public void EveryVirtualSizeAndClusterSizeIsByteIdenticalToQemuImg(long size, int clusterSize)
    {
        QemuImg.Require();
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = dir.File("base.qcow2");
        QemuImg.CreateBase(basePath, "qcow2", 1 * GiB);
        var written = CreateBoth(dir.Path, basePath, new QcowOverlayOptions { ClusterSize = clusterSize, SizeBytes = size }, out var ours, out var theirs);
        Assert.Equal((size + 511) / 512 * 512, written.VirtualSize);
        AssertSameAsQemuImg(ours, theirs, written);
    }

    [SkippableFact]
    public void TooLargeForTheClusterSizeIsRefusedLikeQemuImg()
    {
        QemuImg.Require();
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = dir.File("base.qcow2");
        QemuImg.CreateBase(basePath, "qcow2", 1 * MiB);
        var b = QcowOverlayWriter.OpenBacking(basePath, null);
        var e = Assert.Throws<KvmOcException>(() => QcowOverlayWriter.Plan(dir.File("o.qcow2"), b, new QcowOverlayOptions { ClusterSize = 4096, SizeBytes = 16 * TiB }));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Equal("QcowSizeTooLarge", e.ErrorId);
        Assert.NotEqual(0, QemuImg.Exec("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", basePath, "-F", "qcow2", dir.File("q.qcow2"), (16 * TiB).ToString()).Code);
        Assert.False(File.Exists(dir.File("o.qcow2")));
    }

    [SkippableTheory]
    [InlineData("raw", null, false)]
    [InlineData("raw", "raw", true)]
    [InlineData("qcow2v2", null, false)]
    [InlineData("qcow2v2", "qcow2", true)]
    [InlineData("qcow2", null, false)]
    [InlineData("qcow2", null, true)]
    public void RawAndQcow2V2AndV3Bases(string kind, string? format, bool relative)
    {
        QemuImg.Require();
        using var dir = new TempDir("kvmoc-qcow");
        Directory.CreateDirectory(dir.File("guests"));
        var basePath = dir.File(kind == "raw" ? "base.raw" : "base.qcow2");
        var probed = QemuImg.CreateBase(basePath, kind, 64 * MiB + 512, clusterSize: kind == "qcow2v2" ? 32768 : null);
        var baseRead = QcowReader.Read(basePath);
        QemuImg.AssertAgrees(QemuImg.Info(basePath), baseRead);
        Assert.Equal(kind == "qcow2v2" ? 2 : kind == "qcow2" ? 3 : null, baseRead.Version);

        var written = CreateBoth(dir.File("guests"), basePath, new QcowOverlayOptions { BackingFormat = format, RelativeBackingPath = relative }, out var ours, out var theirs);
        Assert.Equal(probed, written.BackingFormat);
        Assert.Equal(relative ? "../" + Path.GetFileName(basePath) : basePath, written.BackingFile);
        Assert.Equal(64 * MiB + 512, written.VirtualSize);
        AssertSameAsQemuImg(ours, theirs, written);
    }

    [SkippableFact]
    public void ChainsThreeDeepAcrossFormats()
    {
        QemuImg.Require();
        using var dir = new TempDir("kvmoc-qcow");
        var raw = dir.File("base.raw");
        QemuImg.CreateBase(raw, "raw", 32 * MiB);
        var v2 = dir.File("mid-v2.qcow2");
        QemuImg.CreateOverlay(v2, raw, "raw"); // qemu-img writes v3; make a v2 link with amend
        QemuImg.Run("amend", "-f", "qcow2", "-o", "compat=0.10", v2);
        var l1 = QcowOverlayWriter.CreateMany(new[] { dir.File("l1.qcow2") }, v2, new QcowOverlayOptions { RelativeBackingPath = true }).Single();
        var l2 = QcowOverlayWriter.CreateMany(new[] { dir.File("l2.qcow2") }, l1.Path, new QcowOverlayOptions { ClusterSize = 4096 }).Single();
        var l3 = QcowOverlayWriter.CreateMany(new[] { dir.File("l3.qcow2") }, l2.Path, new QcowOverlayOptions { ClusterSize = 2 * 1024 * 1024, RelativeBackingPath = true }).Single();
        var read = QcowReader.Read(l3.Path);
        Assert.Equal(new[] { l2.Path, l1.Path, v2, raw }, read.BackingChain);
        Assert.Equal(read.BackingChain, l3.BackingChain);
        Assert.Equal(QemuImg.Chain(l3.Path), read.BackingChain);
        foreach (var p in new[] { l1.Path, l2.Path, l3.Path })
        {
            QemuImg.Check(p);
            QemuImg.AssertAgrees(QemuImg.Info(p), QcowReader.Read(p));
        }
        Assert.Equal(2, QcowReader.Read(v2).Version);
    }

    [SkippableTheory]
    [InlineData("with space/base image.qcow2", "with space/over lay.qcow2")]
    [InlineData("com,ma/ba,se.qcow2", "com,ma/o,,v.qcow2")]
    [InlineData("qu'o\"te/b'a\"se.qcow2", "qu'o\"te/o'v\".qcow2")]
    [InlineData("ünïcødé/Basis-äöü-日本.qcow2", "ünïcødé/Überlagerung-😀.qcow2")]
    [InlineData("colon/a:b.qcow2", "colon/c:d.qcow2")]
    public void PathsWithSpacesCommasQuotesAndNonAscii(string baseName, string overlayName)
    {
        QemuImg.Require();
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = dir.File(baseName);
        Directory.CreateDirectory(Path.GetDirectoryName(basePath)!);
        QemuImg.CreateBase(basePath, "qcow2", 16 * MiB);
        foreach (bool relative in new[] { false, true })
        {
            var overlay = dir.File(overlayName.Replace(".qcow2", relative ? "-rel.qcow2" : ".qcow2"));
            var written = QcowOverlayWriter.CreateMany(new[] { overlay }, basePath, new QcowOverlayOptions { RelativeBackingPath = relative }).Single();
            Assert.Equal(overlay, written.Path);
            QemuImg.Check(overlay);
            var read = QcowReader.Read(overlay);
            QemuImg.AssertAgrees(QemuImg.Info(overlay), read);
            Assert.Equal(new[] { basePath }, QemuImg.Chain(overlay));
            Assert.Equal(new[] { basePath }, read.BackingChain);
            // a relative name that contains a colon before any slash is stored as ./name (QEMU would take "a:" for a protocol)
            if (relative) Assert.Equal(baseName.StartsWith("colon/", StringComparison.Ordinal) ? "./a:b.qcow2" : Path.GetFileName(baseName), read.BackingFile);
            // and qemu-img writes the same bytes for the same stored name
            var theirs = overlay + ".qemu";
            QemuImg.CreateOverlay(theirs, written.BackingFile!, "qcow2");
            Assert.True(File.ReadAllBytes(overlay).AsSpan().SequenceEqual(File.ReadAllBytes(theirs)), overlay);
        }
    }
}
