using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Ksm.AutoTune;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;
using KvmOvercommit.Engine.Tests.Ksm;

namespace KvmOvercommit.Engine.Tests.AutoTune;

/// <summary>
/// The adaptive tuner on the real kernel KSM with real mergeable processes (`kvmoc ksm workload`): it merges fast,
/// backs off to a low rate, wakes for new processes, and whatever ends it leaves KSM merging at a low rate (at most
/// the kernel default of 100 pages / 20 ms). Every KSM setting is restored exactly afterwards.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class KsmAutoTuneHostTests
{
    static readonly long Pages64 = 64L * Units.MiB / Environment.SystemPageSize;

    /// <summary>At most the kernel's default scan rate (100 pages per 20 ms), and merging.</summary>
    static void AssertLowRate(string when)
    {
        var s = KsmStatReader.Read();
        Assert.Equal(KsmRunState.Merging, s.Run);
        Assert.True(s.PagesToScan * 20 <= 100 * s.SleepMilliseconds,
            $"{when}: KSM left at {s.PagesToScan} pages / {s.SleepMilliseconds} ms, faster than the kernel default 100 / 20 ms");
    }

    /// <summary>Unmerges everything (run=2) so that what merges next is the test's own.</summary>
    static void FreshUnmerge()
    {
        var start = KsmStatReader.Read();
        new KsmTuner().Set(new KsmTuning { Run = KsmRunState.Unmerging, AdvisorMode = start.AdvisorMode is null ? null : "none", PagesToScan = 100, SleepMilliseconds = 20 });
        var s = KsmStatReader.Read();
        Assert.True(s.PagesShared == 0 && s.PagesSharing == 0, $"run=2 left {s.PagesShared} shared / {s.PagesSharing} sharing");
    }

    /// <summary>Polls until <paramref name="done"/> holds; returns how long it took, or null after <paramref name="limit"/>.</summary>
    static async Task<TimeSpan?> WaitFor(Func<bool> done, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < limit)
        {
            if (done()) return clock.Elapsed;
            await Task.Delay(50);
        }
        return done() ? clock.Elapsed : null;
    }

    static long MergingPages(int pid) => KsmProcessReader.Read(null, pid)?.KsmMergingPages ?? 0;

    /// <summary>Runs <paramref name="body"/> with the host checks, the settings guard, and the exact-restore assertions.</summary>
    static async Task WithKsm(Func<Task> body)
    {
        KsmHostTests.RequireHost();
        var before = KsmHostTests.KnobFiles();
        var guard = new KsmSettingsGuard();
        try
        {
            FreshUnmerge();
            await body();
        }
        finally
        {
            guard.Dispose();
        }
        Assert.Empty(guard.RemainingDifferences);
        Assert.Equal(before, KsmHostTests.KnobFiles());
    }

    [SkippableFact]
    public Task Merges_fast_backs_off_wakes_for_new_processes_and_leaves_a_low_rate_when_cancelled() => WithKsm(async () =>
    {
        using var first = new KsmWorkloads(count: 4, sizeMb: 64, seed: 21);
        var decisions = new ConcurrentQueue<KsmAutoTuneDecision>();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var run = Task.Run(() => KsmAutoTuner.RunAsync(new KsmAutoTuneOptions { OnDecision = decisions.Enqueue }, null, cts.Token));
        try
        {
            // Four identical copies: three of every page are saved.
            var t90 = await WaitFor(() => KsmStatReader.Read().PagesSharing >= Pages64 * 3 * 9 / 10, TimeSpan.FromSeconds(30));
            Assert.True(t90 is not null, $"4 × 64 MiB did not reach 90% in 30 s: pages_sharing {KsmStatReader.Read().PagesSharing}; {Log(decisions)}");
            Assert.True(t90 < TimeSpan.FromSeconds(6), $"4 × 64 MiB took {t90!.Value.TotalSeconds:0.00} s to 90% (want a few seconds); {Log(decisions)}");

            // Nothing left to merge: back to the idle rate.
            var idle = await WaitFor(() => decisions.LastOrDefault()?.Mode == KsmAutoTuneMode.Idle, TimeSpan.FromSeconds(30));
            Assert.True(idle is not null, $"the tuner did not back off to idle: {Log(decisions)}");
            await Task.Delay(300); // the write follows the decision
            AssertLowRate("idle after merging");
            var idleStat = KsmStatReader.Read();
            Assert.True(idleStat.PagesToScan * 20 < 100 * idleStat.SleepMilliseconds, $"idle at {idleStat.PagesToScan}/{idleStat.SleepMilliseconds} ms is not below the kernel default");

            // New mergeable processes wake it; they merge quickly too.
            int seen = decisions.Count;
            using var late = new KsmWorkloads(count: 2, sizeMb: 64, seed: 21);
            var tLate = await WaitFor(() => late.Ids.All(id => MergingPages(id) >= Pages64 * 9 / 10), TimeSpan.FromSeconds(30));
            Assert.True(tLate is not null, $"the late processes did not reach 90%: {string.Join(", ", late.Ids.Select(MergingPages))}; {Log(decisions)}");
            Assert.True(tLate < TimeSpan.FromSeconds(5), $"the late processes took {tLate!.Value.TotalSeconds:0.00} s to 90%; {Log(decisions)}");
            Assert.Contains(decisions.Skip(seen), d => d.Mode == KsmAutoTuneMode.Burst && d.Reason.Contains("new mergeable process"));
        }
        finally
        {
            cts.Cancel();
        }
        var result = await run;
        Assert.True(result.Stopped);
        Assert.True(result.Wakeups >= 2, $"{result.Wakeups} wake-ups");
        Assert.Equal(100, result.ExitPagesToScan);
        Assert.Equal(20, result.ExitSleepMilliseconds);
        Assert.NotNull(result.KsmdCpuSeconds);
        // The late processes have exited by now (their pages unmerged); the first four are still merged.
        Assert.True(result.SavedBytes >= Pages64 * 3 * 9 / 10 * Environment.SystemPageSize, $"saved {result.SavedMiB} MiB");
        AssertLowRate("after cancellation");
    });

    [SkippableFact]
    public Task Duration_end_leaves_the_default_rate_even_when_it_found_the_aggressive_one() => WithKsm(async () =>
    {
        using var w = new KsmWorkloads(count: 2, sizeMb: 16, seed: 22);
        new KsmTuner().Set(KsmTuning.ForProfile(KsmTuningProfile.Aggressive).With(new KsmTuning { AdvisorMode = null, Run = KsmRunState.Merging }));
        var result = await KsmAutoTuner.RunAsync(new KsmAutoTuneOptions { Duration = TimeSpan.FromSeconds(3) }, null, CancellationToken.None);
        Assert.False(result.Stopped);
        Assert.InRange(result.Duration.TotalSeconds, 2.9, 6);
        Assert.Equal(20000, result.Replaced.PagesToScan);
        Assert.NotEmpty(result.Decisions);
        AssertLowRate("after -Duration");
        var s = KsmStatReader.Read();
        Assert.Equal((100L, 20L), (s.PagesToScan!.Value, s.SleepMilliseconds!.Value));
    });

    [SkippableFact]
    public Task An_exception_mid_burst_still_leaves_a_low_rate() => WithKsm(async () =>
    {
        using var w = new KsmWorkloads(count: 2, sizeMb: 16, seed: 23);
        var options = new KsmAutoTuneOptions
        {
            Duration = TimeSpan.FromSeconds(30),
            OnDecision = d =>
            {
                if (d.Mode == KsmAutoTuneMode.Burst) throw new InvalidOperationException("the caller's decision log failed");
            },
        };
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => KsmAutoTuner.RunAsync(options, null, CancellationToken.None));
        Assert.Contains("decision log failed", e.Message);
        AssertLowRate("after an exception while bursting");
    });

    [SkippableFact]
    public Task Kvmoc_autotune_with_duration_runs_end_to_end() => WithKsm(async () =>
    {
        Prereq.Require(File.Exists(KsmWorkloads.KvmocDll), "kvmoc.dll next to the tests");
        using var w = new KsmWorkloads(count: 2, sizeMb: 32, seed: 24);
        using var p = KsmWorkloads.StartKvmoc(new[] { "ksm", "autotune", "--duration", "5", "--quiet", "--json" });
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(60_000), "kvmoc ksm autotune --duration 5 did not end");
        Assert.True(p.ExitCode == 0, $"exit {p.ExitCode}: {await stderr}");
        using var json = JsonDocument.Parse(await stdout);
        var r = json.RootElement;
        Assert.False(r.GetProperty("Stopped").GetBoolean());
        Assert.Equal(100, r.GetProperty("ExitPagesToScan").GetInt64());
        Assert.True(r.GetProperty("Wakeups").GetInt32() >= 1);
        Assert.True(r.GetProperty("PagesSharing").GetInt64() >= Pages64 / 2 * 9 / 10, $"merged only {r.GetProperty("PagesSharing")} pages in 5 s");
        Assert.NotEqual(0, r.GetProperty("Decisions").GetArrayLength());
        AssertLowRate("after kvmoc ksm autotune --duration 5");
    });

    [SkippableFact]
    public Task Kvmoc_autotune_stops_on_SIGTERM_mid_burst_and_leaves_a_low_rate() => WithKsm(async () =>
    {
        Prereq.Require(File.Exists(KsmWorkloads.KvmocDll), "kvmoc.dll next to the tests");
        using var p = KsmWorkloads.StartKvmoc(new[] { "ksm", "autotune", "--quiet", "--json", "-v" });
        var stdout = p.StandardOutput.ReadToEndAsync();
        var verbose = new ConcurrentQueue<string>();
        var stderr = Task.Run(() => { while (p.StandardError.ReadLine() is string l) verbose.Enqueue(l); });
        try
        {
            Assert.True(await WaitFor(() => verbose.Any(l => l.Contains("Idle ")), TimeSpan.FromSeconds(30)) is not null, "no first decision: " + string.Join("\n", verbose));
            // Something to merge: it bursts (the rate goes far above the default) …
            using var w = new KsmWorkloads(count: 2, sizeMb: 64, seed: 25);
            Assert.True(await WaitFor(() => verbose.Any(l => l.Contains("] Burst ")), TimeSpan.FromSeconds(15)) is not null, "no burst: " + string.Join("\n", verbose));
            var s = KsmStatReader.Read();
            Assert.True(s.PagesToScan * 20 > 100 * s.SleepMilliseconds, $"bursting at only {s.PagesToScan}/{s.SleepMilliseconds} ms");
            // … and systemd stops it right then.
            Assert.Equal(0, GuestLauncher.kill(p.Id, 15));
            Assert.True(p.WaitForExit(20_000), "kvmoc ksm autotune did not exit on SIGTERM");
        }
        finally
        {
            if (!p.HasExited) p.Kill();
        }
        await stderr;
        Assert.True(p.ExitCode == 0, $"exit {p.ExitCode} on SIGTERM: {string.Join("\n", verbose)}");
        using var json = JsonDocument.Parse(await stdout);
        Assert.True(json.RootElement.GetProperty("Stopped").GetBoolean());
        Assert.Contains(verbose, l => l.Contains("leaving KSM running at 100 pages / 20 ms"));
        AssertLowRate("after SIGTERM");
    });

    static string Log(IEnumerable<KsmAutoTuneDecision> decisions) => "decisions:\n  " + string.Join("\n  ", decisions);
}
