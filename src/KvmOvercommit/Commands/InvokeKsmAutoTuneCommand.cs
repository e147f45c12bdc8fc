using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm.AutoTune;

namespace KvmOvercommit.Commands;

/// <summary>Tunes KSM adaptively: scans hard while merging pays, nearly idle otherwise, and wakes up when new mergeable memory appears.</summary>
/// <remarks>
/// The adaptive tuner in place of ksmtuned or a fixed `echo 20000 > pages_to_scan`. It polls the KSM counters and
/// the mergeable processes (/proc/&lt;pid&gt;/ksm_stat) several times a second and sets pages_to_scan and
/// sleep_millisecs: a new mergeable process (a guest boots) or mergeable memory growing starts a burst sized to pass
/// over all mergeable pages in about a quarter of a second (at most 20000 pages / 20 ms); once a full pass merges
/// (almost) nothing the rate steps down to the idle rate of 100 pages / 200 ms; merges the idle scan still finds wake it
/// again; little MemAvailable raises the floor. advisor_mode is left alone (the tuner refuses to run while the
/// scan-time advisor owns pages_to_scan). It starts ksmd when it is not merging.
/// Runs for -Duration, or until Ctrl+C. On every exit (the end of -Duration, Ctrl+C, an error) it leaves KSM running
/// at a low rate: the kernel default 100 pages / 20 ms, or the settings found at start when those were slower.
/// -Verbose shows every decision with its reason and every sysfs write; progress shows the mode, rate and savings.
/// Returns one result: duration, wake-ups, the decision log, the memory saved and ksmd's CPU use. Needs root.
/// </remarks>
/// <example>
/// <code>Invoke-KsmAutoTune -Duration 60 -Verbose</code>
/// <para>Tunes KSM for one minute and shows every decision and sysfs write.</para>
/// </example>
/// <example>
/// <code>(Invoke-KsmAutoTune -Duration (New-TimeSpan -Minutes 10)).Decisions | Format-Table Seconds, Mode, PagesToScan, SleepMilliseconds, Reason</code>
/// <para>Tunes KSM for ten minutes and lists the decision log afterwards.</para>
/// </example>
/// <example>
/// <code>Invoke-KsmAutoTune -WhatIf</code>
/// <para>Shows what the tuner would change; writes nothing.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "KsmAutoTune", SupportsShouldProcess = true, DefaultParameterSetName = "Run")]
[OutputType(typeof(KsmAutoTuneResult), ParameterSetName = new[] { "Run" })]
[OutputType(typeof(Engine.Experiment.HostJournal), ParameterSetName = new[] { "Recover" })]
public sealed class InvokeKsmAutoTuneCommand : KvmCmdlet
{
    /// <summary>How long to tune: a TimeSpan (00:10:00, (New-TimeSpan -Minutes 10)) or seconds (600); above 0 and at most 365 days. Without it the tuner runs until Ctrl+C.</summary>
    [Parameter(Position = 0, ParameterSetName = "Run")]
    [TimeSpanSecondsTransformation]
    public TimeSpan? Duration { get; set; }

    /// <summary>The variable that holds the Stopped result after Ctrl+C (the stopped pipeline drops its output).</summary>
    public const string StoppedResultVariable = "KsmAutoTuneResult";

    KsmAutoTuneResult? _result;

    /// <inheritdoc />
    protected override bool WaitForWorkOnStop => true;

    /// <summary>
    /// Undoes an autotuner run that was killed (kill -9): from its journal, leaves KSM at the low rate that run would
    /// have left (from the rate it found), then removes the journal. Returns each journal recovered.
    /// </summary>
    [Parameter(Mandatory = true, ParameterSetName = "Recover")]
    public SwitchParameter Recover { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (Recover)
        {
            var dead = Engine.Experiment.HostJournal.FindDead(null, Engine.Experiment.HostJournal.AutoTuneKind);
            if (dead.Count == 0) { WriteVerbose("No journal of a dead autotuner run found: nothing to recover."); return; }
            var approved = dead.Where(j => ShouldProcess(j.JournalPath, $"Recover the autotuner run of pid {j.Pid}: leave KSM at {j.ExitPagesToScan} pages / {j.ExitSleepMilliseconds} ms")).Select(j => j.JournalPath).ToHashSet();
            if (approved.Count == 0) return;
            InvokeAsync(async (observer, emit, ct) =>
            {
                foreach (var j in await Engine.Experiment.HostJournal.RecoverAsync(Engine.Experiment.HostJournal.AutoTuneKind, null, observer, ct, shouldProcess: j => approved.Contains(j.JournalPath)).ConfigureAwait(false))
                    emit(j);
            }, terminating: true);
            return;
        }
        var options = new KsmAutoTuneOptions { Duration = Validate(() => Validation.Duration(Duration)) };
        if (!ShouldProcess(HostRoots.Default.Ksm, KsmAutoTuner.Describe(options))) return;
        try
        {
            InvokeAsync(async (observer, emit, ct) =>
            {
                var r = await KsmAutoTuner.RunAsync(options, observer, ct).ConfigureAwait(false);
                _result = r;
                emit(r);
            }, terminating: true);
        }
        catch (PipelineStoppedException) when (_result is { } stopped)
        {
            // Ctrl+C stops the pipeline, and PowerShell drops whatever a stopped pipeline writes: keep the Stopped
            // result in $KsmAutoTuneResult and show it on the host, then stop.
            SessionState.PSVariable.Set(new PSVariable(StoppedResultVariable, stopped));
            try
            {
                Host.UI.WriteLine($"Invoke-KsmAutoTune stopped after {stopped.Duration.TotalSeconds:0.0} s: {stopped.Decisions.Count} decision(s), {stopped.Wakeups} wake-up(s), "
                    + $"{stopped.SavedMiB:0.#} MiB saved; KSM left at {stopped.ExitPagesToScan} pages / {stopped.ExitSleepMilliseconds} ms. The result is in ${StoppedResultVariable}.");
            }
            catch (Exception e) when (e is PipelineStoppedException or System.Management.Automation.Host.HostException or NotImplementedException) { }
            throw;
        }
    }
}
