using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Memory;

/// <summary>-MemoryMerge, -FreePageReporting, -DeflateOnOom: the QEMU command line they make and how it is read back (also from hand-started guests).</summary>
public class MemoryOptionsTests
{
    static QemuCommandLine Cl(params string[] argv) => QemuCommandLine.Parse(argv);

    [Theory]
    [InlineData(new[] { "kvm", "-m", "512" }, true)]
    [InlineData(new[] { "kvm", "-machine", "pc,mem-merge=off" }, false)]
    [InlineData(new[] { "kvm", "-M", "pc-1.0,mem-merge=no" }, false)]
    [InlineData(new[] { "kvm", "-machine", "type=q35,mem-merge=on" }, true)]
    [InlineData(new[] { "kvm", "-machine", "pc,mem-merge=off", "-machine", "mem-merge=on" }, true)]
    [InlineData(new[] { "kvm", "-machine", "mem-merge=false", "-machine", "accel=kvm" }, false)]
    public void MemoryMergeIsReadFromTheMachineOption(string[] argv, bool expected) => Assert.Equal(expected, Cl(argv).MemoryMerge);

    [Fact]
    public void BalloonFeaturesAreReadFromTheDevice()
    {
        var none = Cl("kvm", "-m", "256");
        Assert.Null(none.BalloonFreePageReporting);
        Assert.Null(none.BalloonDeflateOnOom);
        var plain = Cl("kvm", "-device", "virtio-balloon-pci,id=b");
        Assert.False(plain.BalloonFreePageReporting);
        Assert.False(plain.BalloonDeflateOnOom);
        var both = Cl("kvm", "-device", "virtio-balloon-pci,id=b,free-page-reporting=on,deflate-on-oom=true");
        Assert.True(both.BalloonFreePageReporting);
        Assert.True(both.BalloonDeflateOnOom);
        Assert.False(Cl("kvm", "-balloon", "virtio").BalloonFreePageReporting);
    }

    [Fact]
    public void DeviceHelpIsParsedIntoPropertyNames()
    {
        var help = "virtio-balloon-pci options:\n  deflate-on-oom=<bool>  - on/off (default: false)\n  free-page-reporting=<bool> - on/off (default: false)\n  guest-stats-polling-interval=<int>\n";
        var names = QemuDeviceProperties.Parse(help);
        Assert.Contains("free-page-reporting", names);
        Assert.Contains("deflate-on-oom", names);
        Assert.Contains("guest-stats-polling-interval", names);
        Assert.DoesNotContain("virtio-balloon-pci options:", names);
    }

    static GuestStartOptions Opts(TempDir d) => new()
    {
        Name = "memopts", Kernel = d.Write("vmlinuz", "k"), Accelerator = GuestAccelerator.Tcg, RunDirectory = d.File("run"), NoVnc = true, Network = GuestNetwork.None,
    };

    [SkippableFact]
    public void PlanTurnsTheOptionsIntoQemuArgumentsAndBack()
    {
        var qemu = Prereq.RequireTool("qemu-system-x86_64");
        Assert.True(QemuDeviceProperties.Has(qemu, "virtio-balloon-pci", "free-page-reporting"), "QEMU 7.2 has free-page-reporting");
        using var d = new TempDir();

        var plain = GuestLauncher.Plan(Opts(d), NullObserver.Instance);
        Assert.Equal("pc", plain.Arguments[Array.IndexOf(plain.Arguments, "-machine") + 1]);
        Assert.Contains("virtio-balloon-pci,id=balloon0,free-page-reporting=on", plain.Arguments); // on by default where QEMU has it
        var back = Cl(new[] { plain.Executable }.Concat(plain.Arguments).ToArray());
        Assert.True(back.MemoryMerge);
        Assert.True(back.BalloonFreePageReporting);
        Assert.False(back.BalloonDeflateOnOom);

        var o = Opts(d);
        o.MemoryMerge = false;
        o.FreePageReporting = false;
        o.DeflateOnOom = true;
        var p = GuestLauncher.Plan(o, NullObserver.Instance);
        Assert.Equal("pc,mem-merge=off", p.Arguments[Array.IndexOf(p.Arguments, "-machine") + 1]);
        Assert.Contains("virtio-balloon-pci,id=balloon0,deflate-on-oom=on", p.Arguments);
        back = Cl(new[] { p.Executable }.Concat(p.Arguments).ToArray());
        Assert.False(back.MemoryMerge);
        Assert.False(back.BalloonFreePageReporting);
        Assert.True(back.BalloonDeflateOnOom);

        o = Opts(d);
        o.Balloon = false;
        o.DeflateOnOom = true;
        Assert.Equal("BalloonRequired", Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(o, NullObserver.Instance)).ErrorId);
    }

    [SkippableFact]
    public void RequiredReportingFailsWhereQemuLacksIt()
    {
        Prereq.RequireTool("sh");
        using var d = new TempDir();
        // A "QEMU" whose balloon has no free-page-reporting (like QEMU 5.0).
        var fake = d.Write("qemu-old", "#!/bin/sh\necho 'virtio-balloon-pci options:'\necho '  deflate-on-oom=<bool>  - on/off (default: false)'\n");
        File.SetUnixFileMode(fake, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var o = Opts(d);
        o.QemuPath = fake;
        var auto = GuestLauncher.Plan(o, NullObserver.Instance);
        Assert.Contains("virtio-balloon-pci,id=balloon0", auto.Arguments); // default: quietly without
        o.FreePageReporting = true;
        var e = Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(o, NullObserver.Instance));
        Assert.Equal("FreePageReportingNotSupported", e.ErrorId);
        Assert.Equal(ErrorKind.NotInstalled, e.Kind);
    }
}
