using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.GuestOps;

namespace KvmOvercommit.Benchmarks;

/// <summary>
/// Get-KvmGuest's /proc scan with 300 guests: on a fake /proc tree (300 blog-style kvm command lines among 200 other
/// processes), and on the real /proc with 300 real processes whose argv is the blog's `/usr/bin/kvm …` line
/// (`exec -a /usr/bin/kvm tail -f -- … /dev/null`: about 2 MB each, killed in cleanup).
/// </summary>
[MemoryDiagnoser]
public class GuestListingBenchmarks
{
    public const int Guests = 300;
    string _fakeRoot = "";
    QemuProcessScanner _fake = null!;
    readonly QemuProcessScanner _real = new();
    readonly List<Process> _started = new();

    [GlobalSetup]
    public void Setup()
    {
        _fakeRoot = Path.Combine(Path.GetTempPath(), $"kvmoc-bench-proc-{Environment.ProcessId}");
        FakeProc.Populate(_fakeRoot, qemuCount: Guests, otherCount: 200);
        _fake = new QemuProcessScanner(new HostRoots(Proc: _fakeRoot));
        foreach (var p in StartFakeKvms(Guests)) _started.Add(p);
        // Wait until every one has exec'd (argv rewritten), so each run sees all 300.
        var sw = Stopwatch.StartNew();
        while (_real.FindQemuPids().Count(pid => _started.Any(s => s.Id == pid)) < Guests && sw.Elapsed < TimeSpan.FromSeconds(30)) Thread.Sleep(50);
    }

    /// <summary>Starts <paramref name="count"/> cheap processes whose /proc/&lt;pid&gt;/cmdline is the blog's kvm line.</summary>
    public static IEnumerable<Process> StartFakeKvms(int count)
    {
        for (int i = 1; i <= count; i++)
        {
            var psi = new ProcessStartInfo("bash") { UseShellExecute = false, RedirectStandardOutput = false };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add($"exec -a /usr/bin/kvm tail -f -- -M pc-1.0 -smp 2 -enable-kvm -m 4048 -drive file=win7-{i}.qcow2,if=virtio -net nic,model=virtio -net user -vnc :{i} -device virtio-balloon-pci -daemonize /dev/null >/dev/null 2>&1");
            yield return Process.Start(psi)!;
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var p in _started)
        {
            try { p.Kill(); p.WaitForExit(2000); } catch (InvalidOperationException) { }
            p.Dispose();
        }
        try { Directory.Delete(_fakeRoot, true); } catch (IOException) { }
    }

    [Benchmark(Baseline = true, Description = "fake /proc: 300 guests + 200 others, full scan")]
    public int FakeProcScan() => _fake.Scan().Count;

    [Benchmark(Description = "fake /proc: find the 300 QEMU pids only")]
    public int FakeProcFindPids() => _fake.FindQemuPids().Count;

    [Benchmark(Description = "real /proc: 300 blog kvm processes, full scan")]
    public int RealProcScan() => _real.Scan().Count;
}
