using System.CommandLine;
using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Io;

namespace KvmOvercommit.Cli;

/// <summary>`kvmoc host iops-capacity` (Measure-DeviceIopsCapacity) and the IOPS-budget options of `kvmoc report`.</summary>
public static class IopsCapacityCli
{
    internal static readonly string[] Columns = { "Path", "Device", "Iops", "ReadIops", "WriteIops", "ReadLatencyMs", "WriteLatencyMs" };

    /// <summary>The `host iops-capacity` subcommand.</summary>
    public static Command Command(CliContext ctx)
    {
        var cmd = new Command("iops-capacity", "What the device under a folder sustains: a short fio random read/write probe (4 KiB, O_DIRECT) on a temporary file there, removed after (Measure-DeviceIopsCapacity).");
        var path = new Argument<string>("path") { Description = "The folder for the probe file (the overlays' folder).", Arity = ArgumentArity.ZeroOrOne, DefaultValueFactory = _ => "." };
        var duration = new Option<double>("--duration-seconds") { Description = "How long fio runs.", DefaultValueFactory = _ => 5 };
        var size = new Option<long>("--file-size-mb") { Description = "Probe file size in MiB.", DefaultValueFactory = _ => 256 };
        var read = new Option<int>("--read-percent") { Description = "Percent of reads.", DefaultValueFactory = _ => 50 };
        var bs = new Option<int>("--block-size-bytes") { Description = "Block size.", DefaultValueFactory = _ => 4096 };
        var depth = new Option<int>("--io-depth") { Description = "Requests in flight.", DefaultValueFactory = _ => 32 };
        cmd.Arguments.Add(path);
        foreach (var o in new Option[] { duration, size, read, bs, depth }) cmd.Options.Add(o);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var r = await DeviceIopsCapacityProbe.MeasureAsync(new DeviceIopsCapacityOptions
            {
                Path = parse.GetValue(path) ?? ".", Duration = Engine.Validation.DurationSeconds(parse.GetValue(duration), "-DurationSeconds"), FileSizeBytes = parse.GetValue(size) * Engine.Units.MiB,
                ReadPercent = parse.GetValue(read), BlockSizeBytes = parse.GetValue(bs), IoDepth = parse.GetValue(depth),
            }, run, ct).ConfigureAwait(false);
            run.WriteResults(new[] { r }, Columns);
        });
        return cmd;
    }

    /// <summary>`kvmoc report --device-iops-capacity N | --measure-iops-capacity-path DIR`.</summary>
    public static (Option<double?> Capacity, Option<string?> MeasurePath) ReportOptions(Command report)
    {
        var capacity = new Option<double?>("--device-iops-capacity") { Description = "What the device sustains in IOPS (for IopsRatio and EstimatedAdditionalGuestsByIops)." };
        var measure = new Option<string?>("--measure-iops-capacity-path") { Description = "Measure the capacity with a short fio probe in this folder (kvmoc host iops-capacity)." };
        report.Options.Add(capacity);
        report.Options.Add(measure);
        return (capacity, measure);
    }

    /// <summary>A report builder with the budget options applied.</summary>
    public static OvercommitReportBuilder Builder(ParseResult parse, (Option<double?> Capacity, Option<string?> MeasurePath) o)
    {
        var b = new OvercommitReportBuilder { DeviceIopsCapacity = parse.GetValue(o.Capacity) };
        if (parse.GetValue(o.MeasurePath) is { } p) b.MeasureCapacity = new DeviceIopsCapacityOptions { Path = p };
        return b;
    }
}
