using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Io;

namespace KvmOvercommit.Commands;

/// <summary>Measures the I/O of processes (QEMU guests above all): syscalls and bytes per second, and true IOPS where the cgroup shows them.</summary>
/// <remarks>
/// Reads /proc/&lt;pid&gt;/io twice and reports read/write syscalls per second (syscr/syscw) and the bytes per
/// second that reached storage (read_bytes/write_bytes). When the process sits alone in a cgroup v2 with the io
/// controller (a guest started in its own systemd scope), it also reports the requests that reached the devices
/// from that cgroup's io.stat (rios/wios): true per-process IOPS. The Source property names where each figure came
/// from, and Note says what the figures cannot show: I/O submitted through libaio or io_uring (QEMU's aio=native)
/// does not appear in the syscall counters. Get-KvmGuest and Get-Process objects bind by their Id property.
/// </remarks>
/// <example>
/// <code>Get-KvmGuest win7-* | Measure-ProcessIops -IntervalSeconds 5 | Sort-Object WriteBytesPerSec -Descending</code>
/// <para>Which guests write the most: the blog's "per process: no tool".</para>
/// </example>
/// <example>
/// <code>Measure-ProcessIops -Name qemu* -Continuous</code>
/// <para>Every QEMU process, every second, until Ctrl+C.</para>
/// </example>
[Cmdlet(VerbsDiagnostic.Measure, "ProcessIops", DefaultParameterSetName = "Id")]
[OutputType(typeof(ProcessIops))]
public sealed class MeasureProcessIopsCommand : KvmCmdlet
{
    readonly List<int> _ids = new();
    readonly List<string> _names = new();

    /// <summary>Process ids. Get-KvmGuest and Get-Process objects bind by their Id property.</summary>
    [Parameter(Mandatory = true, ParameterSetName = "Id", ValueFromPipelineByPropertyName = true)]
    [Alias("ProcessId", "Pid")]
    public int[] Id { get; set; } = Array.Empty<int>();

    /// <summary>Process names (comm) or QEMU guest names (-name); wildcards allowed.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Name")]
    [SupportsWildcards]
    public string[] Name { get; set; } = Array.Empty<string>();

    /// <summary>Length of one interval in seconds (default 1; from 0.01 to 86400).</summary>
    [Parameter]
    public double IntervalSeconds { get; set; } = 1;

    /// <summary>Number of intervals (default 1; not with -Continuous).</summary>
    [Parameter]
    public int Count { get; set; } = 1;

    /// <summary>Samples until Ctrl+C (not with -Count).</summary>
    [Parameter]
    public SwitchParameter Continuous { get; set; }

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
        if (ParameterSetName == "Id") _ids.AddRange(Id);
        else _names.AddRange(Name);
    }

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        var sampler = new ProcessIopsSampler();
        List<ProcessTarget>? targets = null;
        Invoke(() => targets = sampler.Resolve(_ids, _names), terminating: true);
        if (targets is null || targets.Count == 0) return;
        InvokeAsync(async (observer, emit, ct) =>
        {
            await foreach (var row in sampler.SampleAsync(targets, TimeSpan.FromSeconds(IntervalSeconds), Continuous ? null : Count, observer, ct).ConfigureAwait(false))
                emit(row);
        }, terminating: true);
    }
}
