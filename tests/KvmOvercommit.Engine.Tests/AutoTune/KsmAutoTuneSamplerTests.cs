using KvmOvercommit.Engine.Ksm.AutoTune;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.AutoTune;

/// <summary>The sampler on a fake /sys and /proc: what it reads, and when it lists /proc and when it need not.</summary>
public class KsmAutoTuneSamplerTests
{
    sealed class FakeHost : IDisposable
    {
        readonly TempDir _dir = new("kvmoc-sampler");
        public readonly HostRoots Roots;

        public FakeHost()
        {
            Roots = new HostRoots(_dir.File("sys"), _dir.File("proc"), _dir.File("dev"));
            Ksm(shared: 0, sharing: 0, fullScans: 0);
            _dir.Write("proc/meminfo", "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n");
            LastPid(100);
        }

        public void Ksm(long shared, long sharing, long fullScans)
        {
            foreach (var (file, value) in new[] { ("pages_shared", shared), ("pages_sharing", sharing), ("pages_unshared", 0L), ("pages_volatile", 0L), ("full_scans", fullScans), ("pages_scanned", 0L), ("run", 1L) })
                _dir.Write($"sys/kernel/mm/ksm/{file}", $"{value}\n");
        }

        public void LastPid(int pid) => _dir.Write("proc/loadavg", $"0.29 0.69 0.37 1/123 {pid}\n");

        public void Write(string path, string text) => _dir.Write(path, text);

        public void NoLoadavg() => File.Delete(_dir.File("proc/loadavg"));

        public void Process(int pid, bool mergeable, long rmap, long resident)
        {
            _dir.Write($"proc/{pid}/ksm_stat", $"ksm_rmap_items {rmap}\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: {(mergeable ? "yes" : "no")}\n");
            _dir.Write($"proc/{pid}/statm", $"{resident * 2} {resident} 100 10 0 {resident} 0\n");
        }

        /// <summary>/proc/pid/stat with utime and stime (fields 14 and 15) after a command name with spaces and parentheses.</summary>
        public void Cpu(int pid, long utime, long stime) =>
            _dir.Write($"proc/{pid}/stat", $"{pid} (qemu (x) y) S 1 {pid} {pid} 0 -1 4194560 5000 0 12 0 {utime} {stime} 0 0 20 0 3 0 500 1000000 2000 18446744073709551615\n");

        public void Exit(int pid) => Directory.Delete(_dir.File($"proc/{pid}"), recursive: true);

        public void Dispose() => _dir.Dispose();
    }

    [Fact]
    public void Reads_counters_mergeable_processes_and_memory()
    {
        using var host = new FakeHost();
        host.Ksm(shared: 100, sharing: 3000, fullScans: 7);
        host.Process(11, mergeable: true, rmap: 16384, resident: 17000);
        host.Process(12, mergeable: false, rmap: 0, resident: 5000);
        using var sampler = new KsmAutoTuneSampler(host.Roots);
        var o = sampler.Read();
        Assert.Equal((100L, 3000L, 7L), (o.PagesShared, o.PagesSharing, o.FullScans));
        Assert.Equal(new[] { 11 }, o.MergeableProcessIds);
        Assert.Equal(16384, o.RmapItems);
        Assert.Equal(17000, o.MergeableResidentPages);
        Assert.Equal(16000000L * 1024, o.MemTotalBytes);
        Assert.Equal(8000000L * 1024, o.MemAvailableBytes);
        Assert.Null(o.KsmdCpuSeconds); // no ksmd in the fake tree
    }

