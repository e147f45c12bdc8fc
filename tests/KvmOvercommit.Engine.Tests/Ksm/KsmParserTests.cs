using System.Text.Json;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Ksm;

public class KsmParserTests
{
    static HostRoots Sys(string name) => new(Sys: Fixture.PathOf($"ksm/{name}"));
    static HostRoots Proc(string name) => new(Proc: Fixture.PathOf($"ksm/{name}"));

    [Fact]
    public void Reads_this_machines_kernel_6_18_capture()
    {
        var s = KsmStatReader.Read(Sys("sys-6.18"));
        Assert.Equal(KsmRunState.Stopped, s.Run);
        Assert.Equal(100, s.PagesToScan);
        Assert.Equal(20, s.SleepMilliseconds);
        Assert.Equal(256, s.MaxPageSharing);
        Assert.Equal(true, s.MergeAcrossNodes);
        Assert.Equal(false, s.UseZeroPages);
        Assert.Equal(true, s.SmartScan);
        Assert.Equal(2000, s.StableNodeChainsPruneMilliseconds);
        Assert.Equal("none", s.AdvisorMode);
        Assert.Equal(new[] { "none", "scan-time" }, s.AdvisorModes);
        Assert.Equal(70, s.AdvisorMaxCpu);
        Assert.Equal(200, s.AdvisorTargetScanTime);
        Assert.Equal(500, s.AdvisorMinPagesToScan);
        Assert.Equal(30000, s.AdvisorMaxPagesToScan);
        Assert.Equal(0, s.PagesScanned);
        Assert.Equal(0, s.PagesSkipped);
        Assert.Equal(0, s.GeneralProfit);
        Assert.Equal(0, s.KsmZeroPages);
        Assert.Equal(0, s.StableNodeChains);
        Assert.Equal(0, s.StableNodeDups);
        Assert.Empty(s.Other);
        Assert.Null(s.SharingRatio);
        Assert.Equal(TimeSpan.Zero, s.Timestamp.Offset);
    }

    [Fact]
    public void Older_kernel_without_advisor_and_zero_pages_gives_nulls_and_keeps_unknown_files()
    {
        var s = KsmStatReader.Read(Sys("sys-5.15"));
        Assert.Equal(KsmRunState.Merging, s.Run);
        Assert.Equal(1250, s.PagesToScan);
        Assert.Null(s.AdvisorMode);
        Assert.Null(s.AdvisorMaxCpu);
        Assert.Null(s.SmartScan);
        Assert.Null(s.PagesScanned);
        Assert.Null(s.KsmZeroPages);
        Assert.Null(s.GeneralProfit);
        Assert.Equal("42", s.Other["some_future_knob"]);
        Assert.Equal(49152L * Environment.SystemPageSize, s.SavedBytes);
        Assert.Equal(16384L * Environment.SystemPageSize, s.SharedBytes);
        Assert.Equal(3.0, s.SharingRatio);
        Assert.Equal(Math.Round(2048 / 49152.0, 3), s.UnsharedRatio);
        Assert.Equal(Units.ToMiB(49152L * Environment.SystemPageSize), s.SavedMiB);
    }

    [Fact]
    public void Saved_bytes_include_zero_pages_as_the_kernel_documents()
    {
        var s = KsmStatReader.FromFiles(new Dictionary<string, string> { ["pages_sharing"] = "10", ["ksm_zero_pages"] = "5", ["pages_shared"] = "2", ["run"] = "7" }, 4096, DateTimeOffset.UnixEpoch);
        Assert.Equal(15 * 4096, s.SavedBytes);
        Assert.Null(s.Run);
        Assert.Equal("7", s.Other["run"]);
        Assert.Equal(5.0, s.SharingRatio);
    }

    [Fact]
    public void Missing_ksm_folder_is_NotInstalled()
    {
        using var t = new TempDir();
        var e = Assert.Throws<KvmOcException>(() => KsmStatReader.Read(new HostRoots(Sys: t.Path)));
        Assert.Equal(ErrorKind.NotInstalled, e.Kind);
        Assert.Equal("KsmNotAvailable", e.ErrorId);
    }

    [Fact]
    public void KsmStat_round_trips_through_json()
    {
        var s = KsmStatReader.Read(Sys("sys-5.15"));
        var back = JsonSerializer.Deserialize<KsmStat>(JsonSerializer.Serialize(s))!;
        Assert.Equal(s.PagesSharing, back.PagesSharing);
        Assert.Equal(s.Run, back.Run);
        Assert.Equal(s.Other, back.Other);
        Assert.Equal(s.SavedBytes, back.SavedBytes);
    }

    [Fact]
    public void Process_stat_of_this_machine_mixed_key_forms()
    {
        var p = KsmProcessReader.Read(Proc("proc-6.18"), 1234)!;
        Assert.Equal("kvm", p.Name);
        Assert.Equal("/usr/bin/kvm -m 128", p.CommandLine);
        Assert.Equal(0, p.KsmRmapItems);
        Assert.Equal(0, p.KsmZeroPages);
        Assert.Equal(0, p.KsmMergingPages);
        Assert.Equal(false, p.MergeAny);
        Assert.Equal(false, p.Mergeable);
        Assert.False(p.HasKsmActivity);
    }

