using System.Text.Json;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Ksm;

public class KsmTunerTests
{
    [Fact]
    public void Aggressive_profile_writes_only_what_changes_and_returns_what_it_replaced()
    {
        using var k = new FakeKsmKernel();
        var replaced = k.Tuner().Set(KsmTuning.ForProfile(KsmTuningProfile.Aggressive).With(new KsmTuning { Run = KsmRunState.Merging }));
        Assert.Equal(new[] { "pages_to_scan=20000", "run=1" }, k.Log);
        Assert.Equal("20000", k["pages_to_scan"]);
        Assert.Equal(100, replaced.PagesToScan);
        Assert.Equal(KsmRunState.Stopped, replaced.Run);
        Assert.Null(replaced.SleepMilliseconds);

        // Piping the replaced settings back restores them.
        k.Log.Clear();
        k.Tuner().Set(replaced);
        Assert.Equal(new[] { "pages_to_scan=100", "run=0" }, k.Log);
    }

    [Fact]
    public void Leaving_the_advisor_switches_advisor_mode_before_pages_to_scan()
    {
        using var k = new FakeKsmKernel();
        k["advisor_mode"] = "none [scan-time]";
        k["pages_to_scan"] = "500";
        var replaced = k.Tuner().Set(KsmTuning.ForProfile(KsmTuningProfile.Aggressive).With(new KsmTuning { AdvisorMode = "none" }));
        Assert.Equal(new[] { "advisor_mode=none", "pages_to_scan=20000" }, k.Log);
        Assert.Equal("scan-time", replaced.AdvisorMode);
        Assert.Equal(500, replaced.PagesToScan);
    }

    [Fact]
    public void Entering_the_advisor_writes_advisor_mode_after_the_other_knobs_and_drops_pages_to_scan()
    {
        using var k = new FakeKsmKernel();
        k["pages_to_scan"] = "1234";
        var replaced = k.Tuner().Set(KsmTuning.ForProfile(KsmTuningProfile.Advisor).With(new KsmTuning { PagesToScan = 999, AdvisorMaxCpu = 30 }));
        Assert.Equal(new[] { "advisor_max_cpu=30", "advisor_mode=scan-time" }, k.Log);
        Assert.Equal("none", replaced.AdvisorMode);
        Assert.Equal(1234, replaced.PagesToScan);
        Assert.Equal(70, replaced.AdvisorMaxCpu);

        k.Log.Clear();
        k.Tuner().Set(replaced);
        Assert.Equal(new[] { "advisor_mode=none", "pages_to_scan=1234", "advisor_max_cpu=70" }, k.Log);
        Assert.Equal("1234", k["pages_to_scan"]);
    }

    [Fact]
    public void Pages_to_scan_under_the_advisor_is_a_clear_error_and_writes_nothing()
    {
        using var k = new FakeKsmKernel();
        k["advisor_mode"] = "none [scan-time]";
        var before = k.AllFiles();
        var e = Assert.Throws<KvmOcException>(() => k.Tuner().Set(new KsmTuning { PagesToScan = 200, SleepMilliseconds = 50 }));
        Assert.Equal("KsmAdvisorOwnsPagesToScan", e.ErrorId);
        Assert.Contains("-AdvisorMode none", e.Hint);
        Assert.Empty(k.Log);
        Assert.Equal(before, k.AllFiles());
    }

    [Fact]
    public void Max_page_sharing_with_merged_pages_needs_force_which_unmerges_first_and_resumes()
    {
        using var k = new FakeKsmKernel();
        k["run"] = "1";
        k["pages_shared"] = "10";
        k["pages_sharing"] = "300";
        var e = Assert.Throws<KvmOcException>(() => k.Tuner().Set(new KsmTuning { MaxPageSharing = 512 }));
        Assert.Equal(ErrorKind.ResourceBusy, e.Kind);
        Assert.Equal("KsmPagesMerged", e.ErrorId);
        Assert.Contains("-Force", e.Hint);
        Assert.Empty(k.Log);

        var replaced = k.Tuner().Set(new KsmTuning { MaxPageSharing = 512 }, force: true);
        Assert.Equal(new[] { "run=2", "max_page_sharing=512", "run=1" }, k.Log);
        Assert.Equal(256, replaced.MaxPageSharing);
        Assert.Equal(KsmRunState.Merging, replaced.Run);
    }

    [Fact]
    public void A_failing_write_rolls_back_the_earlier_ones()
    {
        using var k = new FakeKsmKernel();
        var before = k.AllFiles();
        k.FailOn.Add("use_zero_pages");
        var e = Assert.Throws<KvmOcException>(() => k.Tuner().Set(new KsmTuning { PagesToScan = 5000, SleepMilliseconds = 50, UseZeroPages = true, Run = KsmRunState.Merging }));
        Assert.Equal("KsmWriteFailed", e.ErrorId);
        Assert.Contains("Rolled back the 2 earlier write(s)", e.Message);
        Assert.Equal(new[] { "pages_to_scan=5000", "sleep_millisecs=50", "sleep_millisecs=20", "pages_to_scan=100" }, k.Log);
        Assert.Equal(before, k.AllFiles());
    }

