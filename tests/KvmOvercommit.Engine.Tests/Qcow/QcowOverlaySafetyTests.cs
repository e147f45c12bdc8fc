using System.Diagnostics;
using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Qcow;

/// <summary>Nothing is ever lost: existing targets, loops, self-backing, long names, -WhatIf, temporary files, read-only backing.</summary>
public class QcowOverlaySafetyTests
{
    const long MiB = 1024 * 1024;

    static string NewBase(TempDir dir, string name = "base.qcow2", long size = 8 * MiB)
    {
        var b = QcowOverlayWriter.OpenBacking(RawBase(dir, name + ".raw", size), "raw");
        // a qcow2 base of our own: an overlay on a raw file, which is a valid qcow2 image
        return QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(dir.File(name), b, new QcowOverlayOptions())).Path;
    }

    static string RawBase(TempDir dir, string name, long size)
    {
        var p = dir.File(name);
        using var f = File.Create(p);
        f.SetLength(size);
        return p;
    }

    static QcowImage Create(string path, string backing, QcowOverlayOptions? options = null) =>
        QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(path, QcowOverlayWriter.OpenBacking(backing, options?.BackingFormat), options ?? new QcowOverlayOptions()));

    static KvmOcException Refused(Action a) => Assert.Throws<KvmOcException>(a);

    static string[] TempFiles(TempDir dir) => Directory.GetFiles(dir.Path, "*.kvmoc-tmp", SearchOption.AllDirectories);

    [Fact]
    public void AnExistingTargetIsRefusedWithoutForceAndLeftAlone()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var target = dir.Write("guest.qcow2", "precious data");
        var e = Refused(() => Create(target, basePath));
        Assert.Equal(ErrorKind.ResourceExists, e.Kind);
        Assert.Equal("QcowOverlayExists", e.ErrorId);
        Assert.Equal(target, e.Target);
        Assert.Equal("precious data", File.ReadAllText(target));
        Assert.Empty(TempFiles(dir));
    }

    [Fact]
    public void ForceReplacesAnExistingFileAtomically()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var target = dir.Write("guest.qcow2", "old");
        using var before = File.OpenRead(target); // an open handle keeps the old inode: a rename, not an in-place rewrite
        var plan = QcowOverlayWriter.Plan(target, QcowOverlayWriter.OpenBacking(basePath, null), new QcowOverlayOptions { Force = true });
        Assert.True(plan.ReplacesExisting);
        Assert.StartsWith("Replace with qcow2 overlay", plan.Action);
        var img = QcowOverlayWriter.Apply(plan);
        Assert.Equal(basePath, img.BackingFile);
        Assert.Equal("old", new StreamReader(before).ReadToEnd());
        Assert.Equal("qcow2", QcowReader.Read(target).Format);
        Assert.Empty(TempFiles(dir));
    }

    [SkippableFact]
    public void ForceKeepsTheReplacedFilesOwnerGroupAndMode()
    {
        Prereq.RequireRoot(); // only root can hand a file to another owner
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var target = dir.Write("guest.qcow2", "old");
        Assert.Equal(0, QemuImg.Exec("chown", "64055:997", target).Code); // Debian's libvirt-qemu:kvm ids, whether or not they exist here
        File.SetUnixFileMode(target, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(target, QcowOverlayWriter.OpenBacking(basePath, null), new QcowOverlayOptions { Force = true }));
        Assert.Equal("qcow2", QcowReader.Read(target).Format);
        Assert.Equal(((uint)64055, (uint)997), QcowNative.Owner(target));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(target));
        // a new overlay is the caller's, with the umask's mode
        var fresh = Create(dir.File("fresh.qcow2"), basePath);
        Assert.Equal(((uint)0, (uint)0), QcowNative.Owner(fresh.Path));
    }

    [Fact]
    public void ARaceForTheNameIsLostSafely()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var target = dir.File("guest.qcow2");
        var plan = QcowOverlayWriter.Plan(target, QcowOverlayWriter.OpenBacking(basePath, null), new QcowOverlayOptions());
        File.WriteAllText(target, "created meanwhile"); // appears between plan and apply
        var e = Refused(() => QcowOverlayWriter.Apply(plan));
        Assert.Equal(ErrorKind.ResourceExists, e.Kind);
        Assert.Equal("created meanwhile", File.ReadAllText(target));
        Assert.Empty(TempFiles(dir));
    }

    [Fact]
    public void AnOverlayCannotBeItsOwnBackingFileEvenWithForce()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var hash = QemuImg.Sha256(basePath);
        var opts = new QcowOverlayOptions { Force = true };
        Assert.Equal("QcowOverlayIsOwnBacking", Refused(() => Create(basePath, basePath, opts)).ErrorId);
        // the same file under another name: a hard link, a symlink, a path with ..
        var hard = dir.File("hard.qcow2");
        Assert.Equal(0, QemuImg.Exec("ln", basePath, hard).Code);
        var sym = dir.File("sym.qcow2");
        File.CreateSymbolicLink(sym, basePath);
        Directory.CreateDirectory(dir.File("sub"));
        foreach (var alias in new[] { hard, sym, dir.File("sub/../base.qcow2") })
        {
            var e = Refused(() => Create(alias, basePath, opts));
            Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
            Assert.Equal("QcowOverlayIsOwnBacking", e.ErrorId);
        }
        Assert.Equal(hash, QemuImg.Sha256(basePath));
    }

    [Fact]
    public void ReplacingALinkOfTheChainWouldCloseALoopAndIsRefused()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var mid = Create(dir.File("mid.qcow2"), basePath).Path;
        var top = Create(dir.File("top.qcow2"), mid).Path;
        foreach (var victim in new[] { mid, basePath, dir.File("base.qcow2.raw") })
        {
            var e = Refused(() => Create(victim, top, new QcowOverlayOptions { Force = true, BackingFormat = "qcow2" }));
            Assert.Equal("QcowBackingChainLoop", e.ErrorId);
            Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        }
        Assert.Equal(new[] { mid, basePath, dir.File("base.qcow2.raw") }, QcowReader.Read(top).BackingChain);
    }

    [Fact]
    public void AnExistingLoopIsInvalidDataWhenRead()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var a = Create(dir.File("a.qcow2"), basePath).Path;
        var b = Create(dir.File("b.qcow2"), a).Path;
        // rewrite a to be backed by b, bypassing Plan's loop check (as a careless `qemu-img rebase -u` would)
        var backingOfB = QcowOverlayWriter.OpenBacking(basePath, null);
        QcowOverlayWriter.Apply(new QcowOverlayPlan
        {
            Path = a, BackingFile = b, BackingPath = b, BackingFormat = "qcow2", VirtualSize = 8 * MiB, ClusterSize = 65536,
            ReplacesExisting = true, Backing = backingOfB,
        });
        var e = Refused(() => QcowReader.Read(b));
        Assert.Equal(ErrorKind.InvalidData, e.Kind);
        Assert.Equal("QcowBackingChainLoop", e.ErrorId);
    }

    [Fact]
    public void AMissingLinkIsNotFoundNamingIt()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var top = Create(dir.File("top.qcow2"), basePath).Path;
        File.Delete(basePath);
        // Reading shows the image with the broken link marked (as qemu-img info does); building on it is refused.
        var img = QcowReader.Read(top);
        Assert.Equal(basePath, img.MissingBackingFile);
        Assert.Equal(new[] { basePath }, img.BackingChain);
        var e = Refused(() => QcowOverlayWriter.OpenBacking(top, null));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        Assert.Equal("QcowBackingFileMissing", e.ErrorId);
        Assert.Contains(basePath, e.Message);
        Assert.Equal("QcowBackingNotFound", Refused(() => QcowOverlayWriter.OpenBacking(basePath, null)).ErrorId);
    }

    [Fact]
    public void BackingNamesLongerThanTheFormatAllowsAreRefused()
    {
        using var dir = new TempDir("kvmoc-qcow");
        // nest folders until the absolute name is over 1023 bytes (each component at most 255)
        var deep = dir.Path;
        while (deep.Length < 1030) deep = Path.Combine(deep, new string('d', 200));
        Directory.CreateDirectory(deep);
        var basePath = RawBase(dir, Path.Combine(deep, "base.raw"), MiB);
        var b = QcowOverlayWriter.OpenBacking(basePath, null);
        var e = Refused(() => QcowOverlayWriter.Plan(dir.File("o.qcow2"), b, new QcowOverlayOptions()));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Equal("QcowBackingNameTooLong", e.ErrorId);
        Assert.False(File.Exists(dir.File("o.qcow2")));
        // stored relative to the overlay's folder it fits
        var ok = QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(Path.Combine(deep, "o.qcow2"), b, new QcowOverlayOptions { RelativeBackingPath = true }));
        Assert.Equal("base.raw", ok.BackingFile);
        // exactly 1023 bytes is allowed: qemu-img accepts it too
        if (Prereq.Which("qemu-img") is not null)
        {
            var exact = dir.File("exact");
            var name = Path.Combine(exact, new string('x', 1023 - exact.Length - 1));
            while (Path.GetFileName(name).Length > 200) name = Path.Combine(Path.GetDirectoryName(name)!, new string('x', 199), new string('x', Path.GetFileName(name).Length - 200));
            Directory.CreateDirectory(Path.GetDirectoryName(name)!);
            RawBase(dir, name, MiB);
            Assert.Equal(1023, name.Length);
            var o = QcowOverlayWriter.CreateMany(new[] { dir.File("exact.qcow2") }, name, new QcowOverlayOptions()).Single();
            QemuImg.Check(o.Path);
            Assert.Equal(name, QemuImg.Info(o.Path).GetProperty("backing-filename").GetString());
        }
    }

    [Fact]
    public void PlanningAloneWritesNothing()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var before = Directory.GetFileSystemEntries(dir.Path).OrderBy(x => x).ToArray();
        var b = QcowOverlayWriter.OpenBacking(basePath, null);
        var plans = Enumerable.Range(1, 30).Select(i => QcowOverlayWriter.Plan(dir.File($"win7-{i}.qcow2"), b, new QcowOverlayOptions())).ToList();
        Assert.All(plans, p => Assert.StartsWith("Create qcow2 overlay (8388608 bytes, cluster 65536) backed by", p.Action));
        Assert.Equal(before, Directory.GetFileSystemEntries(dir.Path).OrderBy(x => x).ToArray());
    }

    [Fact]
    public void BadOptionsAreInvalidArgumentsBeforeAnythingIsWritten()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var b = QcowOverlayWriter.OpenBacking(basePath, null);
        foreach (var (opts, id) in new (QcowOverlayOptions, string)[]
        {
            (new() { ClusterSize = 3000 }, "QcowBadClusterSize"),
            (new() { ClusterSize = 2048 }, "QcowBadClusterSize"),
            (new() { ClusterSize = 4 * 1024 * 1024 }, "QcowBadClusterSize"),
            (new() { SizeBytes = -1 }, "QcowBadSize"),
        })
        {
            var e = Refused(() => QcowOverlayWriter.Plan(dir.File("o.qcow2"), b, opts));
            Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
            Assert.Equal(id, e.ErrorId);
        }
        Assert.Equal("QcowTargetFolderNotFound", Refused(() => QcowOverlayWriter.Plan(dir.File("nope/o.qcow2"), b, new())).ErrorId);
        Assert.Equal("QcowTargetIsDirectory", Refused(() => QcowOverlayWriter.Plan(dir.Path, b, new())).ErrorId);
        Assert.Equal("QcowBackingIsDirectory", Refused(() => QcowOverlayWriter.OpenBacking(dir.Path, null)).ErrorId);
        var notAnImage = Refused(() => QcowReader.Read(dir.Path));
        Assert.Equal(ErrorKind.InvalidArgument, notAnImage.Kind);
        Assert.Equal("QcowPathIsDirectory", notAnImage.ErrorId);
        Assert.Equal("QcowBadBackingFormat", Refused(() => QcowOverlayWriter.OpenBacking(basePath, "QCOW2,x")).ErrorId);
        var vmdk = dir.Write("disk.vmdk", "# Disk DescriptorFile\n");
        Assert.Equal("QcowBackingFormatUnsupported", Refused(() => QcowOverlayWriter.OpenBacking(vmdk, null)).ErrorId);
        Assert.False(File.Exists(dir.File("o.qcow2")));
    }

    [Fact]
    public void ASmallerSizeWarnsAndIsRoundedUpToSectors()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var observer = new Fleet.RecordingObserver();
        var plan = QcowOverlayWriter.Plan(dir.File("o.qcow2"), QcowOverlayWriter.OpenBacking(basePath, null), new QcowOverlayOptions { SizeBytes = MiB + 1 }, observer);
        Assert.Equal(MiB + 512, plan.VirtualSize);
        Assert.Contains(observer.Warnings, w => w.Contains("smaller than the backing image"));
    }

    [SkippableFact]
    public void TheBackingFileIsOpenedReadOnly()
    {
        // An immutable file (chattr +i) cannot be opened for writing even by root: every step must still succeed.
        Prereq.RequireRoot();
        var chattr = Prereq.RequireTool("chattr");
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var hash = QemuImg.Sha256(basePath);
        var mtime = File.GetLastWriteTimeUtc(basePath);
        var sh = QemuImg.Exec(chattr, "+i", basePath);
        Skip.If(sh.Code != 0 && !Prereq.InCi, $"chattr +i is not supported here: {sh.Err}");
        try
        {
            Assert.ThrowsAny<UnauthorizedAccessException>(() => File.OpenHandle(basePath, FileMode.Open, FileAccess.ReadWrite).Dispose());
            var made = QcowOverlayWriter.CreateMany(Enumerable.Range(1, 5).Select(i => dir.File($"o{i}.qcow2")), basePath, new QcowOverlayOptions()).ToList();
            Assert.Equal(5, made.Count);
            Assert.Equal(new[] { basePath, dir.File("base.qcow2.raw") }, QcowReader.Read(made[0].Path).BackingChain);
            Assert.False(QcowReader.Read(basePath).InUse);
        }
        finally
        {
            QemuImg.Exec(chattr, "-i", basePath);
        }
        Assert.Equal(hash, QemuImg.Sha256(basePath));
        Assert.Equal(mtime, File.GetLastWriteTimeUtc(basePath));
    }

    [Fact]
    public void CreateManyReadsTheBackingOnceAndReportsEachFailure()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        dir.Write("win7-2.qcow2", "exists");
        var errors = new List<KvmOcException>();
        var made = QcowOverlayWriter.CreateMany(new[] { "win7-1.qcow2", "win7-2.qcow2", "win7-3.qcow2", basePath }.Select(n => Path.IsPathRooted(n) ? n : dir.File(n)),
            basePath, new QcowOverlayOptions(), null, errors.Add).ToList();
        Assert.Equal(new[] { dir.File("win7-1.qcow2"), dir.File("win7-3.qcow2") }, made.Select(m => m.Path));
        Assert.Equal(new[] { "QcowOverlayExists", "QcowOverlayIsOwnBacking" }, errors.Select(e => e.ErrorId));
        var sw = Stopwatch.StartNew();
        var many = QcowOverlayWriter.CreateMany(Enumerable.Range(1, 300).Select(i => dir.File($"fleet-{i}.qcow2")), basePath, new QcowOverlayOptions()).ToList();
        Assert.Equal(300, many.Count);
        Assert.All(many, m => Assert.Equal(3 * 65536 + 8, new FileInfo(m.Path).Length)); // header, refcount table and block, one L1 entry
        Assert.Empty(TempFiles(dir));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), $"300 overlays took {sw.Elapsed}");
    }

    [Fact]
    public void ABatchFlushesOnceAndAFailureOfOneOverlayLeavesTheOthersAndNoTemporaryFiles()
    {
        using var dir = new TempDir("kvmoc-qcow");
        var basePath = NewBase(dir);
        var b = QcowOverlayWriter.OpenBacking(basePath, null);
        var plans = new[] { "a", "b", "c", "b" }.Select(n => QcowOverlayWriter.Plan(dir.File($"{n}.qcow2"), b, new QcowOverlayOptions())).ToList();
        File.WriteAllText(dir.File("c.qcow2"), "appeared after the plan");
        var errors = new List<KvmOcException>();
        var observer = new Fleet.RecordingObserver();
        var made = QcowOverlayWriter.ApplyMany(plans, observer, errors.Add);
        Assert.Equal(new[] { dir.File("a.qcow2"), dir.File("b.qcow2") }, made.Select(m => m.Path));
        Assert.Equal(new[] { "QcowOverlayExists", "QcowOverlayExists" }, errors.Select(e => e.ErrorId)); // c appeared; b twice in one batch
        Assert.Equal("appeared after the plan", File.ReadAllText(dir.File("c.qcow2")));
        Assert.Contains("Flushed 4 overlay(s) (sync_file_range, fdatasync)", observer.Verbose); // the batch is flushed together, before any rename
        Assert.Empty(TempFiles(dir));
        Assert.All(made, m => Assert.Equal("qcow2", QcowReader.Read(m.Path).Format));
    }
}