    [Fact]
    public void Skips_listing_proc_while_no_process_was_created_and_still_sees_exits()
    {
        using var host = new FakeHost();
        host.Process(11, mergeable: true, rmap: 16384, resident: 17000);
        using var sampler = new KsmAutoTuneSampler(host.Roots) { RecheckInterval = TimeSpan.FromHours(1) };
        Assert.Equal(new[] { 11 }, sampler.Read().MergeableProcessIds);

        // No new pid in loadavg: the listing is skipped (a directory appearing without a fork cannot happen for real).
        host.Process(12, mergeable: true, rmap: 100, resident: 200);
        Assert.Equal(new[] { 11 }, sampler.Read().MergeableProcessIds);
        Assert.Equal(1, sampler.ListingsSkipped);

        // A process was created: listed again, the new one is seen at once.
        host.LastPid(101);
        Assert.Equal(new[] { 11, 12 }, sampler.Read().MergeableProcessIds);
        Assert.Equal(1, sampler.ListingsSkipped);

        // An exit creates no pid: the tracked process drops out when its ksm_stat is gone.
        host.Exit(11);
        var o = sampler.Read();
        Assert.Equal(new[] { 12 }, o.MergeableProcessIds);
        Assert.Equal(200, o.MergeableResidentPages);
        Assert.Equal(2, sampler.ListingsSkipped);
    }

    [Fact]
    public void Lists_proc_every_time_without_loadavg_and_after_the_recheck_interval()
    {
        using var host = new FakeHost();
        host.NoLoadavg();
        using var sampler = new KsmAutoTuneSampler(host.Roots);
        Assert.Empty(sampler.Read().MergeableProcessIds);
        host.Process(21, mergeable: true, rmap: 10, resident: 20);
        Assert.Equal(new[] { 21 }, sampler.Read().MergeableProcessIds);
        Assert.Equal(0, sampler.ListingsSkipped);

        using var host2 = new FakeHost();
        using var sampler2 = new KsmAutoTuneSampler(host2.Roots) { RecheckInterval = TimeSpan.Zero };
        sampler2.Read();
        host2.Process(22, mergeable: true, rmap: 10, resident: 20);
        Assert.Equal(new[] { 22 }, sampler2.Read().MergeableProcessIds);
        Assert.Equal(0, sampler2.ListingsSkipped);
    }

    [Fact]
    public void ListingInterval_limits_listings_while_processes_keep_being_created()
    {
        using var host = new FakeHost();
        using var sampler = new KsmAutoTuneSampler(host.Roots) { RecheckInterval = TimeSpan.FromHours(1), ListingInterval = TimeSpan.FromHours(1) };
        sampler.Read();
        host.Process(41, mergeable: true, rmap: 10, resident: 20);
        host.LastPid(41);
        Assert.Empty(sampler.Read().MergeableProcessIds); // a busy host: no listing within the interval
        Assert.Equal(1, sampler.ListingsSkipped);
        sampler.ListingInterval = TimeSpan.Zero;           // idle again: the moved pid lists /proc at once
        Assert.Equal(new[] { 41 }, sampler.Read().MergeableProcessIds);
        Assert.Equal(1, sampler.ListingsSkipped);
    }

    [Fact]
    public void Memory_is_read_at_most_once_per_slow_interval()
    {
        using var host = new FakeHost();
        using var sampler = new KsmAutoTuneSampler(host.Roots) { SlowReadInterval = TimeSpan.FromHours(1) };
        Assert.Equal(8000000L * 1024, sampler.Read().MemAvailableBytes);
        host.Write("proc/meminfo", "MemTotal:       16000000 kB\nMemAvailable:    1000 kB\n");
        Assert.Equal(8000000L * 1024, sampler.Read().MemAvailableBytes); // the last value, not re-read
        using var eager = new KsmAutoTuneSampler(host.Roots) { SlowReadInterval = TimeSpan.Zero };
        eager.Read();
        Assert.Equal(1000L * 1024, eager.Read().MemAvailableBytes);
    }

