using System.Diagnostics;
using System.Globalization;
using KvmOvercommit.Engine.Qcow;

namespace KvmOvercommit.Benchmarks;

/// <summary>
/// New-QcowOverlay's engine in-process (what the cmdlet runs inside pwsh): N overlays on one base with
/// QcowOverlayWriter.CreateMany, into a fresh folder per run (left for the caller to remove), timed with a Stopwatch after one warm-up run (JIT).
/// `dotnet KvmOvercommit.Benchmarks.dll qcow-overlays BASE WORKDIR [N=300] [RUNS=5]` prints one line per run
/// (`inprocess-ms 12.3`); scripts/qcow-overlays.sh runs it beside `kvmoc qcow overlay` and `qemu-img create`.
/// </summary>
public static class QcowOverlayHarness
{
    public static int Run(string[] args)
    {
        string basePath = args[1], work = args[2];
        int n = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 300;
        int runs = args.Length > 4 ? int.Parse(args[4], CultureInfo.InvariantCulture) : 5;
        for (int r = 0; r <= runs; r++)
        {
            var dir = Path.Combine(work, $"inproc-{r}");
            Directory.CreateDirectory(dir);
            var paths = Enumerable.Range(1, n).Select(i => Path.Combine(dir, $"win7-{i}.qcow2")).ToList();
            var sw = Stopwatch.StartNew();
            int made = QcowOverlayWriter.CreateMany(paths, basePath, new QcowOverlayOptions()).Count();
            sw.Stop();
            if (made != n) throw new InvalidOperationException($"made {made} of {n}");
            if (r > 0) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"inprocess-ms {sw.Elapsed.TotalMilliseconds:F1}"));
        }
        return 0;
    }
}
