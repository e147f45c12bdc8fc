using System.CommandLine;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Experiment;

namespace KvmOvercommit.Cli;

/// <summary>
/// `kvmoc experiment --recover` and `kvmoc ksm autotune --recover` (Invoke-OvercommitExperiment -Recover,
/// Invoke-KsmAutoTune -Recover): undo a run that was killed, from its journal.
/// </summary>
public static class RecoverCli
{
    static readonly string[] Columns = { "Kind", "Id", "Pid", "StartTime", "Recovered", "JournalPath" };

    /// <summary>The --recover option of a command.</summary>
    public static Option<bool> Option(string what) => new("--recover") { Description = $"Undo a {what} run that was killed (kill -9, a crash), from its journal under /run/kvmovercommit/.journal; nothing else runs." };

    /// <summary>Recovers every dead run of <paramref name="kind"/>; with <paramref name="whatIf"/> only says what it would undo.</summary>
    public static async Task RunAsync(string kind, CliRun run, bool whatIf, CancellationToken ct)
    {
        var dead = HostJournal.FindDead(null, kind);
        if (dead.Count == 0)
        {
            run.Err.WriteLine($"No journal of a dead {(kind == HostJournal.AutoTuneKind ? "autotuner" : "experiment")} run: nothing to recover.");
            return;
        }
        if (whatIf)
        {
            foreach (var j in dead)
                run.Out.WriteLine($"What if: recover {j.Kind} {j.Id} (pid {j.Pid}, {j.JournalPath}): stop {j.Guests.Count} guest(s), delete {j.Files.Count} file(s), {j.Folders.Count} folder(s) and {j.Networks.Count} network namespace(s), restore KSM");
            return;
        }
        var done = await HostJournal.RecoverAsync(kind, null, run, ct).ConfigureAwait(false);
        run.WriteResults(done, Columns);
        foreach (var j in done.Where(j => !j.Recovered))
            run.Error(new KvmOcException(ErrorKind.InvalidOperation, "RecoveryIncomplete", $"{j.Kind} {j.Id}: {string.Join("; ", j.RecoveryProblems)}", j.JournalPath, "Fix what is named and run --recover again."));
    }
}
