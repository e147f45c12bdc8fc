using System.CommandLine;
using System.Globalization;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;

namespace KvmOvercommit.Cli;

/// <summary>`kvmoc ksm stat|tune|watch|ps|workload`: Get-KsmStat, Set-KsmTuning, Watch-KsmStat, Get-KsmProcess and the test workload.</summary>
public sealed class KsmCli : ICliCommandProvider
{
    /// <summary>Table columns of each output type (the same as the module's format views).</summary>
    internal static readonly string[] StatColumns = { "Run", "PagesToScan", "SleepMilliseconds", "PagesShared", "PagesSharing", "SavedMiB", "SharingRatio" };
    internal static readonly string[] SampleColumns = { "Index", "PagesSharing", "SavedMiB", "PagesMergedPerSecond", "PagesScannedPerSecond", "FullScansDelta", "KsmdCpuPercent" };
    internal static readonly string[] ProcessColumns = { "Id", "Name", "KsmMergingPages", "SavedMiB", "ProfitMiB", "Mergeable" };

    public IEnumerable<Command> Commands(CliContext ctx)
    {
        var ksm = new Command("ksm", "Kernel samepage merging: read, tune and watch KSM; per-process savings.");
        ksm.Subcommands.Add(Stat(ctx));
        ksm.Subcommands.Add(Tune(ctx));
        ksm.Subcommands.Add(Watch(ctx));
        ksm.Subcommands.Add(Ps(ctx));
        ksm.Subcommands.Add(Workload(ctx));
        ksm.Subcommands.Add(AutoTuneCli.Build(ctx));
        yield return ksm;
    }

    static Command Stat(CliContext ctx)
    {
        var cmd = new Command("stat", "Every file of /sys/kernel/mm/ksm as typed values, with bytes saved and sharing ratios (Get-KsmStat).");
        ctx.SetAction(cmd, (parse, run, ct) =>
        {
            run.WriteResults(new[] { KsmStatReader.Read() });
            return Task.CompletedTask;
        });
        return cmd;
    }

    static Command Tune(CliContext ctx)
    {
        var cmd = new Command("tune", "Set KSM knobs: validated first, written in an order the kernel accepts, rolled back on failure (Set-KsmTuning).");
        var profile = new Option<KsmTuningProfile?>("--profile") { Description = "Default (100 pages / 20 ms), Aggressive (20000 / 20 ms) or Advisor (advisor_mode=scan-time)." };
        var runOpt = new Option<string?>("--run") { Description = "Stop, Merge or Unmerge." };
        var pages = new Option<long?>("--pages-to-scan") { Description = "pages_to_scan." };
        var sleep = new Option<long?>("--sleep-milliseconds") { Description = "sleep_millisecs." };
        var maxShare = new Option<long?>("--max-page-sharing") { Description = "max_page_sharing (only with no merged pages; --force unmerges first)." };
        var across = new Option<bool?>("--merge-across-nodes") { Description = "merge_across_nodes: true or false (only with no merged pages)." };
        var zero = new Option<bool?>("--use-zero-pages") { Description = "use_zero_pages: true or false." };
        var smart = new Option<bool?>("--smart-scan") { Description = "smart_scan: true or false." };
        var prune = new Option<long?>("--stable-node-chains-prune-milliseconds") { Description = "stable_node_chains_prune_millisecs." };
        var advisor = new Option<string?>("--advisor-mode") { Description = "advisor_mode: none or scan-time." };
        var advCpu = new Option<long?>("--advisor-max-cpu") { Description = "advisor_max_cpu (percent)." };
        var advTime = new Option<long?>("--advisor-target-scan-time") { Description = "advisor_target_scan_time (seconds)." };
        var advMin = new Option<long?>("--advisor-min-pages-to-scan") { Description = "advisor_min_pages_to_scan." };
        var advMax = new Option<long?>("--advisor-max-pages-to-scan") { Description = "advisor_max_pages_to_scan." };
        var force = new Option<bool>("--force") { Description = "Unmerge every page first when max_page_sharing or merge_across_nodes must change." };
        var whatIf = new Option<bool>("--what-if") { Description = "Show the writes, write nothing." };
        var passThru = new Option<bool>("--pass-thru") { Description = "Print the settings that were replaced (feed them back to restore)." };
        foreach (var o in new Option[] { profile, runOpt, pages, sleep, maxShare, across, zero, smart, prune, advisor, advCpu, advTime, advMin, advMax, force, whatIf, passThru })
            cmd.Options.Add(o);
        ctx.SetAction(cmd, (parse, run, ct) =>
        {
            var t = new KsmTuning
            {
                Run = parse.GetValue(runOpt) is string r ? KsmRunStateParser.Parse(r) : null,
                PagesToScan = parse.GetValue(pages),
                SleepMilliseconds = parse.GetValue(sleep),
                MaxPageSharing = parse.GetValue(maxShare),
                MergeAcrossNodes = parse.GetValue(across),
                UseZeroPages = parse.GetValue(zero),
                SmartScan = parse.GetValue(smart),
                StableNodeChainsPruneMilliseconds = parse.GetValue(prune),
                AdvisorMode = parse.GetValue(advisor),
                AdvisorMaxCpu = parse.GetValue(advCpu),
                AdvisorTargetScanTime = parse.GetValue(advTime),
                AdvisorMinPagesToScan = parse.GetValue(advMin),
                AdvisorMaxPagesToScan = parse.GetValue(advMax),
            };
            if (parse.GetValue(profile) is KsmTuningProfile p) t = KsmTuning.ForProfile(p, t);
            if (t.IsEmpty())
                throw new KvmOcException(ErrorKind.InvalidArgument, "KsmNothingToSet", "No setting given.", null, "Give --profile or at least one knob, e.g. --pages-to-scan 20000.");
            var tuner = new KsmTuner(observer: run);
            var plan = tuner.Plan(t, parse.GetValue(force));
            if (parse.GetValue(whatIf))
            {
                foreach (var w in plan.Writes) run.Out.WriteLine($"What if: echo {w.Value} > {Path.Combine(plan.KsmPath, w.File)}   # was {w.OldValue}{(w.Reason.Length > 0 ? ", " + w.Reason : "")}");
                if (plan.IsEmpty) run.Out.WriteLine("What if: nothing to change.");
                return Task.CompletedTask;
            }
            var replaced = tuner.Apply(plan);
            if (parse.GetValue(passThru)) run.WriteResults(new[] { replaced });
            return Task.CompletedTask;
        });
        return cmd;
    }

