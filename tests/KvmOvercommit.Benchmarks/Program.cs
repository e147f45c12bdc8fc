using BenchmarkDotNet.Running;

namespace KvmOvercommit.Benchmarks;

/// <summary>
/// Runs the benchmarks: `dotnet run -c Release --project tests/KvmOvercommit.Benchmarks -- --filter '*'`
/// (BenchmarkSwitcher: pick classes with --filter, e.g. '*GuestListing*').
/// </summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