    [Fact]
    public void A_process_that_madvises_later_is_found_while_it_is_young()
    {
        using var host = new FakeHost();
        using var sampler = new KsmAutoTuneSampler(host.Roots) { RecheckInterval = TimeSpan.FromHours(1) };
        sampler.Read();
        host.Process(31, mergeable: false, rmap: 0, resident: 20);
        host.LastPid(31);
        Assert.Empty(sampler.Read().MergeableProcessIds);
        host.Process(31, mergeable: true, rmap: 0, resident: 16000); // QEMU madvised its RAM
        Assert.Equal(new[] { 31 }, sampler.Read().MergeableProcessIds);
        Assert.True(sampler.ListingsSkipped >= 1);
    }

    [Fact]
    public void The_busiest_mergeable_process_CPU_fraction_comes_from_utime_and_stime_between_two_readings()
    {
        using var host = new FakeHost();
        host.Process(11, mergeable: true, rmap: 100, resident: 200);
        host.Process(12, mergeable: true, rmap: 100, resident: 200);
        host.Process(13, mergeable: false, rmap: 0, resident: 200);
        host.Cpu(11, 1000, 500);
        host.Cpu(12, 10, 5);
        host.Cpu(13, 0, 0);
        using var sampler = new KsmAutoTuneSampler(host.Roots);
        Assert.Null(sampler.Read().MaxProcessCpuFraction); // one reading: no interval yet
        var t0 = DateTime.UtcNow;
        Thread.Sleep(500);
        host.Cpu(11, 1010, 500);  // 10 ticks = 0.1 s of CPU
        host.Cpu(12, 40, 25);     // 50 ticks = 0.5 s
        host.Cpu(13, 100000, 0);  // not mergeable: not counted
        var o = sampler.Read();
        double dt = (DateTime.UtcNow - t0).TotalSeconds;
        Assert.NotNull(o.MaxProcessCpuFraction);
        Assert.InRange(o.MaxProcessCpuFraction!.Value, 0.5 / (dt + 0.05), 0.5 / 0.5);
        host.Write("proc/12/stat", "garbage\n"); // unreadable: that process drops out of the figure, the other stays
        o = sampler.Read();
        Assert.InRange(o.MaxProcessCpuFraction!.Value, 0, 0.1 / 0.5);
    }

    [Fact]
    public void CPU_is_read_every_CpuReadInterval_and_taken_over_the_last_CpuWindow()
    {
        // A guest's QEMU drops from a full core to nothing when it has booted: read every poll, over the last 0.5 s.
        using var host = new FakeHost();
        host.Process(11, mergeable: true, rmap: 100, resident: 200);
        host.Cpu(11, 0, 0);
        using var sampler = new KsmAutoTuneSampler(host.Roots) { ProcessReadInterval = TimeSpan.FromHours(1), CpuReadInterval = TimeSpan.Zero };
        var start = System.Diagnostics.Stopwatch.StartNew();
        Assert.Null(sampler.Read().MaxProcessCpuFraction);
        Thread.Sleep(300);
        host.Cpu(11, 20, 10); // 30 ticks: busy for 0.3 s, then it stops
        double busy = sampler.Read().MaxProcessCpuFraction!.Value;
        Assert.InRange(busy, 0.3 / (start.Elapsed.TotalSeconds + 0.05), 1.0 / 0.25); // over all there is yet: ~100%
        while (start.Elapsed < TimeSpan.FromMilliseconds(650)) Thread.Sleep(20);
        double half = sampler.Read().MaxProcessCpuFraction!.Value; // base: the first reading (the newest >= 0.5 s old)
        Assert.InRange(half, 0.3 / (start.Elapsed.TotalSeconds + 0.05), 0.3 / 0.6);
        while (start.Elapsed < TimeSpan.FromMilliseconds(950)) Thread.Sleep(20);
        // Base: the reading at 0.3 s, newest one at least 0.5 s old: nothing since. Quiet 0.65 s after it stopped,
        // where one reading every 0.5 s (the ksm_stat interval) saw it only at the next one.
        Assert.Equal(0, sampler.Read().MaxProcessCpuFraction);
    }
}
