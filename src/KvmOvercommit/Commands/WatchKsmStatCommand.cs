using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;

namespace KvmOvercommit.Commands;

/// <summary>Samples KSM repeatedly and reports merge and scan rates, savings growth and ksmd's CPU use.</summary>
/// <remarks>
/// Each sample carries the reading and its deltas against the previous one with the exact elapsed time: pages
/// merged per second, pages scanned per second, full scans, general-profit change, and the ksmd thread's CPU percent
/// (from its utime+stime in /proc). Runs for -Count samples, for -Duration, until the savings stop growing
/// (-UntilStable), or until Ctrl+C. Shows progress while it runs.
/// </remarks>
/// <example>
/// <code>Watch-KsmStat -IntervalSeconds 5 -Count 12</code>
/// <para>One minute of samples, every five seconds.</para>
/// </example>
/// <example>
/// <code>Set-KsmTuning -Profile Aggressive -Run Merge; Watch-KsmStat -UntilStable | Select-Object -Last 1</code>
/// <para>Tunes KSM and waits until it has merged all it can; shows the final sample.</para>
/// </example>
[Cmdlet(VerbsCommon.Watch, "KsmStat")]
[OutputType(typeof(KsmSample))]
public sealed class WatchKsmStatCommand : KvmCmdlet
{
    /// <summary>Seconds between samples (default 1; from 0.01 to 86400).</summary>
    [Parameter]
    public double IntervalSeconds { get; set; } = 1;

    /// <summary>Stop after this many samples (at least 1).</summary>
    [Parameter]
    public int? Count { get; set; }

    /// <summary>Stop after this much time: a TimeSpan (00:05:00, (New-TimeSpan -Minutes 5)) or seconds (300); above 0 and at most 365 days.</summary>
    [Parameter]
    [TimeSpanSecondsTransformation]
    public TimeSpan? Duration { get; set; }

    /// <summary>Stop when the savings stop growing (no growth for -StableSamples samples, with a full scan completed meanwhile while KSM merges).</summary>
    [Parameter]
    public SwitchParameter UntilStable { get; set; }

    /// <summary>How many samples without growth count as stable (default 3; from 1 to 1000).</summary>
    [Parameter]
    public int StableSamples { get; set; } = 3;

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        var options = new KsmWatchOptions
        {
            Interval = Validate(() => Validation.IntervalSeconds(IntervalSeconds)),
            Count = Count,
            Duration = Duration,
            UntilStable = UntilStable,
            StableSamples = StableSamples,
        };
        Validate(() => { KsmWatcher.Validate(options); return 0; });
        InvokeAsync(async (observer, emit, ct) =>
        {
            await foreach (var sample in new KsmWatcher(observer: observer).WatchAsync(options, ct).ConfigureAwait(false))
                emit(sample);
        }, terminating: true);
    }
}
