using System.Diagnostics;
using KvmOvercommit.Engine.Io;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Host;

public class ProcessIoTests
{
    const string IoText = "rchar: 6976\nwchar: 100\nsyscr: 10\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";

    [Fact]
    public void ParsesProcPidIo()
    {
        var c = ProcessIoCounters.Parse(IoText)!;
        Assert.Equal(6976UL, c.ReadChars);
        Assert.Equal(100UL, c.WriteChars);
        Assert.Equal(10UL, c.ReadSyscalls);
        Assert.Equal(2UL, c.WriteSyscalls);
        Assert.Equal(4096UL, c.ReadBytes);
        Assert.Equal(8192UL, c.WriteBytes);
        Assert.Null(ProcessIoCounters.Parse(""));
        Assert.Null(ProcessIoCounters.Parse(null));
    }

    [Fact]
    public void ParsesCgroupIoStat()
    {
        var l = CgroupIoStat.Parse("254:0 rbytes=1310720 wbytes=4096 rios=320 wios=1 dbytes=0 dios=0\n8:0 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0 cost.vrate=100.00\n");
        Assert.Equal(2, l.Count);
        Assert.Equal("254:0", l[0].DeviceNumber);
        Assert.Equal(320UL, l[0].ReadIos);
        Assert.Equal(1UL, l[0].WriteIos);
        Assert.Equal(1310720UL, l[0].ReadBytes);
    }

    /// <summary>A fake /proc and /sys/fs/cgroup where pid 4242 (a QEMU named web1) sits alone in its own scope with the io controller.</summary>
    sealed class FakeTree : IDisposable
    {
        public readonly TempDir Dir = new();
        public HostRoots Roots => new(Sys: Dir.File("sys"), Proc: Dir.File("proc"));
        public FakeTree(bool alone = true, bool ioController = true)
        {
            Dir.Write("proc/4242/comm", "qemu-system-x86\n");
            Dir.Write("proc/4242/cmdline", "/usr/bin/qemu-system-x86_64\0-name\0guest=web1\0-m\0512\0");
            Dir.Write("proc/4242/cgroup", "9:name=systemd:/\n0::/machine.slice/web1.scope\n");
            Dir.Write("proc/77/comm", "bash\n");
            Dir.Write("proc/77/cmdline", "bash\0");
            Dir.Write("proc/77/io", IoText);
            Dir.Write("proc/77/cgroup", "0::/user.slice\n");
            Dir.Write("sys/fs/cgroup/unified/cgroup.controllers", "io memory pids\n");
            Dir.Write("sys/fs/cgroup/unified/machine.slice/web1.scope/cgroup.procs", alone ? "4242\n" : "4242\n4243\n");
            if (ioController) Io(0, 0);
            Pid(0, 0, 0);
        }
        public void Pid(ulong syscw, ulong writeBytes, ulong readBytes)
            => Dir.Write("proc/4242/io", $"rchar: 0\nwchar: {syscw * 4096}\nsyscr: 0\nsyscw: {syscw}\nread_bytes: {readBytes}\nwrite_bytes: {writeBytes}\ncancelled_write_bytes: 0\n");
        public void Io(ulong rios, ulong wios)
            => Dir.Write("sys/fs/cgroup/unified/machine.slice/web1.scope/io.stat", $"254:0 rbytes=0 wbytes=0 rios={rios} wios={wios} dbytes=0 dios=0\n");
        public void Dispose() => Dir.Dispose();
    }

    [Fact]
    public async Task OwnCgroupGivesTrueIops()
    {
        using var tree = new FakeTree();
        int step = 0;
        var sampler = new ProcessIopsSampler(tree.Roots, async (d, ct) =>
        {
            await Task.Delay(40, ct);
            step++;
            tree.Pid(0, (ulong)step * 409600, 0); // libaio: bytes but no syscalls
            tree.Io((ulong)step * 7, (ulong)step * 100);
        });
        var targets = sampler.Resolve(null, new[] { "web*" });
        var t = Assert.Single(targets);
        Assert.Equal(4242, t.Id);
        Assert.Equal("web1", t.Name);
        var rows = new List<ProcessIops>();
        await foreach (var r in sampler.SampleAsync(targets, TimeSpan.FromMilliseconds(40), 2)) rows.Add(r);
        Assert.Equal(2, rows.Count);
        foreach (var r in rows)
        {
            Assert.Equal("web1", r.Name);
            Assert.Equal("/machine.slice/web1.scope", r.Cgroup);
            Assert.Equal(100, r.WriteIopsPerSec!.Value * r.IntervalSeconds, 6);
            Assert.Equal(7, r.ReadIopsPerSec!.Value * r.IntervalSeconds, 6);
            Assert.Equal(107, r.Iops!.Value * r.IntervalSeconds, 6);
            Assert.Equal(409600, r.WriteBytesPerSec * r.IntervalSeconds, 3);
            Assert.Equal(0, r.WriteSyscallsPerSec);
            Assert.Contains("WriteIopsPerSec=cgroup /machine.slice/web1.scope io.stat:wios", r.Source);
            Assert.Contains("WriteBytesPerSec=/proc/4242/io:write_bytes", r.Source);
            Assert.Contains(ProcessIopsSampler.LibaioNote, r.Note);
        }
    }

