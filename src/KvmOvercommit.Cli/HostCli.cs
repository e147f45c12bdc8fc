using System.CommandLine;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Io;

namespace KvmOvercommit.Cli;

/// <summary>
/// `kvmoc iops`, `kvmoc process-iops`, `kvmoc host memory|cpu|mdstat`, `kvmoc report`: Measure-DeviceIops,
/// Measure-ProcessIops, Get-HostMemory, Get-HostCpu, Get-MdRaid and Get-OvercommitReport.
/// </summary>
public sealed class HostCli : ICliCommandProvider
{
    /// <summary>Table columns of each output type (the same as the module's format views).</summary>
    internal static readonly string[] IopsColumns = { "Device", "Iops", "ReadsPerSec", "WritesPerSec", "ReadMiBPerSec", "WriteMiBPerSec", "WriteAwaitMs", "UtilizationPercent" };
    internal static readonly string[] ProcessColumns = { "Id", "Name", "WriteSyscallsPerSec", "ReadMiBPerSec", "WriteMiBPerSec", "Iops" };
    internal static readonly string[] MdColumns = { "Name", "Level", "State", "Health", "SizeGiB", "SyncAction", "SyncPercent" };

    public IEnumerable<Command> Commands(CliContext ctx)
    {
        yield return Iops(ctx);
        yield return ProcessIops(ctx);
        var host = new Command("host", "Host facts: memory (free), CPUs (cpuinfo, loadavg), software RAID (mdstat).");
        host.Subcommands.Add(Memory(ctx));
        host.Subcommands.Add(Cpu(ctx));
        host.Subcommands.Add(MdStat(ctx));
        host.Subcommands.Add(IopsCapacityCli.Command(ctx));
        yield return host;
        yield return Report(ctx);
    }

    static (Option<double> Interval, Option<int?> Count, Option<bool> Continuous) SamplerOptions(Command cmd)
    {
        var interval = new Option<double>("--interval-seconds") { Description = "Length of one interval in seconds (default 1; 0.01 to 86400).", DefaultValueFactory = _ => 1 };
        var count = new Option<int?>("--count") { Description = "Number of intervals (default 1; not with --continuous)." };
        var continuous = new Option<bool>("--continuous") { Description = "Sample until Ctrl+C (not with --count)." };
        cmd.Options.Add(interval);
        cmd.Options.Add(count);
        cmd.Options.Add(continuous);
        return (interval, count, continuous);
    }

    static int? CountOf(ParseResult parse, Option<int?> count, Option<bool> continuous)
    {
        Validation.CountOrContinuous(parse.GetValue(count) is not null, parse.GetValue(continuous));
        return Validation.Count(parse.GetValue(continuous) ? null : parse.GetValue(count) ?? 1);
    }

    static TimeSpan IntervalOf(ParseResult parse, Option<double> interval)
    {
        return Validation.IntervalSeconds(parse.GetValue(interval));
    }

