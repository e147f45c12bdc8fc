using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// The default views, rendered for real objects and their Deserialized copies (Scripts/ViewCheck.ps1 says what is
/// judged). Objects that need no host changes are made here; guests, KSM tuning, autotune and the experiment are
/// rendered by the host tests that make them (<see cref="HostTests"/>).
/// </summary>
public class ViewTests(SessionFixture fx) : IClassFixture<SessionFixture>
{
    PwshSession S => fx.Session;

    public static void CheckViews(PwshSession s, string producer)
    {
        var r = s.Run($"$o = @({producer}); & $args[0] -Objects $o -Where '{producer.Replace("'", "''")}: '", [RepoPaths.Script("ViewCheck.ps1")]);
        Assert.True(r.Terminating is null, r.Describe());
        var problems = r.Output.Select(o => o.ToString()).ToList();
        Assert.True(problems.Count == 0, $"{problems.Count} problem(s):\n  " + string.Join("\n  ", problems));
    }

    /// <summary>Every view's type and where a real object of it is rendered: a new view needs a line here.</summary>
    public static readonly Dictionary<string, string> Producers = new()
    {
        ["KvmOvercommit.Engine.Ksm.KsmStat"] = "Get-KsmStat",
        ["KvmOvercommit.Engine.Ksm.KsmSample"] = "Watch-KsmStat -Count 2 -IntervalSeconds 0.2",
        ["KvmOvercommit.Engine.Ksm.KsmProcessStat"] = "Get-KsmProcess -All",
        ["KvmOvercommit.Engine.HostInfo.HostMemory"] = "Get-HostMemory",
        ["KvmOvercommit.Engine.HostInfo.HostCpu"] = "Get-HostCpu",
        ["KvmOvercommit.Engine.HostInfo.OvercommitReport"] = "Get-OvercommitReport",
        ["KvmOvercommit.Engine.HostInfo.MdRaidArray"] = "Get-MdRaid -Path $fx/host/mdstat-recovery; Get-MdRaid -Path $fx/host/mdstat-blog-raid10",
        ["KvmOvercommit.Engine.Fleet.DnsmasqLease"] = "Get-DnsmasqLease -Path $fx/fleet/dnsmasq.leases, $fx/fleet/real-dnsmasq-2.90.leases, $fx/fleet/virbr0.status -WarningAction SilentlyContinue",
        ["KvmOvercommit.Engine.Io.DeviceIops"] = "Measure-DeviceIops -Count 2 -IntervalSeconds 0.3",
        ["KvmOvercommit.Engine.Io.ProcessIops"] = "Measure-ProcessIops -Id $PID -Count 1 -IntervalSeconds 0.3",
        ["KvmOvercommit.Engine.Qemu.TinyGuestImage"] = "Get-KvmTinyGuest",
        ["KvmOvercommit.Engine.Qcow.QcowImage"] = "host: HostTests.GuestPipelineFromOverlayToStop",
        ["KvmOvercommit.Engine.Qemu.KvmGuest"] = "host: HostTests.GuestPipelineFromOverlayToStop",
        ["KvmOvercommit.Engine.Qemu.KvmGuestMemory"] = "host: HostTests.GuestPipelineFromOverlayToStop",
        ["KvmOvercommit.Engine.Qemu.KvmGuestIops"] = "host: HostTests.GuestPipelineFromOverlayToStop",
        ["KvmOvercommit.Engine.Ksm.KsmTuning"] = "host: HostTests.SetKsmTuningRoundTripsAndRestores",
        ["KvmOvercommit.Engine.Ksm.AutoTune.KsmAutoTuneResult"] = "host: HostTests.AutoTuneRunsAndStops",
        ["KvmOvercommit.Engine.Ksm.AutoTune.KsmAutoTuneDecision"] = "host: HostTests.AutoTuneRunsAndStops",
        ["KvmOvercommit.Engine.Experiment.ExperimentResult"] = "host: HostTests.ExperimentRunsAndCtrlCCleansUp",
        ["KvmOvercommit.Engine.Experiment.ExperimentProfileResult"] = "host: HostTests.ExperimentRunsAndCtrlCCleansUp",
        ["KvmOvercommit.Engine.Experiment.ExperimentGuestResult"] = "host: HostTests.ExperimentRunsAndCtrlCCleansUp",
        ["KvmOvercommit.Engine.Experiment.ExperimentSample"] = "host: HostTests.ExperimentRunsAndCtrlCCleansUp",
        ["KvmOvercommit.Engine.Io.DeviceIopsCapacity"] = "Measure-DeviceIopsCapacity -Path ([IO.Path]::GetTempPath()) -DurationSeconds 1 -FileSizeMB 16",
        ["KvmOvercommit.Engine.Memory.KvmMemoryBalancerResult"] = "Invoke-KvmMemoryBalancer -Duration 1 -LeaveBalloons -WhatIf",
        ["KvmOvercommit.Engine.Memory.KvmMemoryBalancerDecision"] = "host: tests/acceptance/Memory.Tests.ps1 (two tiny guests)",
        ["KvmOvercommit.Engine.Memory.KvmMemoryBalancerGuest"] = "host: tests/acceptance/Memory.Tests.ps1 (two tiny guests)",
        ["KvmOvercommit.Engine.Qemu.KvmGuestIoLimit"] = "host: tests/acceptance/Iops.Tests.ps1 (a tiny guest)",
        ["KvmOvercommit.Engine.Experiment.HostJournal"] = "host: tests/acceptance/HostileCmdlets.Tests.ps1 (-Recover of a dead run)",
    };

    [Fact]
    public void EveryViewTypeHasAProducerAndADeserializedView()
    {
        var names = S.Run("(Get-FormatData -TypeName 'KvmOvercommit.*', 'Deserialized.KvmOvercommit.*').TypeNames | Sort-Object -Unique").Ok().Output.Select(o => o.ToString()).ToHashSet();
        var live = names.Where(n => !n.StartsWith("Deserialized.")).ToList();
        var problems = live.Where(n => !Producers.ContainsKey(n)).Select(n => $"{n} has a view but no producer in ViewTests.Producers")
            .Concat(live.Where(n => !names.Contains("Deserialized." + n)).Select(n => $"{n} has no Deserialized.{n} view"))
            .Concat(Producers.Keys.Where(n => !names.Contains(n)).Select(n => $"{n} is in Producers but has no view")).ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    public static TheoryData<string> LocalProducers()
    {
        var d = new TheoryData<string>();
        foreach (var p in Producers.Values.Where(v => !v.StartsWith("host:"))) d.Add(p);
        return d;
    }

    [Theory]
    [MemberData(nameof(LocalProducers))]
    public void ViewRendersAt80And120ColumnsLiveAndDeserialized(string producer)
    {
        S.Set("fx", RepoPaths.Fixtures);
        CheckViews(S, producer);
    }
}
