using System.CommandLine;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Cli;

/// <summary>
/// Contributes subcommands to `kvmoc guest`. Both guest areas (start/stop; list/memory/iops) add to the one `guest`
/// command through this interface, so neither defines the command twice.
/// </summary>
public interface IGuestSubcommandProvider
{
    /// <summary>The subcommands to add under `kvmoc guest`.</summary>
    IEnumerable<Command> GuestSubcommands(CliContext ctx);
}

/// <summary>
/// `kvmoc guest list|memory|iops`: Get-KvmGuest, Get-/Set-KvmGuestMemory, Measure-KvmGuestIops. Owns the `guest`
/// command and adds every <see cref="IGuestSubcommandProvider"/>'s subcommands to it.
/// </summary>
public sealed class GuestOpsCli : ICliCommandProvider, IGuestSubcommandProvider
{
    /// <summary>Table columns (the same as the module's format views).</summary>
    internal static readonly string[] GuestColumns = { "Name", "Id", "MemoryMB", "CpuCount", "RssBytes", "KsmMergingPages", "State" };
    internal static readonly string[] MemoryColumns = { "Name", "Id", "MemoryMB", "ActualMB", "TargetMB", "RssMB" };
    internal static readonly string[] IopsColumns = { "Name", "Drive", "ReadOpsPerSec", "WriteOpsPerSec", "Iops", "WriteLatencyMs" };

    public IEnumerable<Command> Commands(CliContext ctx)
    {
        var guest = new Command("guest", "QEMU guests on this host: list, balloon and per-guest IOPS (and start/stop).");
        foreach (var p in GuestSubcommandProviders())
            foreach (var sub in p.GuestSubcommands(ctx))
                guest.Subcommands.Add(sub);
        yield return guest;
    }

    /// <summary>Everything under `kvmoc guest`, by class name (a list, not reflection: see Program.Providers).</summary>
    internal IGuestSubcommandProvider[] GuestSubcommandProviders() => new IGuestSubcommandProvider[] { this, new GuestsCli(), new IoLimitCli() };

    public IEnumerable<Command> GuestSubcommands(CliContext ctx)
    {
        yield return List(ctx);
        yield return Memory(ctx);
        yield return Iops(ctx);
    }

    static (Argument<string[]> Names, Option<string[]> NameOption, Option<int[]> Ids) Selection(Command cmd)
    {
        var names = new Argument<string[]>("name") { Description = "Guest names; wildcards allowed (quote them). None: every guest. Also as --name.", Arity = ArgumentArity.ZeroOrMore };
        var nameOpt = new Option<string[]>("--name") { Description = "A guest name or wildcard, as the positional NAME (the cmdlet's -Name); repeatable." };
        var ids = new Option<int[]>("--id") { Description = "QEMU process ids.", AllowMultipleArgumentsPerToken = true };
        cmd.Arguments.Add(names);
        cmd.Options.Add(nameOpt);
        cmd.Options.Add(ids);
        return (names, nameOpt, ids);
    }

    static string[]? NonEmpty(string[]? a) => a is { Length: > 0 } ? a : null;
    static string[]? Names(ParseResult parse, (Argument<string[]> Names, Option<string[]> NameOption, Option<int[]> Ids) s) =>
        NonEmpty((parse.GetValue(s.Names) ?? Array.Empty<string>()).Concat(parse.GetValue(s.NameOption) ?? Array.Empty<string>()).ToArray());
    static int[]? NonEmpty(int[]? a) => a is { Length: > 0 } ? a : null;