    [Fact]
    public void Process_stat_older_and_colon_forms()
    {
        var roots = Proc("proc-6.1");
        var a = KsmProcessReader.Read(roots, 77)!;
        Assert.Equal(16384, a.KsmRmapItems);
        Assert.Equal(12000, a.KsmMergingPages);
        Assert.Equal(48103424, a.KsmProcessProfit);
        Assert.Null(a.KsmZeroPages);
        Assert.Null(a.MergeAny);
        Assert.Equal(12000L * Environment.SystemPageSize, a.SavedBytes);
        var b = KsmProcessReader.Read(roots, 78)!;
        Assert.Equal(10, b.KsmRmapItems);
        Assert.Equal(3, b.KsmZeroPages);
        Assert.Equal(5, b.KsmMergingPages);
        Assert.Equal(true, b.MergeAny);
        Assert.Equal(true, b.Mergeable);
        Assert.Equal("", b.CommandLine);
        Assert.Equal(8L * Environment.SystemPageSize, b.SavedBytes);
    }

    [Fact]
    public void Process_without_ksm_files_has_nulls_and_a_gone_process_is_null()
    {
        var roots = Proc("proc-5.4");
        var p = KsmProcessReader.Read(roots, 88)!;
        Assert.Equal("oldproc", p.Name);
        Assert.Null(p.KsmMergingPages);
        Assert.Null(p.KsmRmapItems);
        Assert.Null(p.SavedBytes);
        Assert.Null(KsmProcessReader.Read(roots, 99999));
    }

    [Fact]
    public void Query_filters_activity_names_and_sorts_by_profit()
    {
        var roots = Proc("proc-6.1");
        var all = KsmProcessReader.Query(roots, null, null, all: false);
        Assert.Equal(new[] { 77, 78 }, all.Select(p => p.Id));
        Assert.Equal(new[] { 78 }, KsmProcessReader.Query(roots, null, new[] { "col*" }, false).Select(p => p.Id));
        Assert.Equal(new[] { 77 }, KsmProcessReader.Query(roots, new[] { 77 }, null, false).Select(p => p.Id));
        Assert.Empty(KsmProcessReader.Query(roots, null, new[] { "nothing*" }, false));
        // Without -All, a process KSM does not know is left out.
        Assert.Empty(KsmProcessReader.Query(Proc("proc-6.18"), null, null, all: false));
        Assert.Single(KsmProcessReader.Query(Proc("proc-6.18"), null, null, all: true));
    }

    [Fact]
    public void Real_capture_while_merging_two_workloads_matches_the_kernels_profit_formulas()
    {
        // Captured on this machine: two `kvmoc ksm workload --size-mb 8 --seed 3`, pages_to_scan 20000, run 1.
        var s = KsmStatReader.Read(Sys("sys-6.18-merging"));
        Assert.Equal(KsmRunState.Merging, s.Run);
        Assert.Equal(20000, s.PagesToScan);
        Assert.Equal(2048, s.PagesShared);
        Assert.Equal(2048, s.PagesSharing);
        Assert.Equal(1.0, s.SharingRatio);
        // general_profit = (pages_sharing + ksm_zero_pages) * page_size - (sharing + shared + unshared + volatile) * 64
        Assert.Equal(s.SavedBytes - (s.PagesSharing + s.PagesShared + s.PagesUnshared + s.PagesVolatile) * 64, s.GeneralProfit);

        var p = KsmProcessReader.Read(Proc("proc-6.18-merging"), 8373)!;
        Assert.Equal(2048, p.KsmRmapItems);
        Assert.Equal(2048, p.KsmMergingPages);
        Assert.Equal(true, p.Mergeable);
        Assert.Equal(false, p.MergeAny);
        // ksm_process_profit = (merging + zero pages) * page_size - rmap_items * 64
        Assert.Equal(p.SavedBytes - p.KsmRmapItems * 64, p.KsmProcessProfit);
        Assert.Contains("ksm workload --size-mb 8 --seed 3", p.CommandLine);
        Assert.True(p.HasKsmActivity);
    }

    [Theory]
    [InlineData("ksm_rmap_items 5\n", "ksm_rmap_items", "5")]
    [InlineData("ksm_rmap_items: 5\n", "ksm_rmap_items", "5")]
    [InlineData("ksm_rmap_items:5", "ksm_rmap_items", "5")]
    [InlineData("  ksm_merge_any:   yes  \n\n", "ksm_merge_any", "yes")]
    [InlineData("ksm_rmap_items\t5", "ksm_rmap_items", "5")]
    public void Key_value_parser_tolerates_forms(string text, string key, string value)
    {
        Assert.Equal(value, KsmProcessReader.ParseKeyValues(text)[key]);
    }

    [SkippableFact]
    public void Reads_the_real_kernel_in_one_pass()
    {
        Prereq.RequireKsm();
        var s = KsmStatReader.Read();
        Assert.NotNull(s.Run);
        Assert.NotNull(s.PagesToScan);
        Assert.Equal(Environment.SystemPageSize, s.PageSize);
        var self = KsmProcessReader.Read(null, Environment.ProcessId)!;
        Assert.Equal(Environment.ProcessId, self.Id);
    }
}
