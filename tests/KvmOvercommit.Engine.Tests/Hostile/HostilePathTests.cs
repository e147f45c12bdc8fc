using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Hostile;

/// <summary>
/// Issue 12, findings 3, 7 and 18: every engine entry point that takes a path as a file, tried with a FIFO, a socket, a
/// character device, a directory, a symlink loop and a `[` name. Each answers within 5 s with a clean KvmOcException
/// (InvalidArgument, an id that names the kind) or the right result, and nothing on disk changes.
/// </summary>
public class HostilePathTests
{
    static string RawBase(TempDir dir)
    {
        var p = dir.File("base.raw");
        using (var f = File.Create(p)) f.SetLength(1 << 20);
        return p;
    }

    static string NewBase(TempDir dir) =>
        QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(dir.File("base.qcow2"), QcowOverlayWriter.OpenBacking(RawBase(dir), "raw"), new QcowOverlayOptions())).Path;

    /// <summary>Every "not a file" kind through one entry point: refused fast, InvalidArgument, nothing changed.</summary>
    static void EachRefused(HostilePaths h, string entry, Action<string> call, Func<string, bool>? idOk = null)
    {
        foreach (var (kind, path) in h.NotFiles())
        {
            var before = h.Fingerprint();
            var e = HostilePaths.Refused(() => call(path), $"{entry} on a {kind}");
            Assert.True(e.Kind == ErrorKind.InvalidArgument, $"{entry} on a {kind}: {e.Kind} {e.ErrorId}: {e.Message}");
            Assert.True(idOk?.Invoke(e.ErrorId) ?? true, $"{entry} on a {kind}: id {e.ErrorId}");
            Assert.Contains(path, e.Message);
            Assert.DoesNotContain("Unexpected", e.Message);
            Assert.Equal(before, h.Fingerprint());
        }
    }

    [Fact]
    public void QcowReaderRefusesEveryKindThatIsNotAFileWithoutBlocking()
    {
        using var h = new HostilePaths();
        EachRefused(h, "QcowReader.Read", p => QcowReader.Read(p), id => id is "QcowPathIsDirectory" or "QcowPathNotRegularFile");
        var fifo = HostilePaths.Refused(() => QcowReader.Read(h.Fifo), "QcowReader.Read on a FIFO");
        Assert.Equal("QcowPathNotRegularFile", fifo.ErrorId);
        Assert.Contains("FIFO", fifo.Message);
        Assert.Equal("QcowPathIsDirectory", HostilePaths.Refused(() => QcowReader.Read(h.Directory), "dir").ErrorId);
        Assert.Equal(ErrorKind.NotFound, HostilePaths.Refused(() => QcowReader.Read(h.Dangling), "dangling").Kind);
    }

    [Fact]
    public void ABracketNameIsReadLiterally()
    {
        using var h = new HostilePaths();
        var basePath = NewBase(h.Dir);
        var made = QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(h.Bracket, QcowOverlayWriter.OpenBacking(basePath, null), new QcowOverlayOptions()));
        Assert.Equal(h.Bracket, made.Path);
        var read = HostilePaths.Bounded(() => QcowReader.Read(h.Bracket), "read hx-[br].qcow2");
        Assert.Equal("qcow2", read.Format);
        Assert.Equal(basePath, read.BackingPath);
    }

    [Fact]
    public void OverlayTargetsThatAreNotRegularFilesAreNeverReplacedNotEvenWithForce()
    {
        using var h = new HostilePaths();
        var backing = QcowOverlayWriter.OpenBacking(NewBase(h.Dir), null);
        foreach (bool force in new[] { false, true })
            EachRefused(h, $"QcowOverlayWriter.Plan (Force={force})", p => QcowOverlayWriter.Plan(p, backing, new QcowOverlayOptions { Force = force }),
                id => id is "QcowTargetIsDirectory" or "QcowTargetNotRegularFile");
        var dev = HostilePaths.Refused(() => QcowOverlayWriter.Plan("/dev/null", backing, new QcowOverlayOptions { Force = true }), "Plan /dev/null");
        Assert.Equal("QcowTargetNotRegularFile", dev.ErrorId);
        Assert.Contains("character device", dev.Message);
        Assert.Empty(Directory.GetFiles(h.Dir.Path, "*.kvmoc-tmp"));
    }

    [Fact]
    public void BackingPathsThatAreNotFilesAreRefused()
    {
        using var h = new HostilePaths();
        EachRefused(h, "OpenBacking", p => QcowOverlayWriter.OpenBacking(p, null), id => id is "QcowBackingIsDirectory" or "QcowBackingNotRegularFile");
        EachRefused(h, "OpenBacking -F raw", p => QcowOverlayWriter.OpenBacking(p, "raw"), id => id is "QcowBackingIsDirectory" or "QcowBackingNotRegularFile");
    }

    [Fact]
    public void AnOverlayOnADeletedBaseIsStillReadWithTheBrokenLinkMarked()
    {
        using var dir = new TempDir("kvmoc-hostile");
        var basePath = NewBase(dir);
        var mid = QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(dir.File("mid.qcow2"), QcowOverlayWriter.OpenBacking(basePath, null), new QcowOverlayOptions())).Path;
        var top = QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(dir.File("top.qcow2"), QcowOverlayWriter.OpenBacking(mid, null), new QcowOverlayOptions())).Path;
        File.Delete(basePath);
        var obs = new RecordingObserver();
        var img = QcowReader.Read(top, obs);
        Assert.Equal("qcow2", img.Format);
        Assert.Equal(new[] { mid, basePath }, img.BackingChain);
        Assert.Equal(basePath, img.MissingBackingFile);
        Assert.Contains(obs.Warnings, w => w.Contains(basePath) && w.Contains("does not exist"));
        Assert.Equal(basePath, QcowReader.Read(mid).MissingBackingFile);
        // Creating an overlay on the broken chain is still refused, naming the missing link.
        var e = Assert.Throws<KvmOcException>(() => QcowOverlayWriter.OpenBacking(top, null));
        Assert.Equal("QcowBackingFileMissing", e.ErrorId);
    }

    [Fact]
    public void StartKvmGuestDiskAndBootFilesThatAreNotFilesAreRefusedAtPlan()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        using var h = new HostilePaths();
        using var run = new TempDir("kvmoc-hostile-run");
        var kernel = h.Dir.Write("vmlinuz", "not really");
        GuestStartOptions Options(string disk) => new() { Name = "hostile-plan", DiskPath = disk, RunDirectory = run.Path, Accelerator = GuestAccelerator.Tcg };
        EachRefused(h, "Start-KvmGuest -DiskPath", p => GuestLauncher.Plan(Options(p), NullObserver.Instance), id => id is "DiskPathIsDirectory" or "DiskNotRegularFile");
        Assert.Equal("DiskPathIsDirectory", HostilePaths.Refused(() => GuestLauncher.Plan(Options(h.Directory), NullObserver.Instance), "dir").ErrorId);
        EachRefused(h, "Start-KvmGuest -Initrd", p => GuestLauncher.Plan(new GuestStartOptions { Name = "hostile-plan", Kernel = kernel, Initrd = p, RunDirectory = run.Path, Accelerator = GuestAccelerator.Tcg }, NullObserver.Instance),
            id => id is "BootFileIsDirectory" or "BootFileNotRegularFile");
        Assert.Empty(Directory.GetFileSystemEntries(run.Path));
    }

    [Fact]
    public void AMissingBackingFileIsBackingFileMissingAtPlanNotAQemuFailure()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        using var dir = new TempDir("kvmoc-hostile");
        var basePath = NewBase(dir);
        var top = QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(dir.File("top.qcow2"), QcowOverlayWriter.OpenBacking(basePath, null), new QcowOverlayOptions())).Path;
        File.Delete(basePath);
        var e = Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(new GuestStartOptions { Name = "hostile-nobase", DiskPath = top, RunDirectory = dir.File("run"), Accelerator = GuestAccelerator.Auto }, NullObserver.Instance));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        Assert.Equal("BackingFileMissing", e.ErrorId);
        Assert.Contains(basePath, e.Message);
        Assert.DoesNotContain("TCG", e.Message);
    }

    [Fact]
    public void LeaseAndMdstatFilesThatAreNotFilesGetFittingErrors()
    {
        using var h = new HostilePaths();
        EachRefused(h, "DnsmasqLeaseReader.ReadFile", p => DnsmasqLeaseReader.ReadFile(p, NullObserver.Instance), id => id is "LeaseFileIsDirectory" or "LeaseFileNotRegularFile");
        EachRefused(h, "ReadMdRaid", p => new HostInfoReader().ReadMdRaid(p), id => id is "MdStatPathIsDirectory" or "MdStatNotRegularFile");
        var tmp = HostilePaths.Refused(() => new HostInfoReader().ReadMdRaid("/tmp"), "Get-MdRaid -Path /tmp");
        Assert.Equal("MdStatPathIsDirectory", tmp.ErrorId);
        Assert.NotEqual(ErrorKind.PermissionDenied, tmp.Kind);
        Assert.Equal("LeaseFileIsDirectory", HostilePaths.Refused(() => DnsmasqLeaseReader.ReadFile("/tmp", NullObserver.Instance), "Get-DnsmasqLease -Path /tmp").ErrorId);
    }

    [Fact]
    public void ABinaryLeaseFileWarnsAFewTimesThenCountsTheRest()
    {
        using var dir = new TempDir("kvmoc-hostile");
        var rnd = new Random(12);
        var bytes = new byte[64 * 1024];
        rnd.NextBytes(bytes);
        var f = dir.File("leases.bin");
        File.WriteAllBytes(f, bytes);
        var obs = new RecordingObserver();
        var leases = DnsmasqLeaseReader.ReadFile(f, obs);
        Assert.Empty(leases);
        Assert.InRange(obs.Warnings.Count, 2, DnsmasqLeaseReader.MaxLineWarnings + 1);
        Assert.Matches(@"skipped \d+ more line\(s\)", obs.Warnings[^1]);
    }
}