    [Theory]
    [InlineData(false, true, "holds 2 processes")]
    [InlineData(true, false, "no io controller")]
    public async Task SharedOrUncontrolledCgroupGivesNoIops(bool alone, bool ioController, string reason)
    {
        using var tree = new FakeTree(alone, ioController);
        var sampler = new ProcessIopsSampler(tree.Roots, (d, ct) => Task.Delay(10, ct));
        Assert.Contains(reason, sampler.FindOwnIoCgroup(4242).Reason);
        var verbose = new List<string>();
        var observer = new ListObserver(verbose);
        var rows = new List<ProcessIops>();
        await foreach (var r in sampler.SampleAsync(sampler.Resolve(new[] { 4242 }, null), TimeSpan.FromMilliseconds(10), 1, observer)) rows.Add(r);
        var row = Assert.Single(rows);
        Assert.Null(row.Iops);
        Assert.Null(row.Cgroup);
        Assert.Contains(row.Note, n => n.StartsWith("No per-process IOPS"));
        Assert.DoesNotContain(row.Source, s => s.Contains("io.stat"));
        Assert.Contains(verbose, v => v.Contains(reason));
    }

    [Fact]
    public void UnknownIdOrNameIsNotFound()
    {
        using var tree = new FakeTree();
        var sampler = new ProcessIopsSampler(tree.Roots);
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<KvmOcException>(() => sampler.Resolve(new[] { 999999 }, null)).Kind);
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<KvmOcException>(() => sampler.Resolve(null, new[] { "nosuch" })).Kind);
        Assert.Empty(sampler.Resolve(null, new[] { "nosuch*" }));
        Assert.Equal(new[] { 77 }, sampler.Resolve(null, new[] { "bash" }).Select(t => t.Id));
    }

    sealed class ListObserver(List<string> verbose) : IOperationObserver
    {
        public void Verbose(string message) => verbose.Add(message);
        public void Warning(string message) => verbose.Add("WARNING: " + message);
        public void Progress(ProgressInfo progress) { }
    }
}

/// <summary>Measure-ProcessIops on a real fio (threads in one process, so /proc/pid/io sees all of its I/O).</summary>
[Collection(HostSerialCollection.Name)]
public class ProcessIoHostTests
{
    [SkippableTheory]
    [InlineData("psync")]
    [InlineData("libaio")]
    public async Task FioAtAFixedRate(string engine)
    {
        var fio = Prereq.RequireTool("fio");
        using var dir = new TempDir("kvmoc-pio");
        var psi = new ProcessStartInfo(fio) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "--name=t", $"--filename={dir.File("f")}", "--rw=write", "--bs=4k", $"--ioengine={engine}", "--direct=1", "--size=64M",
                                  "--time_based", "--runtime=30", "--rate_iops=200", "--thread", "--fallocate=none" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        try
        {
            var sampler = new ProcessIopsSampler();
            var target = sampler.Resolve(new[] { p.Id }, null);
            await Task.Delay(1500);
            ProcessIops? last = null;
            await foreach (var r in sampler.SampleAsync(target, TimeSpan.FromSeconds(2), 1)) last = r;
            Assert.NotNull(last);
            Assert.Equal("fio", last!.Name);
            Assert.InRange(last.WriteBytesPerSec, 200 * 4096 * 0.9, 200 * 4096 * 1.1);
            if (engine == "psync")
                Assert.InRange(last.WriteSyscallsPerSec, 200 * 0.9, 200 * 1.1 + 5);
            else
                Assert.InRange(last.WriteSyscallsPerSec, 0, 5); // libaio submissions are not write syscalls
        }
        finally
        {
            try { p.Kill(true); p.WaitForExit(5000); } catch (InvalidOperationException) { }
        }
    }
}
