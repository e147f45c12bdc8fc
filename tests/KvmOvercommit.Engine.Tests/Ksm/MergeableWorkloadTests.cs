using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Ksm;

public class MergeableWorkloadTests
{
    [Fact]
    public void Pattern_is_deterministic_per_seed_and_distinct_per_page()
    {
        using var a = MergeableWorkload.Create(1 << 20, seed: 3);
        using var b = MergeableWorkload.Create(1 << 20, seed: 3);
        using var c = MergeableWorkload.Create(1 << 20, seed: 4);
        Assert.Equal(256L * 4096 / Environment.SystemPageSize, a.Pages);
        var firsts = new HashSet<ulong>();
        for (long i = 0; i < a.Pages; i++)
        {
            Assert.Equal(MergeableWorkload.FirstWord(3, i), a.ReadFirstWord(i));
            Assert.Equal(a.ReadFirstWord(i), b.ReadFirstWord(i));
            Assert.NotEqual(a.ReadFirstWord(i), c.ReadFirstWord(i));
            firsts.Add(a.ReadFirstWord(i));
        }
        Assert.Equal(a.Pages, firsts.Count);
    }

    [SkippableFact]
    public void The_memory_is_marked_mergeable_in_this_process()
    {
        Prereq.RequireKsm();
        using var w = MergeableWorkload.Create(1 << 20, seed: 1);
        var me = KsmProcessReader.Read(null, Environment.ProcessId)!;
        Prereq.Require(me.Mergeable is not null, "ksm_stat with ksm_mergeable (kernel 6.7+)");
        Assert.Equal(true, me.Mergeable);
    }

    [Fact]
    public void Invalid_size_is_refused()
    {
        var e = Assert.Throws<KvmOcException>(() => MergeableWorkload.Create(0, 1));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
    }
}