    static Command Watch(CliContext ctx)
    {
        var cmd = new Command("watch", "Sample KSM every interval: pages merged and scanned per second, full scans, ksmd CPU, profit change (Watch-KsmStat).");
        var interval = new Option<double>("--interval-seconds") { Description = "Seconds between samples (0.01 to 86400).", DefaultValueFactory = _ => 1.0 };
        var count = new Option<int?>("--count") { Description = "Stop after this many samples (at least 1)." };
        var duration = new Option<string?>("--duration") { Description = "Stop after this long: seconds, or a time span like 00:05:00 (at most 365 days)." };
        var stable = new Option<bool>("--until-stable") { Description = "Stop when the savings stop growing." };
        var stableSamples = new Option<int>("--stable-samples") { Description = "Samples without growth that count as stable (1 to 1000).", DefaultValueFactory = _ => 3 };
        foreach (var o in new Option[] { interval, count, duration, stable, stableSamples }) cmd.Options.Add(o);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var options = new KsmWatchOptions
            {
                Interval = Validation.IntervalSeconds(parse.GetValue(interval)),
                Count = parse.GetValue(count),
                Duration = Validation.ParseDuration(parse.GetValue(duration)),
                UntilStable = parse.GetValue(stable),
                StableSamples = parse.GetValue(stableSamples),
            };
            KsmWatcher.Validate(options);
            await foreach (var s in new KsmWatcher(observer: run).WatchAsync(options, ct).ConfigureAwait(false))
                run.Stream(s, SampleColumns);
        });
        return cmd;
    }

    static Command Ps(CliContext ctx)
    {
        var cmd = new Command("ps", "Per-process KSM savings from /proc/<pid>/ksm_stat, highest profit first (Get-KsmProcess).");
        var id = new Option<int[]>("--id") { Description = "Process ids.", AllowMultipleArgumentsPerToken = true };
        var name = new Option<string[]>("--name") { Description = "Process names (wildcards).", AllowMultipleArgumentsPerToken = true };
        var all = new Option<bool>("--all") { Description = "Also processes without KSM activity." };
        foreach (var o in new Option[] { id, name, all }) cmd.Options.Add(o);
        ctx.SetAction(cmd, (parse, run, ct) =>
        {
            var ids = parse.GetValue(id);
            var list = KsmProcessReader.Query(null, ids, parse.GetValue(name), parse.GetValue(all));
            if (ids is { Length: > 0 })
                foreach (var missing in ids.Except(list.Select(p => p.Id)))
                    run.Error(new KvmOcException(ErrorKind.NotFound, "KsmProcessNotFound", $"No process with id {missing}.", missing));
            run.WriteResults(list, ProcessColumns);
            return Task.CompletedTask;
        });
        return cmd;
    }

    static Command Workload(CliContext ctx)
    {
        var cmd = new Command("workload", "Hold mergeable memory (deterministic pattern, MADV_MERGEABLE) for tests and benchmarks; prints a READY line.");
        var size = new Option<int>("--size-mb") { Description = "MiB to map.", DefaultValueFactory = _ => 64 };
        var seed = new Option<int>("--seed") { Description = "Pattern seed: equal seeds give identical pages across processes.", DefaultValueFactory = _ => 1 };
        var hold = new Option<double?>("--hold-seconds") { Description = "Exit after this long (default: until killed)." };
        foreach (var o in new Option[] { size, seed, hold }) cmd.Options.Add(o);
        ctx.SetAction(cmd, (parse, run, ct) =>
            MergeableWorkload.RunAsync(parse.GetValue(size) * Units.MiB, parse.GetValue(seed),
                parse.GetValue(hold) is double h ? Validation.DurationSeconds(h, "--hold-seconds") : null,
                line => { run.Out.WriteLine(line); run.Out.Flush(); }, ct));
        return cmd;
    }
}
