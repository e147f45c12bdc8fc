using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Io;

namespace KvmOvercommit.Commands;

/// <summary>Measures IOPS, throughput, latency, queue size and utilization of block devices, as iostat -d -x does.</summary>
/// <remarks>
/// Reads /proc/diskstats, waits -IntervalSeconds, reads it again and writes one object per device with the rates
/// over the exact elapsed time. The figures follow sysstat's iostat: Iops is its tps (reads + writes + discards),
/// ReadAwaitMs/WriteAwaitMs its r_await/w_await, AverageQueueSize its aqu-sz, UtilizationPercent its %util.
/// Without -Device every whole disk, md and dm device is measured (not partitions, loop, ram or zram devices unless
/// named). A device name that does not exist is an ObjectNotFound error that lists the devices that do.
/// Samples stream: -Count N gives N intervals, -Continuous runs until Ctrl+C.
/// </remarks>
/// <example>
/// <code>Measure-DeviceIops -IntervalSeconds 5</code>
/// <para>The IOPS of every disk over five seconds (the blog's `iostat -d 5 2`, without the since-boot report).</para>
/// </example>
/// <example>
/// <code>Measure-DeviceIops -Device md12* -Continuous -Total | Format-Table</code>
/// <para>Watches the RAID arrays every second, with a sum row, until Ctrl+C.</para>
/// </example>
[Cmdlet(VerbsDiagnostic.Measure, "DeviceIops")]
[OutputType(typeof(DeviceIops))]
public sealed class MeasureDeviceIopsCommand : KvmCmdlet
{
    readonly List<string> _devices = new();

    /// <summary>Device names as /proc/diskstats spells them (sda, nvme0n1, dm-0, md126), /dev paths, or wildcards. Default: every whole disk, md and dm device.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(BlockDeviceCompleter))]
    public string[]? Device { get; set; }

    /// <summary>Length of one interval in seconds (default 1; from 0.01 to 86400).</summary>
    [Parameter]
    public double IntervalSeconds { get; set; } = 1;

    /// <summary>Number of intervals (default 1; not with -Continuous).</summary>
    [Parameter]
    public int Count { get; set; } = 1;

    /// <summary>Samples until Ctrl+C (not with -Count).</summary>
    [Parameter]
    public SwitchParameter Continuous { get; set; }

    /// <summary>Adds a row named Total per interval that sums the measured devices.</summary>
    [Parameter]
    public SwitchParameter Total { get; set; }

    /// <inheritdoc />
    protected override void BeginProcessing()
    {
        Validate(() => { Validation.CountOrContinuous(MyInvocation.BoundParameters.ContainsKey(nameof(Count)), Continuous); return 0; });
        Validate(() => Validation.IntervalSeconds(IntervalSeconds));
        Validate(() => Validation.Count(Count));
    }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (Device is not null) _devices.AddRange(Device);
    }

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        var options = new DeviceIopsOptions
        {
            Device = _devices.Count == 0 ? null : _devices.ToArray(),
            Interval = TimeSpan.FromSeconds(IntervalSeconds),
            Count = Continuous ? null : Count,
            Total = Total,
        };
        InvokeAsync(async (observer, emit, ct) =>
        {
            await foreach (var row in new DeviceIopsSampler().SampleAsync(options, observer, ct).ConfigureAwait(false))
                emit(row);
        }, terminating: true);
    }
}
