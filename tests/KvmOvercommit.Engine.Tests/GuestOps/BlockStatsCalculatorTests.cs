using System.Text.Json;
using System.Text.Json.Nodes;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.GuestOps;

public class BlockStatsCalculatorTests
{
    static readonly DateTimeOffset T = new(2026, 11, 22, 8, 0, 0, TimeSpan.Zero);

    [Fact]
    public void ParsesARealQemu72Answer()
    {
        var drives = BlockStatsCalculator.Parse(Fixture.Text("guestops/blockstats-qemu72-idle.json"));
        var d = Assert.Single(drives);
        Assert.Equal("drive0", d.Drive);
        Assert.Equal(1, d.ReadOps);
        Assert.Equal(512, d.ReadBytes);
        Assert.Equal(104058, d.ReadTimeNs);
        Assert.Equal(0, d.WriteOps);
    }

    /// <summary>The captured answer with counters advanced as a guest doing I/O would advance them.</summary>
    static string Advanced(long rd, long wr, long fl, long rdBytes, long wrBytes, long rdNs, long wrNs)
    {
        var root = JsonNode.Parse(Fixture.Text("guestops/blockstats-qemu72-idle.json"))!;
        var s = root["return"]![0]!["stats"]!;
        void Add(string key, long delta) => s[key] = s[key]!.GetValue<long>() + delta;
        Add("rd_operations", rd); Add("wr_operations", wr); Add("flush_operations", fl);
        Add("rd_bytes", rdBytes); Add("wr_bytes", wrBytes); Add("rd_total_time_ns", rdNs); Add("wr_total_time_ns", wrNs);
        return root.ToJsonString();
    }

    [Fact]
    public void RatesAndLatenciesFromDeltas()
    {
        var a = BlockStatsCalculator.Parse(Fixture.Text("guestops/blockstats-qemu72-idle.json"));
        var b = BlockStatsCalculator.Parse(Advanced(rd: 100, wr: 300, fl: 10, rdBytes: 409600, wrBytes: 1228800, rdNs: 50_000_000, wrNs: 600_000_000));
        var r = Assert.Single(BlockStatsCalculator.Compute("win7-1", 4242, a, b, TimeSpan.FromSeconds(2), T));
        Assert.Equal("win7-1", r.Name);
        Assert.Equal(4242, r.Id);
        Assert.Equal("drive0", r.Drive);
        Assert.Equal(50, r.ReadOpsPerSec);
        Assert.Equal(150, r.WriteOpsPerSec);
        Assert.Equal(5, r.FlushOpsPerSec);
        Assert.Equal(205, r.Iops);
        Assert.Equal(204800, r.ReadBytesPerSec);
        Assert.Equal(614400, r.WriteBytesPerSec);
        Assert.Equal(0.5, r.ReadLatencyMs);
        Assert.Equal(2.0, r.WriteLatencyMs);
        Assert.Equal(2.0, r.IntervalSeconds);
        Assert.Equal(T, r.Timestamp);
    }

    [Fact]
    public void NoOperationsMeansNoLatencyAndZeroRates()
    {
        var a = BlockStatsCalculator.Parse(Fixture.Text("guestops/blockstats-qemu72-idle.json"));
        var r = Assert.Single(BlockStatsCalculator.Compute("g", 1, a, a, TimeSpan.FromMilliseconds(1500), T));
        Assert.Equal(0, r.Iops);
        Assert.Null(r.ReadLatencyMs);
        Assert.Null(r.WriteLatencyMs);
        Assert.Equal(1.5, r.IntervalSeconds);
    }

