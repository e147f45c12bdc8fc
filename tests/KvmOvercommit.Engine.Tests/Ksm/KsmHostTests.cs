using System.Diagnostics;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Ksm;

/// <summary>KSM on the real kernel: merging real mergeable memory, tuning, restoring every setting exactly.</summary>
[Collection(HostSerialCollection.Name)]
public class KsmHostTests
{
    internal static void RequireHost()
    {
        Prereq.RequireKsm();
        Prereq.RequireRoot();
        Prereq.Require(KsmWatcher.FindKsmd() is not null, "the ksmd kernel thread");
        bool ksmtuned = KsmProcessReader.ReadAll().Any(p => p.Name == "ksmtuned");
        Prereq.Require(!ksmtuned, "ksmtuned not running (it rewrites KSM settings behind the test's back: systemctl stop ksmtuned)");
    }

    internal static Dictionary<string, string> KnobFiles() => KsmTuning.Knobs
        .Select(k => Path.Combine(HostRoots.Default.Ksm, k.File)).Where(File.Exists)
        .ToDictionary(Path.GetFileName, f => File.ReadAllText(f))!;

    [SkippableFact]
    public async Task Workloads_merge_under_aggressive_tuning_and_every_setting_is_restored()
    {
        RequireHost();
        var before = KnobFiles();
        var guard = new KsmSettingsGuard();
        try
        {
            // Start from nothing merged so growth is ours.
            new KsmTuner().Set(new KsmTuning { Run = KsmRunState.Unmerging });
            using var workloads = new KsmWorkloads(count: 3, sizeMb: 16, seed: 7);
            var start = KsmStatReader.Read();
            var replaced = new KsmTuner().Set(KsmTuning.ForProfile(KsmTuningProfile.Aggressive).With(new KsmTuning { AdvisorMode = start.AdvisorMode is null ? null : "none", Run = KsmRunState.Merging }));
            Assert.Equal(KsmRunState.Unmerging, replaced.Run);

            long pagesPerWorkload = 16L * Units.MiB / Environment.SystemPageSize;
            KsmSample? last = null;
            await foreach (var s in new KsmWatcher().WatchAsync(new KsmWatchOptions { Interval = TimeSpan.FromMilliseconds(250), Duration = TimeSpan.FromSeconds(60) }))
            {
                last = s;
                var mine = workloads.Ids.Select(id => KsmProcessReader.Read(null, id)!).ToList();
                if (mine.All(p => p.KsmMergingPages >= pagesPerWorkload * 9 / 10)) break;
            }
            Assert.NotNull(last);
            var end = KsmStatReader.Read();
            // Three identical copies: two of every page are saved.
            Assert.True(end.PagesSharing - (start.PagesSharing ?? 0) >= pagesPerWorkload * 2 * 9 / 10, $"pages_sharing grew only from {start.PagesSharing} to {end.PagesSharing}");
            Assert.True(end.SavedBytes > 0);
            Assert.NotNull(last!.KsmdCpuSeconds);
            var found = KsmProcessReader.Query(null, null, null, all: false);
            foreach (var id in workloads.Ids)
            {
                var p = Assert.Single(found, x => x.Id == id);
                Assert.True(p.KsmMergingPages >= pagesPerWorkload * 9 / 10, $"workload {id} merged only {p.KsmMergingPages} pages");
                Assert.Equal(true, p.Mergeable);
                Assert.True(p.SavedBytes > 0);
            }
            // Sorted by profit, highest first.
            Assert.Equal(found.OrderByDescending(p => p.KsmProcessProfit ?? long.MinValue).Select(p => p.Id).Take(3), found.Select(p => p.Id).Take(3));
        }
        finally
        {
            guard.Dispose();
        }
        Assert.Empty(guard.RemainingDifferences);
        Assert.Equal(before, KnobFiles());
    }

    [SkippableFact]
    public async Task Max_page_sharing_with_merged_pages_needs_force_which_unmerges_and_resumes_on_the_real_kernel()
    {
        RequireHost();
        var before = KnobFiles();
        var guard = new KsmSettingsGuard();
        try
        {
            using var workloads = new KsmWorkloads(count: 2, sizeMb: 4, seed: 11);
            var cur = KsmStatReader.Read();
            new KsmTuner().Set(KsmTuning.ForProfile(KsmTuningProfile.Aggressive).With(new KsmTuning { AdvisorMode = cur.AdvisorMode is null ? null : "none", Run = KsmRunState.Merging }));
            await foreach (var s in new KsmWatcher().WatchAsync(new KsmWatchOptions { Interval = TimeSpan.FromMilliseconds(200), Duration = TimeSpan.FromSeconds(30) }))
                if (s.PagesShared > 0) break;
            Assert.True(KsmStatReader.Read().PagesShared > 0, "nothing merged");
            var newMax = (cur.MaxPageSharing ?? 256) + 44;

            var e = Assert.Throws<KvmOcException>(() => new KsmTuner().Set(new KsmTuning { MaxPageSharing = newMax }));
            Assert.Equal("KsmPagesMerged", e.ErrorId);
            Assert.Equal(before[KsmKnob.MaxPageSharing], File.ReadAllText(Path.Combine(HostRoots.Default.Ksm, KsmKnob.MaxPageSharing)));

            var replaced = new KsmTuner().Set(new KsmTuning { MaxPageSharing = newMax }, force: true);
            var after = KsmStatReader.Read();
            Assert.Equal(newMax, after.MaxPageSharing);
            Assert.Equal(KsmRunState.Merging, after.Run); // resumed after the unmerge
            Assert.Equal(cur.MaxPageSharing, replaced.MaxPageSharing);
        }
        finally
        {
            guard.Dispose();
        }
        Assert.Empty(guard.RemainingDifferences);
        Assert.Equal(before, KnobFiles());
    }

