using System.Text.Json;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Tests.Memory;

public class BalloonStatisticsTests
{
    static KvmGuestMemory Apply(string json, long? interval = 2)
    {
        var m = new KvmGuestMemory { Name = "g" };
        using var doc = JsonDocument.Parse(json);
        BalloonStatistics.Apply(doc.RootElement, m, interval);
        return m;
    }

    [Fact]
    public void ReportedValuesAreTakenAndMinusOneIsNull()
    {
        // The shape of QEMU 7.2's qom-get guest-stats for the tiny guest (values from a run on this machine's kind).
        var m = Apply("""
            {"stats": {"stat-htlb-pgfail": 0, "stat-available-memory": 61865984, "stat-disk-caches": 41943040, "stat-free-memory": 30617600,
                       "stat-minor-faults": 21045, "stat-major-faults": 0, "stat-total-memory": 103956480, "stat-swap-out": 0, "stat-swap-in": 0,
                       "stat-htlb-pgalloc": 0}, "last-update": 1764626400}
            """);
        Assert.Equal(30617600, m.GuestFreeBytes);
        Assert.Equal(29.2, m.GuestFreeMB);
        Assert.Equal(61865984, m.GuestAvailableBytes);
        Assert.Equal(103956480, m.GuestTotalBytes);
        Assert.Equal(41943040, m.GuestDiskCachesBytes);
        Assert.Equal(0, m.GuestSwapInBytes);
        Assert.Equal(21045, m.GuestMinorFaults);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1764626400), m.StatsLastUpdate);
        Assert.Equal(2, m.StatsPollingIntervalSeconds);

        var partial = Apply("""{"stats": {"stat-free-memory": 4096, "stat-available-memory": -1}, "last-update": 5}""");
        Assert.Equal(4096, partial.GuestFreeBytes);
        Assert.Null(partial.GuestAvailableBytes); // an older guest driver reports no MemAvailable
        Assert.Null(partial.GuestDiskCachesBytes); // missing
    }

    [Fact]
    public void NoReportYetMeansEveryStatisticIsNull()
    {
        var m = Apply("""{"stats": {"stat-free-memory": -1, "stat-total-memory": -1}, "last-update": 0}""", 0);
        Assert.Null(m.StatsLastUpdate);
        Assert.Null(m.GuestFreeBytes);
        Assert.Null(m.GuestFreeMB);
        Assert.Null(m.GuestTotalBytes);
        Assert.Equal(0, m.StatsPollingIntervalSeconds);
        Assert.Null(Apply("""{"last-update": 12}""").GuestFreeBytes);
        Assert.Null(Apply("null").StatsLastUpdate);
    }
}
