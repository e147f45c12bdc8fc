using System.Diagnostics;
using System.Text;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;
using Xunit.Abstractions;

namespace KvmOvercommit.Engine.Tests.Guests;

public class CpioWriterTests
{
    [SkippableFact]
    public void Archive_Lists_And_Extracts_With_Cpio()
    {
        var cpio = Prereq.RequireTool("cpio");
        using var d = new TempDir();
        var archive = d.File("a.cpio");
        using (var w = new CpioWriter(File.Create(archive)))
        {
            w.Directory("bin");
            w.File("bin/hello", Encoding.UTF8.GetBytes("hello, world\n"), 0x1ED);
            w.File("odd", new byte[] { 1, 2, 3 });
            w.Symlink("bin/sh", "hello");
            w.CharDevice("dev-console", 5, 1);
            w.Finish();
        }
        var psi = new ProcessStartInfo(cpio) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = d.Path };
        foreach (var a in new[] { "-tv" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.BaseStream.Write(File.ReadAllBytes(archive));
        p.StandardInput.Close();
        var listing = p.StandardOutput.ReadToEnd();
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        Assert.Contains("-rwxr-xr-x", listing);
        Assert.Contains("bin/hello", listing);
        Assert.Contains("bin/sh -> hello", listing);
        Assert.Matches(@"crw-------.*5,\s*1.*dev-console", listing);
        Assert.DoesNotContain("trailing garbage", err);
        Assert.Equal(0, new FileInfo(archive).Length % 4);
    }
}

[Collection(HostSerialCollection.Name)]
public class TinyGuestTests(ITestOutputHelper output)
{
    [SkippableFact]
    public async Task Builds_Caches_And_Boots_To_Ready_Under_Tcg()
    {
        var qemu = Prereq.RequireTool("qemu-system-x86_64");
        Prereq.RequireTool("apt-get");
        Prereq.Require(File.Exists("/bin/busybox"), "busybox-static");
        var image = await TinyGuest.GetAsync(null, NullObserver.Instance);
        Assert.True(File.Exists(image.Kernel));
        Assert.True(File.Exists(image.Initrd));
        Assert.Matches(@"^\d+\.\d+\.\d+-\d+-cloud-amd64$", image.KernelVersion);
        Assert.Contains("virtio_blk", image.Modules);
        var again = await TinyGuest.GetAsync(null, NullObserver.Instance);
        Assert.False(again.Built);
        Assert.Equal(image.Initrd, again.Initrd);

        var sw = Stopwatch.StartNew();
        var psi = new ProcessStartInfo(qemu) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-machine", "pc,accel=tcg", "-m", "128", "-nodefaults", "-display", "none", "-serial", "stdio",
                     "-kernel", image.Kernel, "-initrd", image.Initrd, "-append", "console=ttyS0 quiet" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        try
        {
            var log = new StringBuilder();
            var ready = await ReadUntilAsync(p.StandardOutput, image.ReadyMarker, log, TimeSpan.FromSeconds(60));
            output.WriteLine($"boot to ready: {sw.Elapsed.TotalSeconds:0.00} s");
            output.WriteLine(log.ToString());
            Assert.True(ready, "no ready line:\n" + log);
        }
        finally
        {
            p.Kill();
            p.WaitForExit(5000);
        }
    }

    internal static async Task<bool> ReadUntilAsync(StreamReader r, string marker, StringBuilder log, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await r.ReadLineAsync(cts.Token) is { } line)
            {
                log.AppendLine(line);
                if (line.Contains(marker)) return true;
            }
        }
        catch (OperationCanceledException) { }
        return false;
    }
}

public class TinyGuestPrerequisiteTests
{
    [SkippableFact]
    public void Static_And_Dynamic_Elf_Are_Told_Apart()
    {
        Skip.IfNot(File.Exists("/bin/busybox") && File.Exists("/bin/ls"));
        Assert.False(TinyGuest.IsDynamicElf("/bin/busybox"));
        Assert.True(TinyGuest.IsDynamicElf("/bin/ls"));
    }

    [Fact]
    public async Task Missing_Or_Dynamic_Busybox_Says_What_To_Install()
    {
        using var d = new TempDir();
        var missing = await Assert.ThrowsAsync<KvmOcException>(() => TinyGuest.GetAsync(new TinyGuestOptions { Busybox = d.File("busybox"), CacheRoot = d.Path }, NullObserver.Instance));
        Assert.Equal(ErrorKind.NotInstalled, missing.Kind);
        Assert.Contains("busybox-static", missing.Hint);
        if (!File.Exists("/bin/ls")) return;
        var dynamic = await Assert.ThrowsAsync<KvmOcException>(() => TinyGuest.GetAsync(new TinyGuestOptions { Busybox = "/bin/ls", CacheRoot = d.Path }, NullObserver.Instance));
        Assert.Equal("BusyboxNotStatic", dynamic.ErrorId);
        Assert.Contains("apt-get install busybox-static", dynamic.Hint);
        Assert.Empty(Directory.GetFileSystemEntries(d.Path)); // nothing downloaded or written
    }

    [Fact]
    public void Init_Script_Loads_Modules_In_Dependency_Order_And_Prints_The_Marker()
    {
        var script = TinyGuestInit.Render();
        Assert.StartsWith("#!/bin/sh", script);
        Assert.Contains("for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk virtio_balloon button evdev; do", script);
        Assert.Contains("echo \"KVMOC-READY\"", script);
        Assert.DoesNotContain("@", script.Replace("$@", ""));
    }
}
