using System.Globalization;
using System.Text.Json;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Io;

/// <summary>
/// What the device under a folder sustains: a short fio random read/write probe (4 KiB, O_DIRECT, libaio) on a
/// temporary file in that folder. The figure Get-OvercommitReport divides the fleet's IOPS by.
/// </summary>
public sealed class DeviceIopsCapacity
{
    /// <summary>The folder probed (where the overlays live).</summary>
    public string Path { get; set; } = "";
    /// <summary>The whole disk that holds the folder (e.g. vda, md0, nvme0n1), or null when it cannot be told.</summary>
    public string? Device { get; set; }
    /// <summary>Read + write operations per second the device sustained: the capacity.</summary>
    public double Iops { get; set; }
    /// <summary>Read operations per second.</summary>
    public double ReadIops { get; set; }
    /// <summary>Write operations per second.</summary>
    public double WriteIops { get; set; }
    /// <summary>Mean completion latency of the reads, in milliseconds.</summary>
    public double? ReadLatencyMs { get; set; }
    /// <summary>Mean completion latency of the writes, in milliseconds.</summary>
    public double? WriteLatencyMs { get; set; }
    /// <summary>Percent of the operations that were reads (fio --rwmixread).</summary>
    public int ReadPercent { get; set; }
    /// <summary>The block size, in bytes.</summary>
    public int BlockSizeBytes { get; set; }
    /// <summary>Requests in flight (fio --iodepth).</summary>
    public int IoDepth { get; set; }
    /// <summary>The probe file's size, in bytes.</summary>
    public long FileSizeBytes { get; set; }
    /// <summary>How long fio ran, in seconds.</summary>
    public double RuntimeSeconds { get; set; }
    /// <summary>fio's version, e.g. fio-3.33.</summary>
    public string FioVersion { get; set; } = "";
    /// <summary>The exact fio command line.</summary>
    public string CommandLine { get; set; } = "";
    /// <summary>When the probe finished (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
}

/// <summary>How Measure-DeviceIopsCapacity probes.</summary>
public sealed class DeviceIopsCapacityOptions
{
    /// <summary>The folder for the probe file (the overlays' folder).</summary>
    public string Path { get; set; } = ".";
    /// <summary>How long fio runs (default 5 s).</summary>
    public TimeSpan Duration { get; set; } = TimeSpan.FromSeconds(5);
    /// <summary>The probe file's size (default 256 MiB).</summary>
    public long FileSizeBytes { get; set; } = 256 * Units.MiB;
    /// <summary>Percent of reads (default 50).</summary>
    public int ReadPercent { get; set; } = 50;
    /// <summary>Block size (default 4096).</summary>
    public int BlockSizeBytes { get; set; } = 4096;
    /// <summary>Requests in flight (default 32).</summary>
    public int IoDepth { get; set; } = 32;
    /// <summary>The fio executable.</summary>
    public string FioPath { get; set; } = "fio";
}

/// <summary>Runs the fio probe and reads its JSON; the probe file is removed afterwards, also on failure and Ctrl+C.</summary>
public static class DeviceIopsCapacityProbe
{
    /// <summary>The probe file's name prefix (a hidden file, with a random part).</summary>
    public const string FilePrefix = ".kvmoc-iops-probe-";

    /// <summary>The fio arguments for <paramref name="o"/> writing to <paramref name="file"/>.</summary>
    public static string[] Arguments(DeviceIopsCapacityOptions o, string file) => new[]
    {
        "--name=kvmoc-iops-capacity", "--filename=" + file.Replace(":", "\\:", StringComparison.Ordinal),
        "--size=" + o.FileSizeBytes.ToString(CultureInfo.InvariantCulture), "--rw=randrw",
        "--rwmixread=" + o.ReadPercent.ToString(CultureInfo.InvariantCulture), "--bs=" + o.BlockSizeBytes.ToString(CultureInfo.InvariantCulture),
        "--ioengine=libaio", "--direct=1", "--iodepth=" + o.IoDepth.ToString(CultureInfo.InvariantCulture),
        "--time_based", "--runtime=" + Math.Max(1, (int)Math.Ceiling(o.Duration.TotalSeconds)).ToString(CultureInfo.InvariantCulture),
        "--ramp_time=0", "--group_reporting", "--output-format=json",
    };

