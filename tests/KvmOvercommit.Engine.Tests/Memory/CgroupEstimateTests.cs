using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Memory;

namespace KvmOvercommit.Engine.Tests.Memory;

/// <summary>Get-OvercommitReport -Cgroup: EstimatedAdditionalGuests against a memory cgroup's limit, on explicit inputs.</summary>
public class CgroupEstimateTests
{
    const long MiB = 1024 * 1024;

    static OvercommitInputs Inputs(bool ksmRunning, long mergedPages = 0) => new()
    {
        HostName = "h1", LogicalCpus = 2, MemoryTotalBytes = 24576 * MiB, MemoryAvailableBytes = 20000 * MiB, KsmSavedBytes = 0, PageSize = 4096, HeadroomPercent = 10,
        Cgroup = "/sys/fs/cgroup/memory/guests", CgroupLimitBytes = 2000 * MiB, CgroupUsedBytes = 620 * MiB, CgroupOtherBytes = 20 * MiB, CgroupOtherProcesses = 1, KsmRunning = ksmRunning,
        Guests =
        {
            new GuestFacts { Name = "a", MemoryBytes = 128 * MiB, Vcpus = 1, RssBytes = 210 * MiB, KsmMergingPages = mergedPages, InCgroup = true },
            new GuestFacts { Name = "b", MemoryBytes = 128 * MiB, Vcpus = 1, RssBytes = 210 * MiB, KsmMergingPages = mergedPages, InCgroup = true },
            new GuestFacts { Name = "c", MemoryBytes = 128 * MiB, Vcpus = 1, RssBytes = 210 * MiB, KsmMergingPages = mergedPages, InCgroup = true },
            new GuestFacts { Name = "outside", MemoryBytes = 4096 * MiB, Vcpus = 4, RssBytes = 4000 * MiB, KsmMergingPages = 0 },
        },
    };

    [Fact]
    public void TheEstimateIsTheCgroupsSpareOverWhatEachGuestInItIsCharged()
    {
        var r = OvercommitCalculator.Compute(Inputs(ksmRunning: true));
        Assert.Equal(3, r.CgroupGuestCount);
        Assert.Equal(200 * MiB, r.CgroupPerGuestBytes);     // (620 − 20) / 3: the guest outside the cgroup does not count
        Assert.Equal(200 * MiB, r.HeadroomBytes);           // 10% of the limit, not of the host
        Assert.Equal(5, r.EstimatedAdditionalGuests);       // floor((2000 − 200 − 620) / 200) = floor(5.9)
        Assert.Contains(r.Explanation, e => e == "EstimatedAdditionalGuests = floor((cgroup limit − headroom − used = 2000 MiB − 10% (200 MiB) − 620 MiB = 1180 MiB) / per guest 200 MiB) = 5 (sized against the cgroup's limit, not the host)");
        Assert.Contains(r.Explanation, e => e.StartsWith("Per guest in cgroup /sys/fs/cgroup/memory/guests = (used − other processes) / guests = (620 MiB − 20 MiB in 1 other process(es)) / 3 = 200 MiB", StringComparison.Ordinal));
        Assert.Contains(r.Explanation, e => e.StartsWith("Host-wide (not the estimate with -Cgroup): EstimatedAdditionalGuests = ", StringComparison.Ordinal));
        Assert.Equal(1, r.Explanation.Count(e => e.StartsWith("EstimatedAdditionalGuests ", StringComparison.Ordinal)));
    }

    [Fact]
    public void WithKsmStoppedANewGuestAlsoPaysForThePagesTheOthersHaveMerged()
    {
        var running = OvercommitCalculator.Compute(Inputs(ksmRunning: true, mergedPages: 12800));   // 50 MiB merged per guest
        var stopped = OvercommitCalculator.Compute(Inputs(ksmRunning: false, mergedPages: 12800));
        Assert.Equal(200 * MiB, running.CgroupPerGuestBytes);
        Assert.Equal(250 * MiB, stopped.CgroupPerGuestBytes);
        Assert.Equal(4, stopped.EstimatedAdditionalGuests); // floor(1180 / 250)
        Assert.Contains(stopped.Explanation, e => e.Contains("+ 50 MiB KSM-merged per guest (KSM is not running: a new guest's pages stay unmerged) = 250 MiB", StringComparison.Ordinal));
    }

    [Fact]
    public void ACgroupWithoutGuestsHasNoEstimateAndSaysHowToPutGuestsThere()
    {
        var inp = Inputs(ksmRunning: true);
        foreach (var g in inp.Guests) g.InCgroup = false;
        var r = OvercommitCalculator.Compute(inp);
        Assert.Null(r.EstimatedAdditionalGuests);
        Assert.Equal(0, r.CgroupGuestCount);
        Assert.Contains(r.Explanation, e => e.StartsWith("EstimatedAdditionalGuests in cgroup /sys/fs/cgroup/memory/guests: unknown — no guest runs in it", StringComparison.Ordinal) && e.Contains("Start-KvmGuest -Cgroup"));
    }

    [Fact]
    public void ReportCgroupRefusesAFolderThatIsNotAMemoryCgroupAndOneWithoutALimit()
    {
        var e = Assert.Throws<KvmOcException>(() => new OvercommitReportBuilder(guests: () => Array.Empty<Qemu.KvmGuest>()) { Cgroup = "/tmp", QueryBalloons = false, ReadIopsLimits = false }
            .BuildAsync(10, 0, false, NullObserver.Instance, default).GetAwaiter().GetResult());
        Assert.Equal("CgroupNotFound", e.ErrorId);
        using var dir = new Infrastructure.TempDir("kvmoc-cg");
        File.WriteAllText(Path.Combine(dir.Path, "memory.limit_in_bytes"), "9223372036854771712\n");
        File.WriteAllText(Path.Combine(dir.Path, "memory.usage_in_bytes"), "1000\n");
        File.WriteAllText(Path.Combine(dir.Path, "cgroup.procs"), "");
        var noLimit = Assert.Throws<KvmOcException>(() => MemoryCgroup.Open(dir.Path).Read());
        Assert.Equal("CgroupHasNoLimit", noLimit.ErrorId);
    }
}
