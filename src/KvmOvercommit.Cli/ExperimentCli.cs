using System.CommandLine;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Cli;

/// <summary>`kvmoc experiment`: Invoke-OvercommitExperiment. Prints the plan with --what-if, progress lines on stderr while it runs, then a table per profile (or the whole result with --json).</summary>
public sealed class ExperimentCli : ICliCommandProvider
{
    /// <summary>Table columns of a profile's result: the module's format view plus TotalSavedMiB.</summary>
    internal static readonly string[] ProfileColumns = { "Profile", "SavedMiB", "TotalSavedMiB", "TimeTo90PercentSeconds", "KsmdCpuSeconds", "OvercommitRatio", "EstimatedAdditionalGuests" };

    /// <summary>Table columns of a guest's result.</summary>
    internal static readonly string[] GuestColumns = { "Profile", "Name", "MemoryMiB", "RssMiB", "KsmMergedMiB", "OvercommitRatio" };

    public IEnumerable<Command> Commands(CliContext ctx)
    {
        var cmd = new Command("experiment", "The whole overcommit experiment (Invoke-OvercommitExperiment): overlays, guests, each KSM profile from a fresh unmerge, samples, report, cleanup.");
        var baseImage = new Option<string?>("--base-image") { Description = "Base image of the guests' overlays (default: the tiny guest on a small empty base)." };
        var tiny = new Option<bool>("--tiny-guest") { Description = "Boot the tiny guest also with --base-image (the base is then only the disk)." };
        var count = new Option<int>("--guest-count") { Description = "Number of guests.", DefaultValueFactory = _ => 4 };
        var memory = new Option<long>("--memory-mb") { Description = "Guest RAM in MiB.", DefaultValueFactory = _ => 128 };
        var cpus = new Option<int>("--cpu-count") { Description = "vCPUs per guest.", DefaultValueFactory = _ => 1 };
        var stagger = new Option<string?>("--stagger-seconds") { Description = "Seconds between guest starts (0 to 86400; fractions allowed), or auto: the first guest boots alone and its boot IOPS give the stagger of the rest." };
        var capacityOpt = new Option<double?>("--device-iops-capacity") { Description = "The IOPS the device under the overlays sustains, for the boot storm's recommended stagger (default: measured once with fio in the work folder)." };
        var profiles = new Option<string[]>("--ksm-profile") { Description = "Default, Aggressive, Advisor, Adaptive: one or several (comma-separated or repeated); default Default,Aggressive,Adaptive.", AllowMultipleArgumentsPerToken = true };
        var duration = new Option<string?>("--duration") { Description = "How long each profile runs: seconds or a time span like 00:02:00 (default 2 minutes; with --until-stable the cap, default 30 minutes)." };
        var stable = new Option<bool>("--until-stable") { Description = "End each profile when the savings stop growing." };
        var interval = new Option<double>("--interval-seconds") { Description = "Seconds between samples (0.1 to 86400).", DefaultValueFactory = _ => 2.0 };
        var work = new Option<string?>("--work-directory") { Description = "Folder for the overlays (default: the base image's folder, or a new folder under /tmp)." };
        var keep = new Option<bool>("--keep-guests") { Description = "Leave the guests running and their overlays in place (KSM settings are restored anyway)." };
        var report = new Option<string?>("--report-path") { Description = "Folder for experiment.json, samples.csv and saved-memory.svg." };
        var fill = new Option<int?>("--fill-mib") { Description = "Tiny guest: MiB each guest fills with a pattern shared by all guests (default half of --memory-mb, leaving at least 96 MiB: 32 of 128)." };
        var accel = new Option<GuestAccelerator>("--accelerator") { Description = "Auto, Kvm or Tcg.", DefaultValueFactory = _ => GuestAccelerator.Auto };
        var runDir = new Option<string?>("--run-directory") { Description = "Folder for the guests' run directories." };
        var whatIf = new Option<bool>("--what-if") { Description = "Print the plan, do nothing." };
        foreach (var o in new Option[] { baseImage, tiny, count, memory, cpus, stagger, profiles, duration, stable, interval, work, keep, report, fill, accel, runDir, whatIf })
            cmd.Options.Add(o);
        var recover = RecoverCli.Option("experiment");
        cmd.Options.Add(recover);
        var network = new Option<ExperimentNetworkMode>("--network") { Description = "None, or Isolated: the fleet tiny guests on a network namespace with a bridge and dnsmasq, reached with Ansible over SSH (all removed at cleanup).", DefaultValueFactory = _ => ExperimentNetworkMode.None };
        cmd.Options.Add(network);
        var ioPercent = new Option<int>("--io-load-percent") { Description = "With --network isolated: the share of the guests (percent) that get an I/O load through Ansible." };
        var ioLoad = new Option<ExperimentIoLoad>("--io-load") { Description = "Write, Read or RandomWrite.", DefaultValueFactory = _ => ExperimentIoLoad.Write };
        var ioSeconds = new Option<int>("--io-load-seconds") { Description = "Seconds the load is sampled.", DefaultValueFactory = _ => 10 };
        cmd.Options.Add(ioPercent);
        cmd.Options.Add(ioLoad);
        cmd.Options.Add(ioSeconds);
        cmd.Options.Add(capacityOpt);
        var cgroup = new Option<string?>("--cgroup") { Description = "Run the guests in this existing memory cgroup (with a limit); the estimate is sized against it." };
        var cgroupLimit = new Option<long?>("--cgroup-limit-mb") { Description = "Create a memory cgroup with this limit (MiB) for the run, start the guests in it, remove it at the end." };
        var validate = new Option<bool>("--validate-estimate") { Description = "After the profiles, boot guests of the same kind into the cgroup until one no longer fits; report predicted against actual (needs --cgroup or --cgroup-limit-mb)." };
        var headroom = new Option<double>("--headroom-percent") { Description = "Percent of host memory (with a cgroup: of its limit) kept free in the estimate (default 10).", DefaultValueFactory = _ => 10 };
        foreach (var o in new Option[] { cgroup, cgroupLimit, validate, headroom }) cmd.Options.Add(o);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            if (parse.GetValue(recover)) { await RecoverCli.RunAsync(HostJournal.ExperimentKind, run, parse.GetValue(whatIf), ct).ConfigureAwait(false); return; }
            var options = new ExperimentOptions
            {
                BaseImage = parse.GetValue(baseImage),
                TinyGuest = parse.GetValue(tiny) ? true : null,
                GuestCount = parse.GetValue(count),
                MemoryMB = parse.GetValue(memory),
                CpuCount = parse.GetValue(cpus),
                StaggerSeconds = Validation.ParseStaggerSeconds(parse.GetValue(stagger)),
                DeviceIopsCapacity = parse.GetValue(capacityOpt) is double cap ? Validation.DeviceIopsCapacity(cap, "--device-iops-capacity") : null,
                Duration = Validation.ParseDuration(parse.GetValue(duration)),
                UntilStable = parse.GetValue(stable),
                Interval = Validation.IntervalSeconds(parse.GetValue(interval), Validation.MinExperimentInterval),
                WorkDirectory = parse.GetValue(work),
                KeepGuests = parse.GetValue(keep),
                ReportPath = parse.GetValue(report),
                FillMiB = parse.GetValue(fill),
                Accelerator = parse.GetValue(accel),
                RunDirectory = parse.GetValue(runDir),
                Network = parse.GetValue(network),
                IoLoadPercent = parse.GetValue(ioPercent),
                IoLoad = parse.GetValue(ioLoad),
                IoLoadSeconds = parse.GetValue(ioSeconds),
                Cgroup = parse.GetValue(cgroup),
                CgroupLimitMB = parse.GetValue(cgroupLimit),
                ValidateEstimate = parse.GetValue(validate),
                HeadroomPercent = parse.GetValue(headroom),
            };
            if (ParseProfiles(parse.GetValue(profiles)) is { } p) options.Profiles = p;
            var plan = OvercommitExperiment.Plan(options, run);
            if (parse.GetValue(whatIf))
            {
                if (run.Json) run.WriteResults(new[] { plan }); // the ExperimentPlan: steps, names, overlays, options
                else foreach (var step in plan.Steps) run.Out.WriteLine("What if: " + run.Rewrite(step));
                return;
            }
            // Ctrl+C and SIGTERM end the run through the token (CliStop), so the cleanup in the engine's finally completes.
            var result = await OvercommitExperiment.RunAsync(plan, new ProgressLines(run), ct, run.Error).ConfigureAwait(false);
            if (run.Json)
            {
                run.WriteResults(new[] { result });
                return;
            }
            run.Out.WriteLine($"{result.GuestCount} guest(s) × {result.MemoryMB} MiB ({(result.TinyGuest ? "tiny guest" : result.BaseImage)}, {result.Accelerator}), committed {result.CommittedMiB} MiB, {result.Duration:hh\\:mm\\:ss}; best: {result.BestProfile}");
            run.Out.WriteLine();
            CliOutput.WriteTable(run.Out, result.Profiles, ProfileColumns);
            run.Out.WriteLine();
            CliOutput.WriteTable(run.Out, result.Profiles.SelectMany(x => x.Guests).ToList(), GuestColumns);
            run.Out.WriteLine();
            if (result.Fleet is { } fleet)
            {
                run.Out.WriteLine($"isolated network {fleet.Namespace} ({fleet.Subnet} on {fleet.Bridge}): {fleet.Leased} of {fleet.Guests.Length} leased, Ansible reached {fleet.Reached}; inventory {fleet.InventoryFile}");
                CliOutput.WriteTable(run.Out, fleet.Guests, new[] { "Name", "IPAddress", "SecondsToLease", "AnsibleReachable", "SecondsToReachable" });
                run.Out.WriteLine();
            }
            if (result.IoLoad is { } load)
            {
                run.Out.WriteLine($"I/O load {load.Load} on {load.Guests.Count(g => g.IoLoaded)} guest(s) for {load.Seconds} s: device {load.Device} {load.DeviceIopsIdle} → {load.DeviceIopsLoaded} IOPS ({load.DeviceIopsPerLoadedGuest} per loaded guest)");
                CliOutput.WriteTable(run.Out, load.Guests, new[] { "Name", "IoLoaded", "IopsIdle", "IopsLoaded", "ProcessIopsIdle", "ProcessIopsLoaded" });
                if (!string.IsNullOrEmpty(load.ProcessIopsSource)) run.Out.WriteLine($"ProcessIops: {load.ProcessIopsSource}");
                run.Out.WriteLine();
            }
            if (result.BootStorm is { } boot)
            {
                run.Out.WriteLine($"boot storm: {boot.BootIopsPerGuest} IOPS per guest for {boot.BootSeconds} s; capacity {(boot.DeviceIopsCapacity is double c ? $"{c} IOPS ({boot.CapacitySource})" : "unknown")}; MaxOverlappingBoots {boot.MaxOverlappingBoots?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "–"}, RecommendedStaggerSeconds {boot.RecommendedStaggerSeconds?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "–"}{(boot.StaggerAuto ? $" (Auto: started {boot.StaggerSeconds} s apart)" : "")}");
                CliOutput.WriteTable(run.Out, boot.Guests, new[] { "Name", "BootSeconds", "Operations", "Iops", "ReadyBy" });
                run.Out.WriteLine(run.Rewrite(boot.Explanation));
                run.Out.WriteLine();
            }
            if (result.Validation is { } v)
            {
                run.Out.WriteLine($"estimate checked in {v.Cgroup} (limit {Units.ToMiB(v.LimitBytes)} MiB, {v.BaseGuests} guest(s), {Units.ToMiB(v.PerGuestBytes)} MiB per guest): predicted {v.PredictedAdditionalGuests?.ToString() ?? "–"}, actual {v.ActualAdditionalGuests} more guest(s), error {(v.ErrorPercent is double e ? e + "%" : "–")} ({(v.WithinGoal ? "within" : "NOT within")} 15% or 1 guest)");
                run.Out.WriteLine($"  stopped: {v.StopReason}");
                foreach (var line in v.Explanation) run.Out.WriteLine("  " + line);
                run.Out.WriteLine();
            }
            run.Out.WriteLine("phases: " + string.Join(", ", result.Phases.Select(x => x.ToString())));
            run.Out.WriteLine(result.KsmRestored ? "KSM settings restored." : "KSM settings NOT fully restored: " + string.Join("; ", result.KsmDifferences));
            if (result.ReportFiles.Length > 0) run.Out.WriteLine($"report: {Path.GetDirectoryName(result.ReportFiles[0])} ({string.Join(", ", result.ReportFiles.Select(Path.GetFileName))})");
        });
        yield return cmd;
    }

    /// <summary>"Default,Aggressive" or several values; names are case-insensitive. Null when none is given.</summary>
    internal static ExperimentProfile[]? ParseProfiles(string[]? values)
    {
        if (values is not { Length: > 0 }) return null;
        return values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Select(v => Enum.TryParse<ExperimentProfile>(v, ignoreCase: true, out var p) && Enum.IsDefined(p) ? p
                : throw new KvmOcException(ErrorKind.InvalidArgument, "ExperimentInvalidProfile", $"'{v}' is not a KSM profile.", v, "Use Default, Aggressive, Advisor or Adaptive."))
            .ToArray();
    }

    /// <summary>Progress as stderr lines: every change of the experiment's phase, and the sampling status every 10 seconds.</summary>
    sealed class ProgressLines(CliRun run) : IOperationObserver
    {
        readonly object _lock = new();
        string? _lastMain;
        DateTime _lastDetail = DateTime.MinValue;
        public void Verbose(string message) => run.Verbose(message);
        public void Warning(string message) => run.Warning(message);
        public void Progress(ProgressInfo p)
        {
            if (p.Completed) return;
            lock (_lock)
            {
                if (p.ActivityId == 1)
                {
                    if (p.Status == _lastMain) return;
                    _lastMain = p.Status;
                }
                else
                {
                    if (DateTime.UtcNow - _lastDetail < TimeSpan.FromSeconds(10)) return;
                    _lastDetail = DateTime.UtcNow;
                }
                run.Err.WriteLine($"{DateTime.Now:HH:mm:ss} {p.Activity}: {p.Status}");
            }
        }
    }
}