    public static TheoryData<string, KsmTuning> InvalidTunings => new()
    {
        { "pages_to_scan", new KsmTuning { SleepMilliseconds = 10, PagesToScan = -1 } },
        { "max_page_sharing", new KsmTuning { PagesToScan = 300, MaxPageSharing = 1 } },
        { "advisor_mode", new KsmTuning { PagesToScan = 300, AdvisorMode = "fast" } },
        { "advisor_max_cpu", new KsmTuning { AdvisorMaxCpu = 0 } },
        { "advisor_max_cpu", new KsmTuning { AdvisorMaxCpu = 101 } },
        { "advisor_target_scan_time", new KsmTuning { AdvisorTargetScanTime = 0 } },
        { "advisor_min_pages_to_scan", new KsmTuning { AdvisorMinPagesToScan = 40000 } },
        { "sleep_millisecs", new KsmTuning { SleepMilliseconds = 5_000_000_000 } },
        { "run", new KsmTuning { Run = (KsmRunState)7 } },
    };

    [Theory]
    [MemberData(nameof(InvalidTunings))]
    public void Invalid_values_are_refused_before_anything_is_written(string knob, KsmTuning tuning)
    {
        using var k = new FakeKsmKernel();
        var before = k.AllFiles();
        var e = Assert.Throws<KvmOcException>(() => k.Tuner().Set(tuning, force: true));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Equal("KsmInvalidValue", e.ErrorId);
        Assert.Equal(knob, e.Target);
        Assert.Empty(k.Log);
        Assert.Equal(before, k.AllFiles());
    }

    [Fact]
    public void Advisor_profile_on_a_kernel_without_the_advisor_is_NotInstalled()
    {
        using var k = new FakeKsmKernel("sys-5.15");
        var e = Assert.Throws<KvmOcException>(() => k.Tuner().Plan(KsmTuning.ForProfile(KsmTuningProfile.Advisor)));
        Assert.Equal(ErrorKind.NotInstalled, e.Kind);
        Assert.Equal("KsmAdvisorNotAvailable", e.ErrorId);
        // …but the other profiles work there.
        Assert.Single(k.Tuner().Plan(KsmTuning.ForProfile(KsmTuningProfile.Aggressive)).Writes);
    }

    [Fact]
    public void No_ksm_folder_is_NotInstalled()
    {
        using var t = new TempDir();
        var e = Assert.Throws<KvmOcException>(() => new KsmTuner(new HostRoots(Sys: t.Path)).Plan(new KsmTuning { PagesToScan = 1 }));
        Assert.Equal(ErrorKind.NotInstalled, e.Kind);
    }

    [Fact]
    public void Plan_writes_nothing_and_describes_every_write()
    {
        using var k = new FakeKsmKernel();
        var before = k.AllFiles();
        var plan = k.Tuner().Plan(new KsmTuning { PagesToScan = 20000, Run = KsmRunState.Merging });
        Assert.Equal("pages_to_scan: 100 -> 20000; run: 0 -> 1 (last, after the tuning)", plan.Describe());
        Assert.Equal(before, k.AllFiles());
        Assert.True(k.Tuner().Plan(KsmTuning.FromStat(KsmStatReader.Read(k.Roots))).IsEmpty);
    }

    [Fact]
    public void Snapshot_restores_every_setting_exactly()
    {
        using var k = new FakeKsmKernel();
        var snap = KsmSettingsSnapshot.Capture(k.Roots);
        k.Tuner().Set(new KsmTuning { PagesToScan = 777, SleepMilliseconds = 5, UseZeroPages = true, SmartScan = false, AdvisorMaxCpu = 20, Run = KsmRunState.Merging });
        k.Tuner().Set(new KsmTuning { AdvisorMode = "scan-time" });
        Assert.NotEmpty(snap.Compare());
        var remaining = snap.Restore(null, k.Write);
        Assert.Empty(remaining);
        Assert.Equal("100", k["pages_to_scan"]);
        Assert.Equal("[none] scan-time", k["advisor_mode"]);
    }

    [Fact]
    public void KsmTuning_round_trips_through_json_and_FromStat_captures_every_knob()
    {
        using var k = new FakeKsmKernel();
        var t = KsmTuning.FromStat(KsmStatReader.Read(k.Roots));
        foreach (var knob in KsmTuning.Knobs) Assert.NotNull(knob.Get(t));
        var back = JsonSerializer.Deserialize<KsmTuning>(JsonSerializer.Serialize(t))!;
        Assert.Empty(t.Differences(back));
    }
}
