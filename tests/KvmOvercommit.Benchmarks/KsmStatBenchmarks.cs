using BenchmarkDotNet.Attributes;
using KvmOvercommit.Engine.Ksm;

namespace KvmOvercommit.Benchmarks;

/// <summary>
/// Get-KsmStat's engine: every file of /sys/kernel/mm/ksm read and parsed in-process, one pass. Compare with
/// scripts/ksm-stat-vs-shell.sh, which times the blog's shell loop and `kvmoc ksm stat --json` as whole processes.
/// </summary>
[MemoryDiagnoser]
public class KsmStatBenchmarks
{
    /// <summary>The real kernel's files (24 on 6.18).</summary>
    [Benchmark]
    public KsmStat ReadKsmStat() => KsmStatReader.Read();

    /// <summary>All processes' /proc/&lt;pid&gt;/ksm_stat (Get-KsmProcess -All).</summary>
    [Benchmark]
    public int ReadAllKsmProcesses() => KsmProcessReader.Query(null, null, null, all: true).Count;
}
