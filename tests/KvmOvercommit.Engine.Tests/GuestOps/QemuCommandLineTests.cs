using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.GuestOps;

public class QemuCommandLineTests
{
    static QemuCommandLine Parse(string line) => QemuCommandLine.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries));

    const string Blog = "/usr/bin/kvm -M pc-1.0 -smp 2 -enable-kvm -m 4048 -drive file=win7-7.qcow2,if=virtio -net nic,model=virtio -net user -vnc :7 -device virtio-balloon-pci -daemonize";

    [Fact]
    public void TheBlogsKvmLineIsUnderstood()
    {
        var cl = Parse(Blog);
        Assert.Equal("/usr/bin/kvm", cl.Executable);
        Assert.Null(cl.Name);
        Assert.Equal("win7-7", cl.GuestName(1234));
        Assert.Equal(4048 * Units.MiB, cl.MemoryBytes);
        Assert.Equal(2, cl.CpuCount);
        Assert.Equal("pc-1.0", cl.MachineType);
        Assert.Equal("kvm", cl.Accelerator);
        Assert.Equal(new[] { "win7-7.qcow2" }, cl.Disks);
        Assert.Equal(7, cl.VncDisplay);
        Assert.Equal(":7", cl.Vnc);
        Assert.Null(cl.QmpSocket);
        Assert.True(cl.HasBalloon);
        Assert.True(cl.Daemonize);
        Assert.Equal(new[] { "user" }, cl.Networks);
        Assert.Empty(cl.MacAddresses);
    }

    [Fact]
    public void ARealCapturedCommandLineIsUnderstood()
    {
        // /proc/<pid>/cmdline of: qemu-system-x86_64 -machine none -display none -nodefaults -name guest=hand,debug-threads=on
        //   -m 64 -qmp unix:/tmp/guestops-cap/q.sock,server=on,wait=off -daemonize -pidfile /tmp/guestops-cap/pid
        var bytes = File.ReadAllBytes(Fixture.PathOf("guestops/hand.cmdline"));
        Assert.True(ProcFiles.Argv0IsQemu(bytes));
        var argv = System.Text.Encoding.UTF8.GetString(bytes).TrimEnd('\0').Split('\0');
        var cl = QemuCommandLine.Parse(argv);
        Assert.Equal("hand", cl.Name);
        Assert.Equal(64 * Units.MiB, cl.MemoryBytes);
        Assert.Equal(1, cl.CpuCount);
        Assert.Equal("none", cl.MachineType);
        Assert.Equal("tcg", cl.Accelerator);
        Assert.Empty(cl.Disks);
        Assert.Equal("/tmp/guestops-cap/q.sock", cl.QmpSocket);
        Assert.Equal("/tmp/guestops-cap/pid", cl.PidFile);
        Assert.Null(cl.VncDisplay);
        Assert.False(cl.HasBalloon);
        Assert.Equal("hand", cl.GuestName(4242));
    }

    [Theory]
    [InlineData("plain", "plain")]
    [InlineData("guest=hand,debug-threads=on", "hand")]
    [InlineData("web,,01,debug-threads=on", "web,01")]
    [InlineData("guest=a,,b,,,,c", "a,b,,c")]
    [InlineData("debug-threads=on,guest=late", "late")]
    [InlineData("name with spaces", "name with spaces")]
    public void NameOptionForms(string value, string expected)
        => Assert.Equal(expected, QemuCommandLine.Parse(new[] { "qemu-system-x86_64", "-name", value }).Name);

    [Theory]
    [InlineData("4048", 4048L * 1024 * 1024)]
    [InlineData("4G", 4L * 1024 * 1024 * 1024)]
    [InlineData("512M", 512L * 1024 * 1024)]
    [InlineData("1.5G", 1536L * 1024 * 1024)]
    [InlineData("size=4G,slots=4,maxmem=8G", 4L * 1024 * 1024 * 1024)]
    [InlineData("slots=2,size=256", 256L * 1024 * 1024)]
    [InlineData("2GB", 2L * 1024 * 1024 * 1024)]
    public void MemoryForms(string value, long bytes)
        => Assert.Equal(bytes, QemuCommandLine.Parse(new[] { "qemu-system-x86_64", "-m", value }).MemoryBytes);

    [Fact]
    public void MemoryDefaultsToQemus128MiB()
        => Assert.Equal(128 * Units.MiB, Parse("qemu-system-x86_64 -nodefaults").MemoryBytes);

    [Theory]
    [InlineData("2", 2)]
    [InlineData("cpus=4,sockets=2,cores=2", 4)]
    [InlineData("4,maxcpus=8", 4)]
    [InlineData("sockets=2,cores=2,threads=2", 8)]
    [InlineData("maxcpus=6", 6)]
    public void SmpForms(string value, int cpus)
        => Assert.Equal(cpus, QemuCommandLine.Parse(new[] { "qemu-system-x86_64", "-smp", value }).CpuCount);

    [Fact]
    public void DisksFromEveryForm()
    {
        var cl = QemuCommandLine.Parse(new[]
        {
            "qemu-system-x86_64",
            "-drive", "file=/vm/a,,b c.qcow2,if=virtio,format=qcow2",
            "-drive", "file=/iso/install.iso,media=cdrom",
            "-hda", "/vm/legacy.img",
            "-blockdev", "driver=qcow2,node-name=d0,file.driver=file,file.filename=/vm/node.qcow2",
            "-blockdev", "{\"driver\":\"qcow2\",\"node-name\":\"d1\",\"file\":{\"driver\":\"file\",\"filename\":\"/vm/json, \\\"quoted\\\".qcow2\"}}",
            "-device", "virtio-blk-pci,drive=d0",
            "/vm/positional.raw",
        });
        Assert.Equal(new[] { "/vm/a,b c.qcow2", "/vm/legacy.img", "/vm/node.qcow2", "/vm/json, \"quoted\".qcow2", "/vm/positional.raw" }, cl.Disks);
        Assert.Equal("a,b c", cl.GuestName(1));
    }

    [Theory]
    [InlineData(":3", 3)]
    [InlineData("127.0.0.1:5", 5)]
    [InlineData(":12,password=on", 12)]
    [InlineData("unix:/run/vnc.sock", null)]
    [InlineData("none", null)]
    public void VncForms(string value, int? display)
        => Assert.Equal(display, QemuCommandLine.Parse(new[] { "qemu-system-x86_64", "-vnc", value }).VncDisplay);

    [Fact]
    public void VncFromDisplayOption()
        => Assert.Equal(4, Parse("qemu-system-x86_64 -display vnc=:4").VncDisplay);

    [Theory]
    [InlineData("qemu-system-x86_64 -qmp unix:/run/g/qmp.sock,server=on,wait=off", "/run/g/qmp.sock")]
    [InlineData("qemu-system-x86_64 -qmp unix:/run/g/qmp.sock,server,nowait", "/run/g/qmp.sock")]
    [InlineData("qemu-system-x86_64 -qmp unix:/run/a,,b/qmp.sock,server=on", "/run/a,b/qmp.sock")]
    [InlineData("qemu-system-x86_64 -chardev socket,id=mon0,path=/run/c/qmp.sock,server=on,wait=off -mon chardev=mon0,mode=control", "/run/c/qmp.sock")]
    [InlineData("qemu-system-x86_64 -chardev socket,id=hmp,path=/run/h.sock,server=on -mon chardev=hmp,mode=readline", null)]
    [InlineData("qemu-system-x86_64 -qmp tcp:127.0.0.1:4444,server=on", null)]
    public void QmpSocketForms(string line, string? socket) => Assert.Equal(socket, Parse(line).QmpSocket);

    [Theory]
    [InlineData("qemu-system-x86_64 -m 64", "tcg")]
    [InlineData("qemu-system-x86_64 -enable-kvm", "kvm")]
    [InlineData("qemu-system-x86_64 -accel kvm", "kvm")]
    [InlineData("qemu-system-x86_64 -accel tcg,thread=multi", "tcg")]
    [InlineData("qemu-system-x86_64 -machine pc,accel=kvm:tcg", "kvm")]
    [InlineData("qemu-system-x86_64 -M q35,accel=tcg", "tcg")]
    [InlineData("/usr/libexec/qemu-kvm -m 64", "kvm")]
    [InlineData("qemu-system-x86_64 --enable-kvm", "kvm")]
    public void AcceleratorForms(string line, string accel) => Assert.Equal(accel, Parse(line).Accelerator);

    [Fact]
    public void NetworksAndMacs()
    {
        var cl = Parse("qemu-system-x86_64 -net nic,model=virtio,macaddr=52:54:00:AA:00:01 -net user -netdev tap,id=n1,ifname=tap0 -device virtio-net-pci,netdev=n1,mac=52:54:00:aa:00:02 -nic bridge,br=br0,mac=52:54:00:aa:00:03");
        Assert.Equal(new[] { "52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:03" }, cl.MacAddresses);
        Assert.Equal(new[] { "user", "tap", "bridge" }, cl.Networks);
    }

    [Fact]
    public void RunDirectoryAndSerialLogOfAStartedGuest()
    {
        var cl = QemuCommandLine.Parse(new[]
        {
            "qemu-system-x86_64", "-name", "guest=web,,1", "-qmp", "unix:/run/kvmoc/web,,1/qmp.sock,server=on,wait=off",
            "-pidfile", "/run/kvmoc/web,1/qemu.pid", "-serial", "file:/run/kvmoc/web,1/serial.log", "-daemonize",
        });
        Assert.Equal("web,1", cl.Name);
        Assert.Equal("/run/kvmoc/web,1", cl.RunDirectory);
        Assert.Equal("/run/kvmoc/web,1/serial.log", cl.SerialLog);
        Assert.Null(Parse("qemu-system-x86_64 -qmp unix:/a/qmp.sock,server=on -pidfile /b/pid").RunDirectory);
        Assert.Null(Parse("qemu-system-x86_64 -qmp unix:/a/monitor,server=on -pidfile /a/pid").RunDirectory);
        Assert.Equal("/l/s.log", Parse("qemu-system-x86_64 -chardev file,id=s0,path=/l/s.log -serial chardev:s0").SerialLog);
    }

    [Fact]
    public void FlagsDoNotSwallowTheNextOption()
    {
        var cl = Parse("qemu-system-x86_64 -nodefaults -daemonize -S -name x -snapshot -m 32");
        Assert.Equal("x", cl.Name);
        Assert.Equal(32 * Units.MiB, cl.MemoryBytes);
        Assert.Equal("qemu-9", Parse("qemu-system-x86_64 -nodefaults").GuestName(9));
    }

    [Theory]
    [InlineData("qemu-system-x86_64", true)]
    [InlineData("/usr/bin/qemu-system-aarch64", true)]
    [InlineData("/usr/bin/kvm", true)]
    [InlineData("qemu-kvm", true)]
    [InlineData("qemu-img", false)]
    [InlineData("/usr/bin/kvm-ok", false)]
    [InlineData("bash", false)]
    [InlineData("", false)]
    public void QemuExecutables(string argv0, bool expected)
    {
        Assert.Equal(expected, QemuCommandLine.IsQemuExecutable(argv0));
        Assert.Equal(expected, ProcFiles.Argv0IsQemu(System.Text.Encoding.UTF8.GetBytes(argv0 + "\0-m\0" + "64\0")));
    }

    [Theory]
    [InlineData("a=1,b=2", null, "a=1;b=2")]
    [InlineData("x,b=2", "k", "k=x;b=2")]
    [InlineData("x,,y,b=2,,3", "k", "k=x,y;b=2,3")]
    [InlineData("unix:/p,server,nowait", "path", "path=unix:/p;server=on;nowait=on")]
    [InlineData("", "k", "")]
    [InlineData("a=", null, "a=")]
    public void OptionStringParsing(string value, string? implied, string expected)
        => Assert.Equal(expected, string.Join(";", QemuOptionString.Parse(value, implied).Select(kv => $"{kv.Key}={kv.Value}")));

    [Fact]
    public void EscapeRoundTrips()
    {
        var path = "/vm/a,b,,c.qcow2";
        var parsed = QemuOptionString.Parse("file=" + QemuOptionString.Escape(path) + ",if=virtio");
        Assert.Equal(path, QemuOptionString.Get(parsed, "file"));
    }
}
