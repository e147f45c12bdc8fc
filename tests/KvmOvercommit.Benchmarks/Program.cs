using BenchmarkDotNet.Running;

namespace KvmOvercommit.Benchmarks;

/// <summary>
/// Runs the benchmarks: `dotnet run -c Release --project tests/KvmOvercommit.Benchmarks -- --filter '*'`
/// (BenchmarkSwitcher: pick classes with --filter, e.g. '*GuestListing*'). `qcow-overlays …` runs the Stopwatch
/// harness of <see cref="QcowOverlayHarness"/> instead.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "qcow-overlays") return QcowOverlayHarness.Run(args);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
