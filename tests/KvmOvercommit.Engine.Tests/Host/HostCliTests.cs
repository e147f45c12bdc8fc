using System.Text.Json;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Host;

public class HostCliTests
{
    static (int Code, string Out, string Err) Kvmoc(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = KvmOvercommit.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void UnknownDeviceExitsNotFoundAndListsDevices()
    {
        var (code, _, err) = Kvmoc("iops", "--device", "nosuchdisk0");
        Assert.Equal(3, code);
        Assert.StartsWith("DeviceNotFound:", err);
        foreach (var d in BlockDevices().Where(d => !d.StartsWith("loop"))) Assert.Contains(d, err);
    }

    static IEnumerable<string> BlockDevices() => Directory.EnumerateFileSystemEntries("/sys/block").Select(Path.GetFileName)!;

    [Fact]
    public void IopsStreamsJsonLines()
    {
        var (code, output, err) = Kvmoc("iops", "--json", "--interval-seconds", "0.1", "--count", "2", "--total");
        Assert.True(code == 0, err);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var docs = lines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(2, docs.Count(d => d.GetProperty("Device").GetString() == "Total"));
        Assert.All(docs, d => Assert.True(d.GetProperty("IntervalSeconds").GetDouble() >= 0.05));
        Assert.Contains(docs, d => d.GetProperty("Sample").GetInt32() == 2);
    }

    [Fact]
    public void CountAndContinuousExcludeEachOther()
    {
        var (code, _, err) = Kvmoc("iops", "--count", "2", "--continuous");
        Assert.Equal(2, code);
        Assert.Contains("CountWithContinuous", err);
    }

    [Fact]
    public void MdstatFromASavedCopy()
    {
        var (code, output, err) = Kvmoc("host", "mdstat", "--json", "--path", Fixture.PathOf("host/mdstat-blog-raid10"), "md126");
        Assert.True(code == 0, err);
        var doc = JsonDocument.Parse(output).RootElement;
        Assert.Equal("md126", doc.GetProperty("Name").GetString());
        Assert.Equal("UUUU", doc.GetProperty("Health").GetString());
        Assert.Equal(4, doc.GetProperty("Devices").GetArrayLength());
        var table = Kvmoc("host", "mdstat", "--path", Fixture.PathOf("host/mdstat-recovery")).Out;
        Assert.Contains("recovery", table);
        Assert.Contains("md6", table);
    }

    [Fact]
    public void HostMemoryAndCpuAsJson()
    {
        var mem = JsonDocument.Parse(Kvmoc("host", "memory", "--json").Out).RootElement;
        Assert.True(mem.GetProperty("TotalBytes").GetInt64() > 0);
        Assert.True(mem.TryGetProperty("UsedMinusBuffersCacheBytes", out _));
        var cpu = JsonDocument.Parse(Kvmoc("host", "cpu", "--json").Out).RootElement;
        Assert.True(cpu.GetProperty("LogicalCpus").GetInt32() >= 1);
    }

    [Fact]
    public void ReportPrintsTheArithmetic()
    {
        var (code, output, err) = Kvmoc("report", "--iops-sample-seconds", "0.2", "--skip-disk-images");
        Assert.True(code == 0, err);
        Assert.Contains("VcpuRatio = guest vCPUs / host logical CPUs", output);
        Assert.Contains("EstimatedAdditionalGuests", output);
        var bad = Kvmoc("report", "--headroom-percent", "150");
        Assert.Equal(2, bad.Code);
        Assert.Contains("InvalidHeadroom", bad.Err);
    }

    [Fact]
    public void ProcessIopsOfThisProcess()
    {
        var (code, output, err) = Kvmoc("process-iops", "--json", "--id", Environment.ProcessId.ToString(), "--interval-seconds", "0.1");
        Assert.True(code == 0, err);
        var doc = JsonDocument.Parse(output.Trim()).RootElement;
        Assert.Equal(Environment.ProcessId, doc.GetProperty("Id").GetInt32());
        Assert.Contains(doc.GetProperty("Note").EnumerateArray(), n => n.GetString()!.Contains("libaio"));
        var none = Kvmoc("process-iops");
        Assert.Equal(2, none.Code);
        var missing = Kvmoc("process-iops", "--name", "no-such-process-name");
        Assert.Equal(3, missing.Code);
    }
}
