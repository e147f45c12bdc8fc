using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Ksm;

public class KsmWatcherTests
{
    /// <summary>A fake KSM folder plus a fake /proc holding a ksmd thread whose CPU ticks the test sets.</summary>
    sealed class FakeHost : IDisposable
    {
        readonly FakeKsmKernel _ksm = new();
        readonly TempDir _proc = new("kvmoc-fakeproc");

        public FakeHost()
        {
            Roots = _ksm.Roots with { Proc = _proc.Path };
            _proc.Write("37/comm", "ksmd\n");
            _proc.Write("1/comm", "init\n");
            _proc.Write("1/stat", "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 5 5 0 0 20 0 1 0 2 0 0 0\n");
            Ticks(0);
        }

        public HostRoots Roots { get; }
        public string this[string file] { set => _ksm[file] = value; }
        public void Ticks(long utimePlusStime) =>
            _proc.Write("37/stat", $"37 (ksmd) S 2 0 0 0 -1 2097216 0 0 0 0 {utimePlusStime - utimePlusStime / 2} {utimePlusStime / 2} 0 0 25 5 1 0 19 0 0\n");

        public void Dispose() { _ksm.Dispose(); _proc.Dispose(); }
    }

    [Fact]
    public async Task Deltas_and_rates_come_from_consecutive_samples()
    {
        using var h = new FakeHost();
        h["run"] = "1";
        await using var e = new KsmWatcher(h.Roots).WatchAsync(new KsmWatchOptions { Interval = TimeSpan.FromMilliseconds(200), Count = 2 }).GetAsyncEnumerator();
        Assert.True(await e.MoveNextAsync());
        Assert.Equal(1, e.Current.Index);
        Assert.Equal(0, e.Current.PagesMergedPerSecond);
        // Between the samples: 1000 more pages merged, 50000 scanned, 2 full scans, profit +4 MB, ksmd used 10 ticks.
        h["pages_sharing"] = "1000";
        h["pages_shared"] = "10";
        h["pages_scanned"] = "50000";
        h["full_scans"] = "2";
        h["general_profit"] = "4000000";
        h.Ticks(10);
        Assert.True(await e.MoveNextAsync());
        var s = e.Current;
        Assert.Equal(2, s.Index);
        Assert.InRange(s.IntervalSeconds, 0.15, 2);
        Assert.InRange(s.PagesMergedPerSecond!.Value, 1000 / s.IntervalSeconds * 0.99, 1000 / s.IntervalSeconds * 1.01);
        Assert.InRange(s.PagesScannedPerSecond!.Value, 50000 / s.IntervalSeconds * 0.99, 50000 / s.IntervalSeconds * 1.01);
        Assert.Equal(2, s.FullScansDelta);
        Assert.Equal(4000000, s.GeneralProfitDelta);
        Assert.Equal(1000L * Environment.SystemPageSize, s.SavedBytesDelta);
        Assert.Equal(0.1, s.KsmdCpuSeconds!.Value, 3);
        Assert.InRange(s.KsmdCpuPercent!.Value, 10 / s.IntervalSeconds * 0.98, 10 / s.IntervalSeconds * 1.02);
        Assert.Equal(KsmRunState.Merging, s.Run);
        Assert.False(await e.MoveNextAsync());
    }

    [Fact]
    public async Task Until_stable_needs_no_growth_and_while_merging_a_full_scan()
    {
        using var h = new FakeHost();
        h["run"] = "1";
        var samples = new List<KsmSample>();
        await foreach (var s in new KsmWatcher(h.Roots).WatchAsync(new KsmWatchOptions { Interval = TimeSpan.FromMilliseconds(20), Count = 50, UntilStable = true, StableSamples = 2 }))
        {
            samples.Add(s);
            if (samples.Count == 5) h["full_scans"] = "1"; // a whole pass found nothing new
        }
        Assert.Equal(6, samples.Count);
        Assert.True(samples[^1].Stable);
        Assert.All(samples.Take(5), s => Assert.False(s.Stable));
    }

    [Fact]
    public async Task Until_stable_while_stopped_only_needs_no_growth()
    {
        using var h = new FakeHost();
        var samples = new List<KsmSample>();
        await foreach (var s in new KsmWatcher(h.Roots).WatchAsync(new KsmWatchOptions { Interval = TimeSpan.FromMilliseconds(20), Count = 50, UntilStable = true, StableSamples = 3 }))
            samples.Add(s);
        Assert.Equal(3, samples.Count);
    }

    [Fact]
    public async Task Duration_and_cancellation_end_the_watch()
    {
        using var h = new FakeHost();
        var samples = new List<KsmSample>();
        var interval = TimeSpan.FromMilliseconds(50);
        var duration = TimeSpan.FromMilliseconds(260);
        await foreach (var x in new KsmWatcher(h.Roots).WatchAsync(new KsmWatchOptions { Interval = interval, Duration = duration })) samples.Add(x);
        Assert.NotEmpty(samples);
        // It stops at the first sample after which another one would end past the duration, and not before.
        Assert.True(samples[^1].Elapsed + interval > duration - TimeSpan.FromMilliseconds(5), $"stopped early at {samples[^1].Elapsed}");
        Assert.All(samples.SkipLast(1), x => Assert.True(x.Elapsed + interval <= duration + TimeSpan.FromMilliseconds(5)));
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(150));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in new KsmWatcher(h.Roots).WatchAsync(new KsmWatchOptions { Interval = TimeSpan.FromMilliseconds(50) }, cts.Token)) { }
        });
    }

    [Fact]
    public void Finds_ksmd_by_comm_and_reads_its_ticks()
    {
        using var h = new FakeHost();
        h.Ticks(7);
        Assert.Equal(37, KsmWatcher.FindKsmd(h.Roots));
        Assert.Equal(7, KsmWatcher.ReadCpuTicks(h.Roots, 37));
        Assert.Null(KsmWatcher.ReadCpuTicks(h.Roots, 4242));
    }

    [Fact]
    public async Task Invalid_options_are_InvalidArgument()
    {
        using var h = new FakeHost();
        var e = await Assert.ThrowsAsync<KvmOcException>(async () => { await foreach (var _ in new KsmWatcher(h.Roots).WatchAsync(new KsmWatchOptions { Interval = TimeSpan.Zero })) { } });
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
    }
}
