using System.CommandLine;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm.AutoTune;

namespace KvmOvercommit.Cli;

/// <summary>
/// `kvmoc ksm autotune [--duration S]`: Invoke-KsmAutoTune in the foreground. Without --duration it runs until
/// Ctrl+C or SIGTERM (systemd stop), and in every case leaves KSM at a low rate. Added under `kvmoc ksm` by KsmCli.
/// </summary>
public static class AutoTuneCli
{
    /// <summary>Table columns of a decision (the same as the module's format view).</summary>
    internal static readonly string[] DecisionColumns = { "Seconds", "Mode", "PagesToScan", "SleepMilliseconds", "PagesSharing", "Reason" };

    /// <summary>Table columns of the summary.</summary>
    internal static readonly string[] ResultColumns = { "Duration", "Wakeups", "SavedMiB", "KsmdCpuSeconds", "KsmdCpuPercent", "ExitPagesToScan", "ExitSleepMilliseconds" };

    /// <summary>The `autotune` subcommand.</summary>
    public static Command Build(CliContext ctx)
    {
        var cmd = new Command("autotune", "Adaptive KSM tuning (Invoke-KsmAutoTune): scan hard while merging pays, idle otherwise; runs until stopped without --duration (a systemd service in place of ksmtuned).");
        var duration = new Option<string?>("--duration") { Description = "How long to run: seconds, or a time span like 00:10:00 (default: until Ctrl+C or SIGTERM)." };
        var quiet = new Option<bool>("--quiet") { Description = "Print only the summary, not every rate change." };
        cmd.Options.Add(duration);
        cmd.Options.Add(quiet);
        var recover = RecoverCli.Option("KSM autotuner");
        cmd.Options.Add(recover);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            if (parse.GetValue(recover)) { await RecoverCli.RunAsync(Engine.Experiment.HostJournal.AutoTuneKind, run, false, ct).ConfigureAwait(false); return; }
            // SIGINT, SIGTERM (systemd's stop) and a closed stdout cancel ct (CliStop): the loop ends normally, so the low rate is restored.
            bool stream = !parse.GetValue(quiet);
            var options = new KsmAutoTuneOptions
            {
                Duration = Validation.ParseDuration(parse.GetValue(duration)),
                OnDecision = stream ? d => run.Stream(d, DecisionColumns) : null,
            };
            var result = await KsmAutoTuner.RunAsync(options, run, ct).ConfigureAwait(false);
            if (stream && !run.Json) run.Out.WriteLine();
            run.WriteResults(new[] { result }, ResultColumns);
        });
        return cmd;
    }
}
