using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Memory;

namespace KvmOvercommit.Cli;

/// <summary>
/// `kvmoc memory balance`: Invoke-KvmMemoryBalancer in the foreground. Without --duration it runs until Ctrl+C or
/// SIGTERM (systemd stop), and in every case deflates the balloons it balanced back to each guest's -m (unless
/// --leave-balloons).
/// </summary>
public sealed class MemoryCli : ICliCommandProvider
{
    /// <summary>Table columns of a decision (the same as the module's format view).</summary>
    internal static readonly string[] DecisionColumns = { "Seconds", "Name", "Action", "ActualMB", "TargetMB", "Reason" };

    /// <summary>Table columns of the summary.</summary>
    internal static readonly string[] ResultColumns = { "Duration", "Rounds", "PressureRounds", "Inflations", "Deflations", "ProcessCpuPercent", "DeflatedAtExit" };

    /// <summary>Table columns of the per-guest summary.</summary>
    internal static readonly string[] GuestColumns = { "Name", "Id", "MemoryMB", "MinimumMB", "LowestActualMB", "FinalActualMB" };

    /// <inheritdoc />
    public IEnumerable<Command> Commands(CliContext ctx)
    {
        var memory = new Command("memory", "Memory beyond KSM: the automatic balloon balancer.");
        memory.Subcommands.Add(Balance(ctx));
        yield return memory;
    }

    static Command Balance(CliContext ctx)
    {
        var cmd = new Command("balance", "Inflate the balloons of guests with free memory while the host is short, deflate them when it is not (Invoke-KvmMemoryBalancer); until Ctrl+C/SIGTERM without --duration.");
        var names = new Argument<string[]>("name") { Description = "Guest names; wildcards allowed (quote them). None: every guest with a balloon.", Arity = ArgumentArity.ZeroOrMore };
        var ids = new Option<int[]>("--id") { Description = "QEMU process ids.", AllowMultipleArgumentsPerToken = true };
        var duration = new Option<double?>("--duration") { Description = "Seconds to run (default: until Ctrl+C or SIGTERM)." };
        var interval = new Option<double>("--interval-seconds") { Description = "Seconds between rounds.", DefaultValueFactory = _ => 2 };
        var target = new Option<double>("--host-target-percent") { Description = "Memory used above which the host is under pressure (host, or --cgroup).", DefaultValueFactory = _ => 80 };
        var psi = new Option<double>("--psi-threshold-percent") { Description = "Memory PSI some avg10 above which the host is under pressure (0: ignore PSI).", DefaultValueFactory = _ => 10 };
        var hysteresis = new Option<double>("--hysteresis-percent") { Description = "Deflate only this many points below the target.", DefaultValueFactory = _ => 5 };
        var step = new Option<double>("--max-step-percent") { Description = "At most this percent of a guest's -m per round.", DefaultValueFactory = _ => 10 };
        var minimum = new Option<long?>("--minimum-mb") { Description = "The least every guest keeps, in MiB." };
        var minimumPercent = new Option<double>("--minimum-percent") { Description = "A guest's minimum without --minimum-mb, in percent of its -m.", DefaultValueFactory = _ => 50 };
        var guestMinimum = new Option<string[]>("--guest-minimum-mb") { Description = "NAME=MiB: the minimum of guests matching NAME (wildcards; repeat)." };
        var shares = new Option<string[]>("--shares") { Description = "NAME=N: the shares of guests matching NAME (default 1000; repeat)." };
        var cgroup = new Option<string?>("--cgroup") { Description = "A memory cgroup whose usage against its limit is the pressure." };
        var leave = new Option<bool>("--leave-balloons") { Description = "Leave the balloons as they are at exit." };
        var ksm = new Option<bool>("--with-ksm-autotune") { Description = "Run the adaptive KSM tuner in the same process." };
        var whatIf = new Option<bool>("--what-if") { Description = "Read and decide every round, set nothing." };
        var quiet = new Option<bool>("--quiet") { Description = "Print only the summary, not every decision." };
        foreach (var o in new Option[] { ids, duration, interval, target, psi, hysteresis, step, minimum, minimumPercent, guestMinimum, shares, cgroup, leave, ksm, whatIf, quiet })
            cmd.Options.Add(o);
        cmd.Arguments.Add(names);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var policy = new MemoryBalancerPolicy
            {
                HostTargetPercent = parse.GetValue(target), PsiThresholdPercent = parse.GetValue(psi), HysteresisPercent = parse.GetValue(hysteresis),
                MaxStepPercent = parse.GetValue(step), DefaultMinimumPercent = parse.GetValue(minimumPercent),
            };
            if (parse.GetValue(minimum) is long all)
            {
                if (all < 1) throw new KvmOcException(ErrorKind.InvalidArgument, "BalancerInvalidValue", $"--minimum-mb must be at least 1 (got {all}).", "--minimum-mb");
                policy.MinimumMB["*"] = all;
            }
            foreach (var (k, v) in Pairs(parse.GetValue(guestMinimum), "--guest-minimum-mb")) policy.MinimumMB[k] = v;
            foreach (var (k, v) in Pairs(parse.GetValue(shares), "--shares")) policy.Shares[k] = (int)Math.Min(int.MaxValue, v);
            var secs = parse.GetValue(interval);
            if (!(secs >= 0.1)) throw new KvmOcException(ErrorKind.InvalidArgument, "BalancerInvalidInterval", $"--interval-seconds must be at least 0.1 (got {secs}).", secs);
            bool stream = !parse.GetValue(quiet);
            var options = new MemoryBalancerOptions
            {
                Names = parse.GetValue(names) is { Length: > 0 } n ? n : null,
                Ids = parse.GetValue(ids) is { Length: > 0 } i ? i : null,
                Duration = parse.GetValue(duration) is double d ? Validation.DurationSeconds(d) : null,
                Interval = Validation.IntervalSeconds(secs, TimeSpan.FromSeconds(0.1)),
                Policy = policy,
                Cgroup = parse.GetValue(cgroup),
                LeaveBalloons = parse.GetValue(leave),
                WithKsmAutoTune = parse.GetValue(ksm),
                DryRun = parse.GetValue(whatIf),
                OnDecision = stream ? dec => run.Stream(dec, DecisionColumns) : null,
            };
            if (options.DryRun) run.Err.WriteLine($"What if: {MemoryBalancer.Describe(options)} (deciding only, setting nothing)");
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            // systemd stops a service with SIGTERM: end the loop normally so the balloons are deflated.
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
            using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
            var result = await MemoryBalancer.RunAsync(options, run, cts.Token).ConfigureAwait(false);
            if (run.Json) { run.WriteResults(new[] { result }); return; }
            if (stream) run.Out.WriteLine();
            run.WriteResults(new[] { result }, ResultColumns);
            if (result.Guests.Count > 0)
            {
                run.Out.WriteLine();
                run.WriteResults(result.Guests, GuestColumns);
            }
        });
        return cmd;
    }

    static IEnumerable<(string, long)> Pairs(string[]? items, string option)
    {
        foreach (var item in items ?? Array.Empty<string>())
        {
            int eq = item.LastIndexOf('=');
            if (eq <= 0 || !long.TryParse(item.AsSpan(eq + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long v) || v < 1)
                throw new KvmOcException(ErrorKind.InvalidArgument, "BalancerInvalidValue", $"{option} takes NAME=NUMBER with a number of at least 1 (got '{item}').", item);
            yield return (item[..eq], v);
        }
    }
}
