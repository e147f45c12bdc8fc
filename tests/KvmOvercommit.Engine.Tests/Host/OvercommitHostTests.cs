using System.Diagnostics;
using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Host;

/// <summary>
/// Get-OvercommitReport against real QEMU processes: two guests without a kernel (they sit in the firmware, which
/// is enough to be found by the scanner, hold resident memory and lock their disks) on overlays of one base image.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class OvercommitHostTests
{
    [SkippableFact]
    public async Task ReportCountsRealGuestsAndTheirSharedBase()
    {
        var qemu = Prereq.RequireTool("qemu-system-x86_64");
        var qemuImg = Prereq.RequireTool("qemu-img");
        using var dir = new TempDir("kvmoc-report");
        Run(qemuImg, "create", "-q", "-f", "qcow2", dir.File("base.qcow2"), "1G");
        var procs = new List<Process>();
        try
        {
            var names = new[] { $"kvmoc-rep-a-{Environment.ProcessId}", $"kvmoc-rep-b-{Environment.ProcessId}" };
            foreach (var name in names)
            {
                var overlay = dir.File(name + ".qcow2");
                Run(qemuImg, "create", "-q", "-f", "qcow2", "-b", dir.File("base.qcow2"), "-F", "qcow2", overlay);
                var psi = new ProcessStartInfo(qemu) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
                foreach (var a in new[] { "-name", $"guest={name}", "-m", "64", "-smp", "1", "-nodefaults", "-display", "none", "-accel", "tcg",
                                          "-drive", $"file={overlay},format=qcow2,if=virtio" })
                    psi.ArgumentList.Add(a);
                procs.Add(Process.Start(psi)!);
            }
            // Wait until both processes are visible to the scanner with some resident memory.
            var scanner = new QemuProcessScanner();
            for (int i = 0; i < 50 && scanner.Scan().Count(g => names.Contains(g.Name) && g.RssBytes > 0) < 2; i++) await Task.Delay(100);

            var report = await new OvercommitReportBuilder().BuildAsync(10, 0.2, probeDisks: true, NullObserver.Instance, default);
            var mine = report.Guests.Where(g => names.Contains(g.Name)).ToList();
            Assert.Equal(2, mine.Count);
            Assert.All(mine, g => Assert.Equal(64L * 1024 * 1024, g.MemoryBytes));
            Assert.All(mine, g => Assert.True(g.RssBytes > 0));
            Assert.True(report.GuestVcpus >= 2);
            Assert.NotNull(report.EstimatedAdditionalGuests);
            Assert.NotNull(report.UniqueResidentPerGuestBytes);
            var disk = Assert.Single(report.DiskRatios, d => d.BaseImage == dir.File("base.qcow2"));
            Assert.Equal(2, disk.DiskCount);
            Assert.Equal(2L * 1024 * 1024 * 1024, disk.VirtualBytes);
            long allocated = new[] { "base.qcow2", names[0] + ".qcow2", names[1] + ".qcow2" }.Sum(f => AllocatedBytes(dir.File(f)));
            Assert.Equal(allocated, disk.AllocatedBytes);
            Assert.Contains(report.Explanation, e => e.StartsWith($"DiskRatio for {dir.File("base.qcow2")}: 2 disk(s)"));

            var mem = new HostInfoReader().ReadMemory();
            Assert.True(mem.GuestCommittedBytes >= 128L * 1024 * 1024);
        }
        finally
        {
            foreach (var p in procs)
            {
                try { if (!p.HasExited) { p.Kill(); p.WaitForExit(5000); } } catch (InvalidOperationException) { }
                p.Dispose();
            }
        }
    }

    /// <summary>st_blocks × 512, which is what qemu-img reports as actual-size.</summary>
    static long AllocatedBytes(string path)
    {
        var psi = new ProcessStartInfo("stat", $"-c %b {path}") { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        var s = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return long.Parse(s) * 512;
    }

    static void Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }
}