    static Command List(CliContext ctx)
    {
        var cmd = new Command("list", "Every QEMU on the host, also hand-started ones: memory, vCPUs, disks, RSS, KSM per guest, QMP state (Get-KvmGuest).");
        var sel = Selection(cmd);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var guests = await new KvmGuestInventory().GetAsync(Names(parse, sel), NonEmpty(parse.GetValue(sel.Ids)), queryState: true, run.Error, run, ct).ConfigureAwait(false);
            run.WriteResults(guests, GuestColumns);
        });
        return cmd;
    }

    static Command Memory(CliContext ctx)
    {
        var cmd = new Command("memory", "Read the balloon (Get-KvmGuestMemory), or set its target with --target-mb (Set-KvmGuestMemory).");
        var sel = Selection(cmd);
        var target = new Option<long?>("--target-mb") { Description = "Memory the guest may keep, in MiB (1 .. its -m)." };
        var wait = new Option<bool>("--wait") { Description = "Wait until the guest reaches the target." };
        var timeout = new Option<int>("--timeout-seconds") { Description = "How long --wait waits (1 to 3600).", DefaultValueFactory = _ => 30 };
        var whatIf = new Option<bool>("--what-if") { Description = "Say what would be set, set nothing." };
        foreach (var o in new Option[] { target, wait, timeout, whatIf }) cmd.Options.Add(o);
        var statsInterval = new Option<int>("--stats-interval-seconds") { Description = "Turn the balloon's guest statistics on where they are off, polled this often; 0 reads only what is there.", DefaultValueFactory = _ => BalloonStatistics.DefaultPollingSeconds };
        cmd.Options.Add(statsInterval);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var n = Names(parse, sel);
            var i = NonEmpty(parse.GetValue(sel.Ids));
            var t = parse.GetValue(target);
            var waitTimeout = Validation.TimeoutSeconds(parse.GetValue(timeout));
            if (t is not null && n is null && i is null)
                throw new KvmOcException(ErrorKind.InvalidArgument, "GuestNotSpecified", "Name the guests whose balloon to set (names or --id).", null);
            var results = new List<KvmGuestMemory>();
            foreach (var g in new KvmGuestInventory().Find(n, i, run.Error))
            {
                try
                {
                    if (t is null) { results.Add(await KvmGuestBalloon.GetAsync(g, parse.GetValue(statsInterval), run, ct).ConfigureAwait(false)); continue; }
                    var plan = KvmGuestBalloon.Plan(g, t.Value);
                    if (parse.GetValue(whatIf)) { run.Err.WriteLine($"What if: {plan.Action} on {plan.Target}"); continue; }
                    results.Add(await KvmGuestBalloon.ApplyAsync(plan, parse.GetValue(wait), waitTimeout, run, ct).ConfigureAwait(false));
                }
                catch (KvmOcException e) { run.Error(e); }
            }
            run.WriteResults(results, MemoryColumns);
        });
        return cmd;
    }

    static Command Iops(CliContext ctx)
    {
        var cmd = new Command("iops", "Per-guest, per-drive IOPS, throughput and latency from QMP query-blockstats deltas (Measure-KvmGuestIops).");
        var sel = Selection(cmd);
        var interval = new Option<double>("--interval-seconds") { Description = "Seconds per interval (0.05 to 86400).", DefaultValueFactory = _ => 1.0 };
        var count = new Option<int?>("--count") { Description = "Number of intervals (default 1; not with --continuous)." };
        var continuous = new Option<bool>("--continuous") { Description = "Sample until Ctrl+C (not with --count)." };
        foreach (var o in new Option[] { interval, count, continuous }) cmd.Options.Add(o);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            Validation.CountOrContinuous(parse.GetValue(count) is not null, parse.GetValue(continuous));
            var every = Validation.IntervalSeconds(parse.GetValue(interval), Validation.MinGuestIopsInterval);
            var n = Validation.Count(parse.GetValue(continuous) ? null : parse.GetValue(count) ?? 1);
            var guests = new KvmGuestInventory().Find(Names(parse, sel), NonEmpty(parse.GetValue(sel.Ids)), run.Error);
            if (guests.Count == 0) return;
            await new KvmGuestIopsSampler().RunAsync(guests, every, n,
                row => run.Stream(row, IopsColumns), run.Error, run, ct).ConfigureAwait(false);
        });
        return cmd;
    }
}