    /// <summary>Checks the options; nothing is written.</summary>
    public static string Validate(DeviceIopsCapacityOptions o)
    {
        var dir = System.IO.Path.GetFullPath(o.Path);
        if (!Directory.Exists(dir))
            throw new KvmOcException(ErrorKind.NotFound, "PathNotFound", $"The folder '{dir}' does not exist.", dir, "Give the folder that holds (or will hold) the overlays.");
        if (o.Duration < TimeSpan.FromSeconds(1) || o.Duration > TimeSpan.FromHours(1))
            throw new KvmOcException(ErrorKind.InvalidArgument, "DurationInvalid", $"The probe runs 1 s to 1 h (got {o.Duration.TotalSeconds} s).", o.Duration);
        if (o.ReadPercent is < 0 or > 100)
            throw new KvmOcException(ErrorKind.InvalidArgument, "ReadPercentInvalid", $"ReadPercent must be 0..100 (got {o.ReadPercent}).", o.ReadPercent);
        if (o.BlockSizeBytes < 512 || o.BlockSizeBytes % 512 != 0)
            throw new KvmOcException(ErrorKind.InvalidArgument, "BlockSizeInvalid", $"The block size must be a multiple of 512 (got {o.BlockSizeBytes}).", o.BlockSizeBytes);
        if (o.IoDepth is < 1 or > 1024)
            throw new KvmOcException(ErrorKind.InvalidArgument, "IoDepthInvalid", $"IoDepth must be 1..1024 (got {o.IoDepth}).", o.IoDepth);
        if (o.FileSizeBytes < o.BlockSizeBytes * 16L)
            throw new KvmOcException(ErrorKind.InvalidArgument, "FileSizeInvalid", $"The probe file must hold at least 16 blocks (got {o.FileSizeBytes} bytes).", o.FileSizeBytes);
        return dir;
    }

    /// <summary>Runs fio for <see cref="DeviceIopsCapacityOptions.Duration"/> on a new file in the folder and returns what it sustained.</summary>
    public static async Task<DeviceIopsCapacity> MeasureAsync(DeviceIopsCapacityOptions o, IOperationObserver observer, CancellationToken ct)
    {
        var dir = Validate(o);
        var fio = ToolRunner.Which(o.FioPath) ?? throw new KvmOcException(ErrorKind.NotInstalled, "FioNotInstalled", $"'{o.FioPath}' is not installed.", o.FioPath, "Install it: apt-get install fio");
        var file = System.IO.Path.Combine(dir, FilePrefix + Guid.NewGuid().ToString("N")[..12]);
        var args = Arguments(o, file);
        var commandLine = fio + " " + string.Join(' ', args);
        observer.Verbose(commandLine);
        observer.Progress(new ProgressInfo("Measure-DeviceIopsCapacity", $"fio random read/write on {dir} for {o.Duration.TotalSeconds:0} s"));
        try
        {
            var r = await ToolRunner.RunAsync(fio, args, dir, ct).ConfigureAwait(false);
            if (r.ExitCode != 0)
                throw new KvmOcException(ErrorKind.InvalidOperation, "FioFailed", $"fio failed on '{dir}': {r.Message}", dir,
                    "The folder must be on a file system that allows O_DIRECT (not tmpfs) and have room for the probe file.");
            var result = Parse(r.StdOut, dir);
            result.Device = BlockDevices.WholeDiskOf(dir);
            result.ReadPercent = o.ReadPercent;
            result.BlockSizeBytes = o.BlockSizeBytes;
            result.IoDepth = o.IoDepth;
            result.FileSizeBytes = o.FileSizeBytes;
            result.CommandLine = commandLine;
            return result;
        }
        finally
        {
            try { File.Delete(file); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { observer.Warning($"Could not remove the probe file '{file}': {e.Message}"); }
            observer.Progress(new ProgressInfo("Measure-DeviceIopsCapacity", "done", Completed: true));
        }
    }

    /// <summary>Reads fio's --output-format=json (text before the JSON, e.g. warnings, is skipped).</summary>
    public static DeviceIopsCapacity Parse(string fioJson, string path)
    {
        int start = fioJson.IndexOf('{');
        if (start < 0) throw new KvmOcException(ErrorKind.InvalidData, "FioOutputInvalid", "fio printed no JSON.", path);
        try
        {
            using var doc = JsonDocument.Parse(fioJson.AsMemory(start));
            var root = doc.RootElement;
            var job = root.GetProperty("jobs")[0];
            var read = job.GetProperty("read");
            var write = job.GetProperty("write");
            double ri = read.GetProperty("iops").GetDouble(), wi = write.GetProperty("iops").GetDouble();
            double runtimeMs = Math.Max(read.GetProperty("runtime").GetDouble(), write.GetProperty("runtime").GetDouble());
            return new DeviceIopsCapacity
            {
                Path = path,
                ReadIops = Math.Round(ri, 1),
                WriteIops = Math.Round(wi, 1),
                Iops = Math.Round(ri + wi, 1),
                ReadLatencyMs = LatencyMs(read),
                WriteLatencyMs = LatencyMs(write),
                RuntimeSeconds = Math.Round(runtimeMs / 1000, 3),
                FioVersion = root.TryGetProperty("fio version", out var v) ? v.GetString() ?? "" : "",
                Timestamp = DateTimeOffset.UtcNow,
            };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException or FormatException)
        {
            throw new KvmOcException(ErrorKind.InvalidData, "FioOutputInvalid", $"fio's JSON could not be read: {e.Message}", path, null, e);
        }

        static double? LatencyMs(JsonElement side)
        {
            if (side.TryGetProperty("io_kbytes", out var kb) && kb.GetInt64() == 0) return null;
            if (side.TryGetProperty("clat_ns", out var c) && c.TryGetProperty("mean", out var m)) return Math.Round(m.GetDouble() / 1e6, 4);
            return null;
        }
    }
}
