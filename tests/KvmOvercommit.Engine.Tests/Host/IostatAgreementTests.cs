using System.Diagnostics;
using System.Text.Json;
using KvmOvercommit.Engine.Io;
using KvmOvercommit.Engine.Tests.Infrastructure;
using Xunit.Abstractions;

namespace KvmOvercommit.Engine.Tests.Host;

/// <summary>
/// Measure-DeviceIops against sysstat's iostat -d -x under fio load, over the same window: iostat runs with interval
/// N and count 3 and flushes each report right after its reading; its second report (taken on its interval timer)
/// starts our sampler (Interval N, Count 1), whose first reading is synchronous. Both windows then start and end
/// within about a millisecond of each other (iostat's first window is skipped: it starts before iostat's timer).
/// </summary>
[Collection(HostSerialCollection.Name)]
public class IostatAgreementTests(ITestOutputHelper output)
{
    const int WindowSeconds = 4;

    [SkippableFact]
    public async Task DeviceIopsAgreesWithIostatUnderFio()
    {
        var fio = Prereq.RequireTool("fio");
        var iostat = Prereq.RequireTool("iostat");
        using var dir = new TempDir("kvmoc-iostat");
        var file = dir.File("fio.dat");
        var device = BlockDevices.WholeDiskOf(dir.Path);
        Prereq.Require(device is not null, $"a block device behind {dir.Path} (tmpfs has none)");
        output.WriteLine($"fio file {file} is on {device}");

        using var load = Start(fio, "--name=t", $"--filename={file}", "--rw=randwrite", "--bs=4k", "--ioengine=libaio", "--direct=1",
            "--size=256M", "--time_based", "--runtime=60", "--iodepth=4");
        try
        {
            await WaitForLoad(device!, load);

            var (ours, theirs) = await MeasureTogether(iostat, device!);
            output.WriteLine($"window: ours {ours.IntervalSeconds:0.0000} s");
            var compared = new (string Name, double Ours, double Iostat)[]
            {
                ("w/s", ours.WritesPerSec, theirs.GetProperty("w/s").GetDouble()),
                ("wkB/s", ours.WriteBytesPerSec / 1024, theirs.GetProperty("wkB/s").GetDouble()),
                ("r/s", ours.ReadsPerSec, theirs.GetProperty("r/s").GetDouble()),
                ("w_await", ours.WriteAwaitMs, theirs.GetProperty("w_await").GetDouble()),
                ("aqu-sz", ours.AverageQueueSize, theirs.GetProperty("aqu-sz").GetDouble()),
                ("%util", ours.UtilizationPercent, theirs.GetProperty("util").GetDouble()),
                ("d/s", ours.DiscardsPerSec ?? 0, theirs.GetProperty("d/s").GetDouble()),
                ("f/s", ours.FlushesPerSec ?? 0, theirs.GetProperty("f/s").GetDouble()),
            };
            foreach (var (name, o, t) in compared)
                output.WriteLine($"{name,-8} ours {o,12:0.000}  iostat {t,12:0.00}  diff {(t == 0 ? 0 : (o - t) / t * 100),8:0.000}%");
            Assert.True(ours.WritesPerSec > 100, $"fio produced too little load ({ours.WritesPerSec:0} w/s) to compare");
            foreach (var (name, o, t) in compared)
            {
                // iostat prints two decimals (±0.005); besides that, 1%.
                double tolerance = Math.Max(0.01 * Math.Abs(t), 0.006);
                if (name is "r/s" or "d/s" or "f/s") tolerance = Math.Max(tolerance, 0.6); // a stray read/discard/flush in a shifted window
                Assert.True(Math.Abs(o - t) <= tolerance, $"{name}: ours {o:0.000} vs iostat {t:0.00} (tolerance {tolerance:0.000})");
            }
        }
        finally
        {
            Kill(load);
        }
    }

    static async Task<(DeviceIops Ours, JsonElement Iostat)> MeasureTogether(string iostat, string device)
    {
        var sampler = new DeviceIopsSampler();
        var options = new DeviceIopsOptions { Device = new[] { device }, Interval = TimeSpan.FromSeconds(WindowSeconds), Count = 1 };
        using var p = Start(iostat, "-d", "-x", "-o", "JSON", device, WindowSeconds.ToString(), "3");
        try
        {
            IAsyncEnumerator<DeviceIops>? ours = null;
            ValueTask<bool> first = default;
            var reports = new List<JsonElement>();
            string? line;
            while ((line = p.StandardOutput.ReadLine()) is not null)
            {
                if (!line.Contains("\"disk_device\"")) continue;
                reports.Add(JsonDocument.Parse(line.Trim().TrimEnd(',')).RootElement.Clone());
                if (reports.Count == 2)
                {
                    // The enumerator takes its first reading synchronously, before its first await.
                    ours = sampler.SampleAsync(options).GetAsyncEnumerator();
                    first = ours.MoveNextAsync();
                }
            }
            await p.WaitForExitAsync();
            Assert.Equal(3, reports.Count);
            Assert.True(await first, "the sampler gave no sample");
            var result = ours!.Current;
            await ours.DisposeAsync();
            return (result, reports[2]);
        }
        finally
        {
            Kill(p);
        }
    }

    /// <summary>Waits (up to 20 s) until fio's writes show on the device: fio first allocates the file.</summary>
    static async Task WaitForLoad(string device, Process load)
    {
        var sampler = new DeviceIopsSampler();
        for (int i = 0; i < 40; i++)
        {
            Assert.False(load.HasExited, "fio exited early: " + (load.HasExited ? load.StandardError.ReadToEnd() : ""));
            await foreach (var s in sampler.SampleAsync(new DeviceIopsOptions { Device = new[] { device }, Interval = TimeSpan.FromMilliseconds(500), Count = 1 }))
                if (s.WritesPerSec > 500) return;
        }
    }

    static Process Start(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    static void Kill(Process p)
    {
        try { if (!p.HasExited) { p.Kill(entireProcessTree: true); p.WaitForExit(5000); } } catch (InvalidOperationException) { }
    }
}
