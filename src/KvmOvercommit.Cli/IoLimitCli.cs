using System.CommandLine;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Cli;

/// <summary>`kvmoc guest io-limit NAME [--iops N] [--bps N] …`: Get-KvmGuestIoLimit, or Set-KvmGuestIoLimit when a limit is given.</summary>
public sealed class IoLimitCli : IGuestSubcommandProvider
{
    internal static readonly string[] Columns = { "Name", "Drive", "Iops", "IopsRead", "IopsWrite", "Bps", "IopsMax", "Group" };

    /// <summary>Option name → how it sets an <see cref="IoLimitChange"/> field (kebab case of the cmdlet's parameters).</summary>
    static readonly (string Option, string Help, Action<IoLimitChange, long> Set)[] Limits =
    {
        ("--iops", "Total operations per second (0 removes the limit).", (c, v) => c.Iops = v),
        ("--iops-read", "Read operations per second.", (c, v) => c.IopsRead = v),
        ("--iops-write", "Write operations per second.", (c, v) => c.IopsWrite = v),
        ("--bps", "Total bytes per second.", (c, v) => c.Bps = v),
        ("--bps-read", "Read bytes per second.", (c, v) => c.BpsRead = v),
        ("--bps-write", "Write bytes per second.", (c, v) => c.BpsWrite = v),
        ("--iops-max", "Burst of total operations per second, for --iops-max-length seconds.", (c, v) => c.IopsMax = v),
        ("--iops-read-max", "Burst of read operations per second.", (c, v) => c.IopsReadMax = v),
        ("--iops-write-max", "Burst of write operations per second.", (c, v) => c.IopsWriteMax = v),
        ("--bps-max", "Burst of total bytes per second.", (c, v) => c.BpsMax = v),
        ("--bps-read-max", "Burst of read bytes per second.", (c, v) => c.BpsReadMax = v),
        ("--bps-write-max", "Burst of write bytes per second.", (c, v) => c.BpsWriteMax = v),
        ("--iops-max-length", "Seconds the --iops-max burst may last.", (c, v) => c.IopsMaxLength = v),
        ("--iops-read-max-length", "Seconds the --iops-read-max burst may last.", (c, v) => c.IopsReadMaxLength = v),
        ("--iops-write-max-length", "Seconds the --iops-write-max burst may last.", (c, v) => c.IopsWriteMaxLength = v),
        ("--bps-max-length", "Seconds the --bps-max burst may last.", (c, v) => c.BpsMaxLength = v),
        ("--bps-read-max-length", "Seconds the --bps-read-max burst may last.", (c, v) => c.BpsReadMaxLength = v),
        ("--bps-write-max-length", "Seconds the --bps-write-max burst may last.", (c, v) => c.BpsWriteMaxLength = v),
        ("--iops-size", "Bytes counted as one operation (a larger request counts as several).", (c, v) => c.IopsSize = v),
    };

    public IEnumerable<Command> GuestSubcommands(CliContext ctx)
    {
        var cmd = new Command("io-limit", "Read a guest's per-drive I/O limits (query-block), or set them with --iops, --bps, … (QMP block_set_io_throttle; Get-/Set-KvmGuestIoLimit). 0 removes a limit.");
        var names = new Argument<string[]>("name") { Description = "Guest names; wildcards allowed (quote them). None: every guest (reading only).", Arity = ArgumentArity.ZeroOrMore };
        var ids = new Option<int[]>("--id") { Description = "QEMU process ids.", AllowMultipleArgumentsPerToken = true };
        var drives = new Option<string[]>("--drive") { Description = "Drives (e.g. virtio0); wildcards allowed. Default: every drive.", AllowMultipleArgumentsPerToken = true };
        var group = new Option<string?>("--group") { Description = "Throttle group: the guest's drives in one group share its limits (one QEMU process)." };
        var passThru = new Option<bool>("--pass-thru") { Description = "Print the limits as they were before the change (to restore them)." };
        var whatIf = new Option<bool>("--what-if") { Description = "Say what would be set, set nothing." };
        var limitOptions = Limits.Select(l => (Option: new Option<long?>(l.Option) { Description = l.Help }, l.Set)).ToArray();
        cmd.Arguments.Add(names);
        foreach (var o in new Option[] { ids, drives }) cmd.Options.Add(o);
        foreach (var (o, _) in limitOptions) cmd.Options.Add(o);
        foreach (var o in new Option[] { group, passThru, whatIf }) cmd.Options.Add(o);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var n = parse.GetValue(names) is { Length: > 0 } a ? a : null;
            var i = parse.GetValue(ids) is { Length: > 0 } b ? b : null;
            var d = parse.GetValue(drives) is { Length: > 0 } c ? c : null;
            var change = new IoLimitChange { Group = parse.GetValue(group) };
            foreach (var (o, set) in limitOptions)
                if (parse.GetValue(o) is { } v) set(change, v);
            var results = new List<KvmGuestIoLimit>();
            if (change.IsEmpty)
            {
                foreach (var g in new KvmGuestInventory().Find(n, i, run.Error))
                {
                    try { results.AddRange(await KvmGuestIoLimits.GetAsync(g, d, ct).ConfigureAwait(false)); }
                    catch (KvmOcException e) { run.Error(e); }
                }
                run.WriteResults(results, Columns);
                return;
            }
            if (n is null && i is null)
                throw new KvmOcException(ErrorKind.InvalidArgument, "GuestNotSpecified", "Name the guests whose limits to set (names or --id).", null);
            KvmGuestIoLimits.Validate(change);
            foreach (var g in new KvmGuestInventory().Find(n, i, run.Error))
            {
                try
                {
                    foreach (var plan in await KvmGuestIoLimits.PlanAsync(g, d, change, ct).ConfigureAwait(false))
                    {
                        if (parse.GetValue(whatIf)) { run.Err.WriteLine($"What if: {plan.Action} on {plan.Target}"); continue; }
                        var after = await KvmGuestIoLimits.ApplyAsync(plan, run, ct).ConfigureAwait(false);
                        results.Add(parse.GetValue(passThru) ? plan.Current : after);
                    }
                }
                catch (KvmOcException e) { run.Error(e); }
            }
            if (!parse.GetValue(whatIf)) run.WriteResults(results, Columns);
        });
        yield return cmd;
    }
}