/// <summary>
/// An unreadable file, as nobody (issue 12's generated path cases): every path entry point says PermissionDenied (exit
/// 4) at once, through kvmoc running as nobody (setpriv), and nothing changes.
/// </summary>
public class HostileUnreadableTests
{
    [SkippableFact]
    public void AnUnreadableFileIsPermissionDeniedForNobody()
    {
        Prereq.RequireRoot();
        var setpriv = Prereq.RequireTool("setpriv");
        Prereq.Require(File.Exists(KsmWorkloads.KvmocDll), "kvmoc.dll next to the tests");
        var dir = Path.Combine("/tmp", "kvmoc-hostile-nobody-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(dir);
        try
        {
            File.SetUnixFileMode(dir, (UnixFileMode)0x1FF); // 0777: nobody may create files here (and must not)
            var secret = Path.Combine(dir, "secret.qcow2");
            using (var f = File.Create(secret)) f.SetLength(1 << 20);
            File.SetUnixFileMode(secret, UnixFileMode.UserRead | UnixFileMode.UserWrite); // 0600, root's
            var before = string.Join(",", Directory.GetFileSystemEntries(dir).OrderBy(x => x, StringComparer.Ordinal));
            foreach (var args in new[]
            {
                new[] { "qcow", "info", secret },
                new[] { "qcow", "overlay", "-b", secret, Path.Combine(dir, "new.qcow2") },
                new[] { "host", "mdstat", "--path", secret },
                new[] { "leases", "--path", secret },
            })
            {
                var psi = new System.Diagnostics.ProcessStartInfo(setpriv) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
                foreach (var a in new[] { "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/tmp", "DOTNET_CLI_HOME=/tmp", "DOTNET_NOLOGO=1", "dotnet", KsmWorkloads.KvmocDll }.Concat(args))
                    psi.ArgumentList.Add(a);
                using var p = System.Diagnostics.Process.Start(psi)!;
                var err = p.StandardError.ReadToEnd();
                Assert.True(p.WaitForExit(20000), $"kvmoc {string.Join(' ', args)} hung");
                Assert.True(p.ExitCode == 4, $"kvmoc {string.Join(' ', args)}: exit {p.ExitCode}: {err}");
                Assert.Contains("denied", err);
                Assert.DoesNotContain("Unexpected", err);
                Assert.DoesNotContain("   at ", err);
            }
            Assert.Equal(before, string.Join(",", Directory.GetFileSystemEntries(dir).OrderBy(x => x, StringComparer.Ordinal)));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