    [SkippableFact]
    public void Invalid_values_leave_every_sysfs_file_unchanged()
    {
        RequireHost();
        var before = KnobFiles();
        using var guard = new KsmSettingsGuard();
        var tuner = new KsmTuner();
        foreach (var bad in new[]
        {
            new KsmTuning { PagesToScan = 321, MaxPageSharing = 1 },
            new KsmTuning { SleepMilliseconds = 7, AdvisorMode = "bogus" },
            new KsmTuning { PagesToScan = -5 },
            new KsmTuning { AdvisorMaxCpu = 500, Run = KsmRunState.Merging },
        })
        {
            var e = Assert.Throws<KvmOcException>(() => tuner.Set(bad, force: true));
            Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
            Assert.Equal(before, KnobFiles());
        }
    }

    [SkippableFact]
    public void A_write_the_kernel_refuses_rolls_back_the_earlier_writes()
    {
        RequireHost();
        var before = KnobFiles();
        using var guard = new KsmSettingsGuard();
        var tuner = new KsmTuner();
        var cur = KsmStatReader.Read();
        var plan = tuner.Plan(new KsmTuning { AdvisorMode = cur.AdvisorMode is null ? null : "none", PagesToScan = (cur.PagesToScan ?? 100) + 17, SleepMilliseconds = (cur.SleepMilliseconds ?? 20) + 3 });
        Assert.Equal(KsmKnob.SleepMilliseconds, plan.Writes[^1].File);
        plan.Writes[^1].Value = "not-a-number"; // the kernel answers EINVAL
        var e = Assert.Throws<KvmOcException>(() => tuner.Apply(plan));
        Assert.Equal("KsmWriteFailed", e.ErrorId);
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("Rolled back", e.Message);
        Assert.Equal(before, KnobFiles());
    }

    [SkippableFact]
    public void Advisor_profile_round_trip_on_the_real_kernel()
    {
        RequireHost();
        Prereq.Require(KsmStatReader.Read().AdvisorModes?.Contains("scan-time") == true, "a kernel with the KSM scan-time advisor (6.8+)");
        var before = KnobFiles();
        using (new KsmSettingsGuard())
        {
            var replaced = new KsmTuner().Set(KsmTuning.ForProfile(KsmTuningProfile.Advisor));
            Assert.Equal("scan-time", KsmStatReader.Read().AdvisorMode);
            // pages_to_scan is now the advisor's: the kernel refuses it, the tuner says so before writing.
            var e = Assert.Throws<KvmOcException>(() => new KsmTuner().Set(new KsmTuning { PagesToScan = 1234 }));
            Assert.Equal("KsmAdvisorOwnsPagesToScan", e.ErrorId);
            new KsmTuner().Set(replaced);
            Assert.Equal(before, KnobFiles());
        }
        Assert.Equal(before, KnobFiles());
    }

    [SkippableFact]
    public void Non_root_tune_gets_PermissionDenied_with_its_error_id()
    {
        RequireHost();
        var setpriv = Prereq.RequireTool("setpriv");
        Prereq.Require(File.Exists(KsmWorkloads.KvmocDll), "kvmoc.dll next to the tests");
        // nobody must be able to read the test output folder and the dotnet install.
        var before = KnobFiles();
        using var p = KsmWorkloads.StartKvmoc(new[] { "ksm", "tune", "--pages-to-scan", "200" }, setpriv,
            new[] { "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/tmp", "DOTNET_CLI_HOME=/tmp" });
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        Assert.True(p.WaitForExit(60_000));
        Skip.If(stderr.Result.Contains("Permission denied") && !stderr.Result.Contains("KsmPermissionDenied"), "nobody cannot run dotnet from this folder: " + stderr.Result);
        Assert.Equal(4, p.ExitCode);
        Assert.StartsWith("KsmPermissionDenied: ", stderr.Result);
        Assert.Contains("sudo", stderr.Result);
        Assert.Equal(before, KnobFiles());
    }
}
