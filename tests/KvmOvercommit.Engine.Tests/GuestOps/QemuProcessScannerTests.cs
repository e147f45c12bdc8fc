using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.GuestOps;

public class QemuProcessScannerTests
{
    [Fact]
    public void FindsOnlyQemuProcessesInAFakeProc()
    {
        using var tmp = new TempDir();
        var proc = tmp.File("proc");
        FakeProc.Populate(proc, qemuCount: 3, otherCount: 5);
        // A kernel thread (empty cmdline), qemu-img, and a process that vanished (no cmdline file).
        FakeProc.WriteProcess(proc, 2, Array.Empty<string>(), comm: "kthreadd");
        File.WriteAllText(Path.Combine(proc, "2", "cmdline"), "");
        FakeProc.WriteProcess(proc, 3, new[] { "qemu-img", "info", "x.qcow2" }, comm: "qemu-img");
        Directory.CreateDirectory(Path.Combine(proc, "4"));
        Directory.CreateDirectory(Path.Combine(proc, "self"));

        var scanner = new QemuProcessScanner(new HostRoots(Proc: proc));
        var guests = scanner.Scan();

        Assert.Equal(new[] { 10001, 10002, 10003 }, guests.Select(g => g.Id));
        var g2 = guests[1];
        Assert.Equal("win7-2", g2.Name);
        Assert.Equal(4048L, g2.MemoryMB);
        Assert.Equal(2, g2.CpuCount);
        Assert.Equal(2, g2.VncDisplay);
        Assert.Equal("kvm", g2.Accelerator);
        Assert.Equal(21812 * 1024L, g2.RssBytes);
        Assert.Equal(0L, g2.SwapBytes);
        Assert.Equal(20L, g2.KsmMergingPages);
        Assert.Equal(2 * 40960L - 640, g2.KsmProfitBytes);
        Assert.Equal(TimeSpan.FromSeconds(4), g2.CpuTime);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(FakeProc.BootTime).AddSeconds(5997.05), g2.StartTime);
        Assert.Equal(TimeSpan.Zero, g2.StartTime!.Value.Offset);
    }

    [Fact]
    public void CommandNamesWithSpacesAndParenthesesDoNotShiftStatFields()
    {
        using var tmp = new TempDir();
        var proc = tmp.File("proc");
        Directory.CreateDirectory(proc);
        FakeProc.WriteStat(proc);
        FakeProc.WriteProcess(proc, 77, new[] { "qemu-system-x86_64", "-name", "odd" }, comm: "a) b (c", utime: 150, stime: 50, startTicks: 100);
        var g = Assert.Single(new QemuProcessScanner(new HostRoots(Proc: proc)).Scan());
        Assert.Equal(TimeSpan.FromSeconds(2), g.CpuTime);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(FakeProc.BootTime + 1), g.StartTime);
    }

    [Fact]
    public void OlderKernelsWithoutKsmStatGiveNullsOrTheOldFile()
    {
        using var tmp = new TempDir();
        var proc = tmp.File("proc");
        Directory.CreateDirectory(proc);
        FakeProc.WriteStat(proc);
        FakeProc.WriteProcess(proc, 10, new[] { "qemu-system-x86_64", "-name", "old" }, ksmMergingPages: null);
        FakeProc.WriteProcess(proc, 11, new[] { "qemu-system-x86_64", "-name", "mid" }, ksmMergingPages: null);
        File.WriteAllText(Path.Combine(proc, "11", "ksm_merging_pages"), "42\n");
        var gs = new QemuProcessScanner(new HostRoots(Proc: proc)).Scan();
        Assert.Null(gs[0].KsmMergingPages);
        Assert.Null(gs[0].KsmProfitBytes);
        Assert.Equal(42L, gs[1].KsmMergingPages);
        Assert.Null(gs[1].KsmProfitBytes);
    }

    [Fact]
    public void RealCapturedProcFilesParse()
    {
        using var tmp = new TempDir();
        var proc = tmp.File("proc");
        var dir = Path.Combine(proc, "11744");
        Directory.CreateDirectory(dir);
        FakeProc.WriteStat(proc);
        foreach (var f in new[] { "cmdline", "stat", "status", "ksm_stat" })
            File.Copy(Fixture.PathOf($"guestops/hand.{f}"), Path.Combine(dir, f));
        var g = Assert.Single(new QemuProcessScanner(new HostRoots(Proc: proc)).Scan());
        Assert.Equal("hand", g.Name);
        Assert.Equal(11744, g.Id);
        Assert.Equal(21812 * 1024L, g.RssBytes);
        Assert.Equal(0L, g.KsmMergingPages);
        Assert.Equal(TimeSpan.FromMilliseconds(30), g.CpuTime);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(FakeProc.BootTime).AddSeconds(5997.05), g.StartTime);
    }

    [Fact]
    public void AMissingProcRootListsNothing()
        => Assert.Empty(new QemuProcessScanner(new HostRoots(Proc: "/nonexistent-proc-root")).Scan());
}
