using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Measures I/O operations per second per guest and per drive, from QEMU's own block statistics.</summary>
/// <remarks>
/// Keeps a QMP connection to each guest, reads query-blockstats, waits -IntervalSeconds, reads again and reports the
/// rates over the exact elapsed time: read, write and flush operations per second, bytes per second and the average
/// read and write latency of the interval. Guests from the pipeline are sampled together. -Count takes that many
/// intervals, -Continuous samples until Ctrl+C.
/// </remarks>
/// <example>
/// <code>Get-KvmGuest | Measure-KvmGuestIops -IntervalSeconds 5</code>
/// <para>Per-guest, per-drive IOPS over five seconds.</para>
/// </example>
/// <example>
/// <code>Measure-KvmGuestIops -Name 'win7-*' -Continuous | Where-Object Iops -gt 100</code>
/// <para>Watches the win7 guests every second and shows the drives that are busy.</para>
/// </example>
[Cmdlet(VerbsDiagnostic.Measure, "KvmGuestIops")]
[OutputType(typeof(KvmGuestIops))]
public sealed class MeasureKvmGuestIopsCommand : KvmCmdlet
{
    readonly List<KvmGuest> _guests = new();
    bool _selected;

    /// <summary>Guest names; wildcards allowed. Without Name and Id, every guest.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>QEMU process ids of the guests.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("ProcessId")]
    [ValidateNotNullOrEmpty]
    public int[]? Id { get; set; }

    /// <summary>Seconds between the two samples of each interval (from 0.05 to 86400).</summary>
    [Parameter]
    public double IntervalSeconds { get; set; } = 1;

    /// <summary>How many intervals to report (default 1; not with -Continuous).</summary>
    [Parameter]
    public int Count { get; set; } = 1;

    /// <summary>Report interval after interval until Ctrl+C (not with -Count).</summary>
    [Parameter]
    public SwitchParameter Continuous { get; set; }

    /// <inheritdoc />
    protected override void BeginProcessing()
    {
        Validate(() => { Validation.CountOrContinuous(MyInvocation.BoundParameters.ContainsKey(nameof(Count)), Continuous); return 0; });
        Validate(() => Validation.IntervalSeconds(IntervalSeconds, Validation.MinGuestIopsInterval));
        Validate(() => Validation.Count(Count));
    }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (Name is null && Id is null) return;
        _selected = true;
        Invoke(() =>
        {
            foreach (var g in new KvmGuestInventory().Find(Name, Id, WriteEngineError))
                if (_guests.TrueForAll(x => x.Id != g.Id)) _guests.Add(g);
        });
    }

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        if (!_selected) Invoke(() => _guests.AddRange(new KvmGuestInventory().Find(null, null)));
        if (_guests.Count == 0) return;
        InvokeAsyncWithErrors((observer, emit, error, ct) =>
            new KvmGuestIopsSampler().RunAsync(_guests, TimeSpan.FromSeconds(IntervalSeconds), Continuous ? null : Count, emit, error, observer, ct));
    }
}