    [Fact]
    public void CountersThatGoBackwardsOrDrivesThatAppearAreSkipped()
    {
        var a = BlockStatsCalculator.Parse(Advanced(10, 10, 0, 100, 100, 10, 10));
        var b = BlockStatsCalculator.Parse(Fixture.Text("guestops/blockstats-qemu72-idle.json"));
        Assert.Empty(BlockStatsCalculator.Compute("g", 1, a, b, TimeSpan.FromSeconds(1), T));
        Assert.Empty(BlockStatsCalculator.Compute("g", 1, Array.Empty<BlockStatsCounters>(), b, TimeSpan.FromSeconds(1), T));
    }

    [Fact]
    public void DriveNamesFromDeviceQdevOrNode()
    {
        var json = """
        [ {"device": "", "qdev": "/machine/peripheral/vd0/virtio-backend", "node-name": "n1", "stats": {"rd_operations": 1}},
          {"device": "", "qdev": "/machine/peripheral-anon/device[3]/virtio-backend", "stats": {}},
          {"device": "", "node-name": "disk-node", "stats": {}},
          {"device": "ide0-cd0", "stats": {}} ]
        """;
        Assert.Equal(new[] { "vd0", "/machine/peripheral-anon/device[3]/virtio-backend", "disk-node", "ide0-cd0" }, BlockStatsCalculator.Parse(json).Select(d => d.Drive));
    }

    [Fact]
    public void ANonPositiveIntervalIsRefused()
    {
        var e = Assert.Throws<KvmOcException>(() => BlockStatsCalculator.Compute("g", 1, [], [], TimeSpan.Zero, T));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
    }

    [Fact]
    public void BalloonAnswerBecomesMemory()
    {
        var guest = new KvmGuest { Name = "g", Id = 7, MemoryMB = 128, RssBytes = 100 * Units.MiB };
        using var doc = JsonDocument.Parse("""{"actual": 67108864}""");
        var m = KvmGuestBalloon.FromQueryBalloon(doc.RootElement, guest, 64, T);
        Assert.Equal(64.0, m.ActualMB);
        Assert.Equal(64.0, m.BalloonMB);
        Assert.Equal(128, m.MemoryMB);
        Assert.Equal(64L, m.TargetMB);
        Assert.Equal(100.0, m.RssMB);
        using var bad = JsonDocument.Parse("{}");
        Assert.Equal(ErrorKind.InvalidData, Assert.Throws<KvmOcException>(() => KvmGuestBalloon.FromQueryBalloon(bad.RootElement, guest, null, T)).Kind);
    }

    [Fact]
    public void BalloonPlanChecksTheTarget()
    {
        var guest = new KvmGuest { Name = "g", Id = 7, MemoryMB = 128, QmpSocket = "/tmp/q.sock" };
        Assert.Equal(64, KvmGuestBalloon.Plan(guest, 64).TargetMB);
        Assert.Contains("64 MiB", KvmGuestBalloon.Plan(guest, 64).Action);
        Assert.Equal("BalloonTargetTooLarge", Assert.Throws<KvmOcException>(() => KvmGuestBalloon.Plan(guest, 256)).ErrorId);
        Assert.Equal("BalloonTargetInvalid", Assert.Throws<KvmOcException>(() => KvmGuestBalloon.Plan(guest, 0)).ErrorId);
        Assert.Equal("GuestHasNoQmp", Assert.Throws<KvmOcException>(() => KvmGuestBalloon.Plan(new KvmGuest { Name = "h", MemoryMB = 128 }, 64)).ErrorId);
    }

    [Fact]
    public void NoBalloonDeviceGetsAClearError()
    {
        var qmp = new KvmOcException(ErrorKind.InvalidOperation, "QmpDeviceNotActive", "QMP 'query-balloon' failed: No balloon device has been activated", "/q.sock");
        var e = KvmGuestBalloon.Translate(qmp, new KvmGuest { Name = "g", Id = 3 });
        Assert.Equal("GuestHasNoBalloon", e.ErrorId);
        Assert.Equal(ErrorKind.InvalidOperation, e.Kind);
        Assert.Contains("-Balloon", e.Hint);
        Assert.Equal("g", e.Target);
    }
}