    static Command Iops(CliContext ctx)
    {
        var cmd = new Command("iops", "Block device IOPS, throughput, latency, queue size and utilization from /proc/diskstats, as iostat -d -x computes them (Measure-DeviceIops).");
        var device = new Option<string[]>("--device", "-d") { Description = "Device names, /dev paths or wildcards (repeatable). Default: every whole disk, md and dm device.", AllowMultipleArgumentsPerToken = true };
        var total = new Option<bool>("--total") { Description = "Add a Total row per interval." };
        cmd.Options.Add(device);
        cmd.Options.Add(total);
        var (interval, count, continuous) = SamplerOptions(cmd);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var options = new DeviceIopsOptions
            {
                Device = parse.GetValue(device),
                Interval = IntervalOf(parse, interval),
                Count = CountOf(parse, count, continuous),
                Total = parse.GetValue(total),
            };
            await foreach (var row in new DeviceIopsSampler().SampleAsync(options, run, ct).ConfigureAwait(false))
                run.Stream(row, IopsColumns);
        });
        return cmd;
    }

    static Command ProcessIops(CliContext ctx)
    {
        var cmd = new Command("process-iops", "Per-process I/O from /proc/<pid>/io, and true IOPS from the process's own cgroup v2 io.stat where it has one (Measure-ProcessIops).");
        var id = new Option<int[]>("--id") { Description = "Process ids (repeatable).", AllowMultipleArgumentsPerToken = true };
        var name = new Option<string[]>("--name") { Description = "Process or QEMU guest names; wildcards allowed (repeatable).", AllowMultipleArgumentsPerToken = true };
        cmd.Options.Add(id);
        cmd.Options.Add(name);
        var (interval, count, continuous) = SamplerOptions(cmd);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var ids = parse.GetValue(id) ?? Array.Empty<int>();
            var names = parse.GetValue(name) ?? Array.Empty<string>();
            if (ids.Length == 0 && names.Length == 0)
                throw new KvmOcException(ErrorKind.InvalidArgument, "NoProcessGiven", "Give --id or --name.", null, "e.g. kvmoc process-iops --name 'qemu*'");
            var sampler = new ProcessIopsSampler();
            var targets = sampler.Resolve(ids, names);
            await foreach (var row in sampler.SampleAsync(targets, IntervalOf(parse, interval), CountOf(parse, count, continuous), run, ct).ConfigureAwait(false))
                run.Stream(row, ProcessColumns);
        });
        return cmd;
    }

    static Command Memory(CliContext ctx)
    {
        var cmd = new Command("memory", "/proc/meminfo with free's figures, KSM's saving and the memory of running guests (Get-HostMemory).");
        ctx.SetAction(cmd, (parse, run, ct) =>
        {
            run.WriteResults(new[] { new HostInfoReader().ReadMemory() });
            return Task.CompletedTask;
        });
        return cmd;
    }

    static Command Cpu(CliContext ctx)
    {
        var cmd = new Command("cpu", "Sockets, cores, threads, model, virtualization support, load averages and the guests' vCPUs (Get-HostCpu).");
        ctx.SetAction(cmd, (parse, run, ct) =>
        {
            run.WriteResults(new[] { new HostInfoReader().ReadCpu() });
            return Task.CompletedTask;
        });
        return cmd;
    }

    static Command MdStat(CliContext ctx)
    {
        var cmd = new Command("mdstat", "Software RAID arrays from /proc/mdstat: level, state, members, health, resync progress (Get-MdRaid).");
        var path = new Option<string?>("--path") { Description = "A saved copy of /proc/mdstat." };
        var name = new Argument<string[]>("name") { Description = "Array names or wildcards (default: all). Also as --name.", Arity = ArgumentArity.ZeroOrMore };
        var nameOpt = new Option<string[]>("--name") { Description = "An array name or wildcard, as the positional NAME (Get-MdRaid -Name); repeatable." };
        cmd.Options.Add(path);
        cmd.Options.Add(nameOpt);
        cmd.Arguments.Add(name);
        ctx.SetAction(cmd, (parse, run, ct) =>
        {
            var p = parse.GetValue(path);
            var arrays = new HostInfoReader().ReadMdRaid(p is null ? null : Path.GetFullPath(p), run);
            var names = (parse.GetValue(name) ?? Array.Empty<string>()).Concat(parse.GetValue(nameOpt) ?? Array.Empty<string>()).ToArray();
            run.WriteResults(arrays.Where(a => Wildcard.MatchesAny(names is { Length: > 0 } ? names : null, a.Name)), MdColumns);
            return Task.CompletedTask;
        });
        return cmd;
    }

    static Command Report(CliContext ctx)
    {
        var cmd = new Command("report", "How far the host is overcommitted and how many more guests fit, with the arithmetic (Get-OvercommitReport).");
        var headroom = new Option<double>("--headroom-percent") { Description = "Percent of host memory kept free in the estimate (default 10).", DefaultValueFactory = _ => 10 };
        var iops = new Option<double>("--iops-sample-seconds") { Description = "Seconds of device IOPS sampling (default 1; 0 skips).", DefaultValueFactory = _ => 1 };
        var skip = new Option<bool>("--skip-disk-images") { Description = "Do not run qemu-img on the guests' disks." };
        cmd.Options.Add(headroom);
        cmd.Options.Add(iops);
        cmd.Options.Add(skip);
        var cgroup = new Option<string?>("--cgroup") { Description = "Size EstimatedAdditionalGuests against this memory cgroup's limit (folder or name under /sys/fs/cgroup/memory) instead of the host (Get-OvercommitReport -Cgroup)." };
        cmd.Options.Add(cgroup);
        var budget = IopsCapacityCli.ReportOptions(cmd);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var builder = IopsCapacityCli.Builder(parse, budget);
            builder.Cgroup = parse.GetValue(cgroup);
            var report = await builder.BuildAsync(parse.GetValue(headroom), parse.GetValue(iops), !parse.GetValue(skip), run, ct).ConfigureAwait(false);
            if (run.Json) { run.WriteResults(new[] { report }); return; }
            // The scalar figures as a list, then the disks and the arithmetic one per line.
            var scalars = typeof(OvercommitReport).GetProperties()
                .Where(p => p.PropertyType == typeof(string) || !typeof(System.Collections.IEnumerable).IsAssignableFrom(p.PropertyType)).ToList();
            int width = scalars.Max(p => p.Name.Length);
            foreach (var p in scalars) run.Out.WriteLine($"{p.Name.PadRight(width)} : {CliOutput.Format(p.GetValue(report))}");
            if (report.DiskRatios.Length > 0)
            {
                run.Out.WriteLine();
                CliOutput.WriteTable(run.Out, report.DiskRatios, new[] { "BaseImage", "DiskCount", "VirtualBytes", "AllocatedBytes", "Ratio" });
            }
            run.Out.WriteLine();
            foreach (var line in report.Explanation) run.Out.WriteLine("  " + line);
        });
        return cmd;
    }
}
