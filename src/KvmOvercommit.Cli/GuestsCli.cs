using System.CommandLine;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Cli;

/// <summary>`kvmoc tiny-guest` (Get-KvmTinyGuest) and `kvmoc guest start|stop` (Start-/Stop-KvmGuest).</summary>
public sealed class GuestsCli : ICliCommandProvider, IGuestSubcommandProvider
{
    internal static readonly string[] StartColumns = { "Name", "Id", "MemoryMB", "CpuCount", "VncDisplay", "Accelerator", "State" };
    internal static readonly string[] StopColumns = { "Name", "Id", "State", "RunDirectory" };

    public IEnumerable<Command> Commands(CliContext ctx)
    {
        var cmd = new Command("tiny-guest", "Build (once) and show the tiny test guest: a Debian cloud kernel and a busybox initramfs (Get-KvmTinyGuest).");
        var force = new Option<bool>("--force") { Description = "Download and build again even when cached." };
        var cache = new Option<string?>("--cache-directory") { Description = "Cache root (default ~/.cache/kvmovercommit/tiny-guest)." };
        cmd.Options.Add(force);
        cmd.Options.Add(cache);
        var variant = new Option<TinyGuestVariant>("--variant") { Description = "Basic, or Fleet (DHCP with udhcpc + dropbear SSH, for Ansible -m raw).", DefaultValueFactory = _ => TinyGuestVariant.Basic };
        cmd.Options.Add(variant);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var image = await TinyGuest.GetAsync(new TinyGuestOptions { Force = parse.GetValue(force), CacheRoot = parse.GetValue(cache), Variant = parse.GetValue(variant) }, run, ct).ConfigureAwait(false);
            run.WriteResults(new[] { image });
        });
        yield return cmd;
    }

    public IEnumerable<Command> GuestSubcommands(CliContext ctx)
    {
        yield return Start(ctx);
        yield return Stop(ctx);
    }

    static Command Start(CliContext ctx)
    {
        var cmd = new Command("start", "Start QEMU guests detached, one per disk, with QMP and a run directory; returns once QMP answers (Start-KvmGuest).");
        var disks = new Argument<string[]>("disk-path") { Description = "Disk images (qcow2 or raw); one guest each, named after the file. Also as --disk-path.", Arity = ArgumentArity.ZeroOrMore };
        var diskOpt = new Option<string[]>("--disk-path", "--path") { Description = "A disk image, as the positional DISK-PATH (Start-KvmGuest -DiskPath); repeatable." };
        var name = new Option<string?>("--name") { Description = "Guest name (one guest only); default: the disk's file name without extension." };
        var memory = new Option<long>("--memory-mb") { Description = "Guest RAM in MiB.", DefaultValueFactory = _ => 1024 };
        var cpus = new Option<int>("--cpu-count") { Description = "vCPUs.", DefaultValueFactory = _ => 1 };
        var machine = new Option<string>("--machine-type") { Description = "QEMU machine type.", DefaultValueFactory = _ => "pc" };
        var accel = new Option<GuestAccelerator>("--accelerator") { Description = "Auto, Kvm or Tcg.", DefaultValueFactory = _ => GuestAccelerator.Auto };
        var vnc = new Option<int?>("--vnc-display") { Description = "VNC display number (default: a free one)." };
        var noVnc = new Option<bool>("--no-vnc") { Description = "No VNC." };
        var vncAddress = new Option<string>("--vnc-address") { Description = "Address VNC listens on.", DefaultValueFactory = _ => "127.0.0.1" };
        var network = new Option<GuestNetwork>("--network") { Description = "User, Tap or None.", DefaultValueFactory = _ => GuestNetwork.User };
        var bridge = new Option<string?>("--bridge") { Description = "Bridge for --network Tap." };
        var mac = new Option<string?>("--mac-address") { Description = "NIC MAC address (default: derived from the name)." };
        var balloon = new Option<bool>("--balloon") { Description = "Add a virtio balloon device.", DefaultValueFactory = _ => true };
        var kernel = new Option<string?>("--kernel") { Description = "Kernel for direct boot." };
        var initrd = new Option<string?>("--initrd") { Description = "Initramfs for --kernel." };
        var kargs = new Option<string?>("--kernel-arguments") { Description = "Kernel command line (console=ttyS0 and no_timer_check are added)." };
        var tiny = new Option<bool>("--tiny") { Description = "Boot the tiny test guest's kernel and initramfs (as Get-KvmTinyGuest | Start-KvmGuest)." };
        var extra = new Option<string[]>("--extra-argument") { Description = "Extra QEMU argument (repeat for several).", AllowMultipleArgumentsPerToken = false };
        var stagger = new Option<string?>("--stagger-seconds") { Description = "Seconds between guests, not before the first (0 to 86400; fractions allowed), or auto: the first guest's boot IOPS and the device's capacity decide (BootSeconds / floor(capacity / boot IOPS))." };
        var capacityOpt = new Option<double?>("--device-iops-capacity") { Description = "With --stagger-seconds auto: the device's IOPS capacity (default: measured once with fio in the first disk's folder)." };
        var runDir = new Option<string?>("--run-directory") { Description = "Folder for the guests' run directories." };
        var timeout = new Option<int>("--timeout-seconds") { Description = "How long to wait for QEMU and QMP (1 to 3600).", DefaultValueFactory = _ => 30 };
        var whatIf = new Option<bool>("--what-if") { Description = "Print the QEMU command lines, start nothing." };
        foreach (var o in new Option[] { diskOpt, name, memory, cpus, machine, accel, vnc, noVnc, vncAddress, network, bridge, mac, balloon, kernel, initrd, kargs, tiny, extra, stagger, runDir, timeout, whatIf })
            cmd.Options.Add(o);
        // Memory beyond KSM (issue 14).
        var noMerge = new Option<bool>("--no-memory-merge") { Description = "KSM never merges this guest's RAM (-machine mem-merge=off; Start-KvmGuest -MemoryMerge $false)." };
        var fpr = new Option<bool>("--free-page-reporting") { Description = "Require the balloon's free page reporting (default: on where QEMU has it)." };
        var noFpr = new Option<bool>("--no-free-page-reporting") { Description = "Turn the balloon's free page reporting off." };
        var deflate = new Option<bool>("--deflate-on-oom") { Description = "The guest deflates the balloon before OOM-killing its own processes." };
        foreach (var o in new Option[] { noMerge, fpr, noFpr, deflate }) cmd.Options.Add(o);
        var iopsLimit = new Option<long?>("--iops-limit") { Description = "IOPS limit (total) for the disk from the start (throttling.iops-total; kvmoc guest io-limit changes it)." };
        var bpsLimit = new Option<long?>("--bps-limit") { Description = "Bytes/s limit (total) for the disk from the start (throttling.bps-total)." };
        cmd.Options.Add(iopsLimit);
        cmd.Options.Add(bpsLimit);
        var netns = new Option<string?>("--network-namespace") { Description = "Run QEMU inside this network namespace (ip netns exec); with --network Tap --bridge, the namespace's bridge." };
        var diskCache = new Option<string?>("--disk-cache") { Description = "The disk's cache mode: none (O_DIRECT on the host), writeback (default), writethrough, directsync, unsafe." };
        cmd.Options.Add(netns);
        cmd.Options.Add(diskCache);
        cmd.Options.Add(capacityOpt);
        var cgroup = new Option<string?>("--cgroup") { Description = "Start QEMU inside this memory cgroup (a folder, or a name under /sys/fs/cgroup/memory); its limit then holds the guest (Start-KvmGuest -Cgroup)." };
        cmd.Options.Add(cgroup);
        cmd.Arguments.Add(disks);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var paths = (parse.GetValue(disks) ?? Array.Empty<string>()).Concat(parse.GetValue(diskOpt) ?? Array.Empty<string>()).ToArray();
            var staggerValue = Validation.ParseStaggerSeconds(parse.GetValue(stagger));
            bool auto = Validation.IsAutoStagger(staggerValue);
            var staggerBy = auto ? TimeSpan.Zero : TimeSpan.FromSeconds(staggerValue);
            var capacity = parse.GetValue(capacityOpt) is double cap ? Validation.DeviceIopsCapacity(cap, "--device-iops-capacity") : (double?)null;
            var startTimeout = Validation.TimeoutSeconds(parse.GetValue(timeout));
            var n = parse.GetValue(name);
            if (n is not null && paths.Length > 1)
                throw new KvmOcException(ErrorKind.InvalidArgument, "NameWithSeveralDisks", "--name names one guest; with several disks each guest is named after its disk.", n);
            string? k = parse.GetValue(kernel), i = parse.GetValue(initrd);
            if (parse.GetValue(tiny))
            {
                var image = await TinyGuest.GetAsync(null, run, ct).ConfigureAwait(false);
                k ??= image.Kernel;
                i ??= image.Initrd;
            }
            if (parse.GetValue(fpr) && parse.GetValue(noFpr))
                throw new KvmOcException(ErrorKind.InvalidArgument, "FreePageReportingConflict", "--free-page-reporting and --no-free-page-reporting contradict each other.", "--free-page-reporting");
            bool? reporting = parse.GetValue(fpr) ? true : parse.GetValue(noFpr) ? false : null;
            var items = paths.Length == 0 ? new string?[] { null } : paths.Select(p => (string?)p).ToArray();
            var started = new List<KvmGuest>();
            int launched = 0;
            foreach (var disk in items)
            {
                try
                {
                    var plan = GuestLauncher.Plan(new GuestStartOptions
                    {
                        Name = n, DiskPath = disk, MemoryMB = parse.GetValue(memory), CpuCount = parse.GetValue(cpus), MachineType = parse.GetValue(machine)!,
                        Accelerator = parse.GetValue(accel), VncDisplay = parse.GetValue(vnc), NoVnc = parse.GetValue(noVnc), VncAddress = parse.GetValue(vncAddress)!,
                        Network = parse.GetValue(network), Bridge = parse.GetValue(bridge), MacAddress = parse.GetValue(mac), Balloon = parse.GetValue(balloon),
                        Kernel = k, Initrd = i, KernelArguments = parse.GetValue(kargs), ExtraArgument = parse.GetValue(extra) ?? Array.Empty<string>(),
                        RunDirectory = parse.GetValue(runDir), StartTimeout = startTimeout,
                        MemoryMerge = !parse.GetValue(noMerge), FreePageReporting = reporting, DeflateOnOom = parse.GetValue(deflate),
                        IopsLimit = parse.GetValue(iopsLimit), BpsLimit = parse.GetValue(bpsLimit),
                        NetworkNamespace = parse.GetValue(netns), DiskCache = parse.GetValue(diskCache), Cgroup = parse.GetValue(cgroup),
                    }, run);
                    if (parse.GetValue(whatIf))
                    {
                        run.Err.WriteLine($"What if: Start QEMU guest '{plan.Name}': {plan.CommandLine}"); // QEMU's own options: not rewritten
                        continue;
                    }
                    bool first = launched++ == 0;
                    if (!first && staggerBy > TimeSpan.Zero)
                        await GuestLauncher.StaggerAsync(staggerBy, plan.Name, run, ct).ConfigureAwait(false);
                    (double Iops, string Source)? c = first && auto
                        ? await AutoStagger.CapacityAsync(capacity, disk is null ? Environment.CurrentDirectory : Path.GetDirectoryName(Path.GetFullPath(disk))!, run, ct, "--stagger-seconds auto").ConfigureAwait(false)
                        : null;
                    long launchedAt = System.Diagnostics.Stopwatch.GetTimestamp();
                    var g = await GuestLauncher.StartAsync(plan, run, ct).ConfigureAwait(false);
                    if (run.Json) started.Add(g); else run.Stream(g, StartColumns);
                    if (c is { } cc)
                    {
                        var storm = await AutoStagger.FromFirstGuestAsync(g, launchedAt, cc.Iops, cc.Source, startTimeout + TimeSpan.FromMinutes(5), run, ct).ConfigureAwait(false);
                        staggerBy = TimeSpan.FromSeconds(storm.StaggerSeconds);
                        run.Err.WriteLine($"--stagger-seconds auto: {run.Rewrite(storm.Explanation)}");
                    }
                }
                catch (KvmOcException e) { run.Error(e); }
            }
            if (run.Json && started.Count > 0) run.WriteResults(started, StartColumns);
        });
        return cmd;
    }

    static Command Stop(CliContext ctx)
    {
        var cmd = new Command("stop", "Stop guests: ACPI power down over QMP, QMP quit after --timeout-seconds; SIGKILL only with --force (Stop-KvmGuest).");
        var names = new Argument<string[]>("name") { Description = "Guest names; wildcards allowed (quote them). Also as --name.", Arity = ArgumentArity.ZeroOrMore };
        var nameOpt = new Option<string[]>("--name") { Description = "A guest name or wildcard, as the positional NAME (Stop-KvmGuest -Name); repeatable." };
        var turnOff = new Option<bool>("--turn-off") { Description = "QMP quit at once, no power down." };
        var force = new Option<bool>("--force") { Description = "SIGKILL a QEMU that does not exit after quit." };
        var timeout = new Option<int>("--timeout-seconds") { Description = "Seconds to wait for the guest to power off before quit (1 to 3600; --turn-off quits at once).", DefaultValueFactory = _ => 30 };
        var runDir = new Option<string?>("--run-directory") { Description = "Folder of the run directories (to clean those of guests that are gone)." };
        var whatIf = new Option<bool>("--what-if") { Description = "Say what would be stopped, stop nothing." };
        foreach (var o in new Option[] { nameOpt, turnOff, force, timeout, runDir, whatIf }) cmd.Options.Add(o);
        cmd.Arguments.Add(names);
        ctx.SetAction(cmd, async (parse, run, ct) =>
        {
            var patterns = (parse.GetValue(names) ?? Array.Empty<string>()).Concat(parse.GetValue(nameOpt) ?? Array.Empty<string>()).ToArray();
            if (patterns.Length == 0)
                throw new KvmOcException(ErrorKind.InvalidArgument, "GuestNotSpecified", "Name the guests to stop (names or wildcards, or --name).", null, "kvmoc guest list shows the guests that run.");
            var stopTimeout = Validation.TimeoutSeconds(parse.GetValue(timeout));
            var found = GuestStopper.Find(patterns, parse.GetValue(runDir));
            foreach (var p in patterns.Where(p => !Wildcard.ContainsWildcard(p) && !found.Any(g => new Wildcard(p).IsMatch(g.Name))))
                run.Error(new KvmOcException(ErrorKind.NotFound, "GuestNotFound", $"No guest named '{p}' is running.", p, "kvmoc guest list shows the guests that run."));
            var options = new GuestStopOptions { TurnOff = parse.GetValue(turnOff), Force = parse.GetValue(force), Timeout = stopTimeout };
            var stopped = new List<KvmGuest>();
            foreach (var g in found)
            {
                if (parse.GetValue(whatIf)) { run.Err.WriteLine($"What if: {GuestStopper.Describe(g, options)} on {g.Name}"); continue; }
                try { stopped.Add((await GuestStopper.StopAsync(g, options, run, ct).ConfigureAwait(false)).Guest); }
                catch (KvmOcException e) { run.Error(e); }
            }
            if (stopped.Count > 0) run.WriteResults(stopped, StopColumns);
        });
        return cmd;
    }
}
