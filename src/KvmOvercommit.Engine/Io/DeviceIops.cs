namespace KvmOvercommit.Engine.Io;

/// <summary>
/// One block device over one interval, with iostat's (sysstat 12) definitions: rates are counter deltas over the
/// exact elapsed time; awaits are delta ticks over delta I/Os; the queue size is the delta of weighted time in queue
/// over the interval; utilization is the delta of time doing I/O over the interval.
/// </summary>
public sealed class DeviceIops
{
    /// <summary>Kernel device name (sda, dm-0, md126), or "Total" for the sum row.</summary>
    public string Device { get; set; } = "";
    /// <summary>Reads completed per second (iostat r/s).</summary>
    public double ReadsPerSec { get; set; }
    /// <summary>Writes completed per second (iostat w/s).</summary>
    public double WritesPerSec { get; set; }
    /// <summary>Discards completed per second (iostat d/s); null on kernels before 4.18.</summary>
    public double? DiscardsPerSec { get; set; }
    /// <summary>Flushes completed per second (iostat f/s); null on kernels before 5.5.</summary>
    public double? FlushesPerSec { get; set; }
    /// <summary>I/O requests per second: reads + writes + discards, exactly iostat's tps (sysstat 12 counts discards; flushes are not counted).</summary>
    public double Iops { get; set; }
    /// <summary>Bytes read per second (sectors × 512).</summary>
    public double ReadBytesPerSec { get; set; }
    /// <summary>Bytes written per second (sectors × 512).</summary>
    public double WriteBytesPerSec { get; set; }
    /// <summary>Bytes discarded per second; null on kernels before 4.18.</summary>
    public double? DiscardBytesPerSec { get; set; }
    /// <summary>Reads merged per second (iostat rrqm/s).</summary>
    public double ReadMergesPerSec { get; set; }
    /// <summary>Writes merged per second (iostat wrqm/s).</summary>
    public double WriteMergesPerSec { get; set; }
    /// <summary>Average milliseconds per read, queueing included (iostat r_await); 0 when there were no reads.</summary>
    public double ReadAwaitMs { get; set; }
    /// <summary>Average milliseconds per write (iostat w_await); 0 when there were no writes.</summary>
    public double WriteAwaitMs { get; set; }
    /// <summary>Average milliseconds per discard (iostat d_await); null on kernels before 4.18.</summary>
    public double? DiscardAwaitMs { get; set; }
    /// <summary>Average milliseconds per flush (iostat f_await); null on kernels before 5.5.</summary>
    public double? FlushAwaitMs { get; set; }
    /// <summary>Average number of requests queued or in service (iostat aqu-sz).</summary>
    public double AverageQueueSize { get; set; }
    /// <summary>Percent of the interval the device was busy (iostat %util); for the Total row the busiest device's value.</summary>
    public double UtilizationPercent { get; set; }
    /// <summary>I/Os in flight at the end of the interval.</summary>
    public long InFlight { get; set; }
    /// <summary>The exact elapsed time between the two readings, in seconds.</summary>
    public double IntervalSeconds { get; set; }
    /// <summary>When the second reading was taken (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
    /// <summary>1 for the first interval, 2 for the next…</summary>
    public int Sample { get; set; }
    /// <summary>Read throughput in MiB/s.</summary>
    public double ReadMiBPerSec => Math.Round(ReadBytesPerSec / Units.MiB, 3);
    /// <summary>Write throughput in MiB/s.</summary>
    public double WriteMiBPerSec => Math.Round(WriteBytesPerSec / Units.MiB, 3);
}
