using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Tests.Infrastructure;
using KvmOvercommit.Engine.Tests.Ksm;

namespace KvmOvercommit.Engine.Tests.Iops;

/// <summary>-Network Isolated and -IoLoadPercent in the experiment's plan (nothing is started).</summary>
public class ExperimentNetworkPlanTests
{
    [SkippableFact]
    public void TheIsolatedNetworkAndTheLoadAreInThePlanAndBadCombinationsAreRefused()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        using var ksm = new FakeKsmKernel();
        using var t = new TempDir();
        var plan = OvercommitExperiment.Plan(new ExperimentOptions { GuestCount = 4, WorkDirectory = t.Path, Roots = ksm.Roots, Network = ExperimentNetworkMode.Isolated, IoLoadPercent = 50, IoLoad = ExperimentIoLoad.RandomWrite, IoLoadSeconds = 20 });
        Assert.Contains(plan.Steps, s => s.StartsWith("ip netns add kvmoc-net-", StringComparison.Ordinal));
        Assert.Contains(plan.Steps, s => s.Contains("dnsmasq --port=0 --interface=kvbr0", StringComparison.Ordinal));
        Assert.Contains(plan.Steps, s => s == "start a RandomWrite load in 2 of 4 guest(s) (50%) through Ansible; sample every guest's IOPS and the overlays' disk for 20 s; stop it");
        Assert.Contains(plan.Steps, s => s.StartsWith("(cleanup) stop dnsmasq; ip netns delete", StringComparison.Ordinal));
        // In the order the run does it: network, guests, the blog's loop, the load, then the KSM profiles.
        int At(string start) => Array.FindIndex(plan.Steps, s => s.StartsWith(start, StringComparison.Ordinal));
        var order = new[] { At("ip netns add"), At("start 4 guest(s)"), At("boot the fleet tiny guest"), At("start a RandomWrite load"), At("profile Default") };
        Assert.All(order, i => Assert.True(i >= 0, string.Join(" | ", plan.Steps)));
        Assert.Equal(order.OrderBy(i => i), order);

        void Refused(string id, ExperimentOptions o)
        {
            o.Roots = ksm.Roots; o.WorkDirectory = t.Path;
            Assert.Equal(id, Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(o)).ErrorId);
        }
        Refused("ExperimentIoLoadNeedsNetwork", new ExperimentOptions { IoLoadPercent = 10 });
        Refused("ExperimentInvalidIoLoad", new ExperimentOptions { Network = ExperimentNetworkMode.Isolated, IoLoadPercent = 101 });
        Refused("ExperimentInvalidIoLoad", new ExperimentOptions { Network = ExperimentNetworkMode.Isolated, IoLoadPercent = 10, IoLoadSeconds = 0 });
        var baseImage = t.File("b.qcow2");
        File.WriteAllBytes(baseImage, new byte[512]);
        Refused("ExperimentNetworkNeedsTinyGuest", new ExperimentOptions { BaseImage = baseImage, Network = ExperimentNetworkMode.Isolated });
    }

    [Theory]
    [InlineData(4, 50, 2)]
    [InlineData(48, 10, 5)]
    [InlineData(3, 1, 1)]
    [InlineData(4, 0, 0)]
    [InlineData(4, 100, 4)]
    public void TheLoadedShareRoundsUpToAtLeastOneGuest(int guests, int percent, int loaded) =>
        Assert.Equal(loaded, ExperimentIoLoadRunner.LoadedCount(guests, percent));
}
