using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Experiment;

/// <summary>How the experiment's guests are networked.</summary>
public enum ExperimentNetworkMode
{
    /// <summary>No NIC (the default).</summary>
    None,
    /// <summary>
    /// The blog's fleet on an isolated network: a network namespace with a bridge and dnsmasq, the fleet tiny guest
    /// (DHCP + SSH) on a tap each, QEMU in the namespace; leases → inventory → Ansible (inside the namespace) before the
    /// KSM profiles; everything removed at cleanup.
    /// </summary>
    Isolated,
}

/// <summary>
/// The experiment's isolated network (-Network Isolated): made before the guests start, the guests' start options
/// and kernel arguments, the blog's loop once they run, and the inventory file in the report.
/// </summary>
public sealed class ExperimentNetwork : IAsyncDisposable
{
    ExperimentNetwork(IsolatedNetwork net, string privateKey, string publicKey)
    {
        Network = net;
        PrivateKey = privateKey;
        PublicKey = publicKey;
    }

    /// <summary>The namespace, bridge and dnsmasq.</summary>
    public IsolatedNetwork Network { get; }
    /// <summary>The SSH key Ansible uses (made for this run, in the network's folder).</summary>
    public string PrivateKey { get; }
    /// <summary>Its public half, given to each guest on the kernel command line.</summary>
    public string PublicKey { get; }

    /// <summary>The plan's lines for -WhatIf.</summary>
    public static IEnumerable<string> PlanSteps(string workDirectory) =>
        IsolatedNetwork.Describe("kvmoc-net-<id>", Path.Combine(Path.GetTempPath(), "kvmoc-net-<id>"))
            .Append("boot the fleet tiny guest (Get-KvmTinyGuest -Variant Fleet) in the namespace, one QEMU-made tap on the bridge each; wait for the leases; write inventory.ini from the lease file; ansible -m raw each guest until it answers");

    /// <summary>Creates the network and an SSH key, or returns null when the mode is None.</summary>
    public static async Task<ExperimentNetwork?> StartAsync(ExperimentNetworkMode mode, string workDirectory, IOperationObserver observer, CancellationToken ct, HostJournal? journal = null)
    {
        if (mode == ExperimentNetworkMode.None) return null;
        // Outside the work directory, whose cleanup removes only what the experiment created there.
        var ns = IsolatedNetwork.NewName();
        var dir = Path.Combine(Path.GetTempPath(), ns);
        journal?.AddNetwork(ns, dir); // before it exists: a kill -9 from here on leaves it to -Recover
        var net = await IsolatedNetwork.CreateAsync(dir, ns, observer, ct).ConfigureAwait(false);
        try
        {
            var (key, pub) = await FleetReach.NewKeyAsync(dir, ct).ConfigureAwait(false);
            return new ExperimentNetwork(net, key, pub);
        }
        catch
        {
            await net.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Puts guest <paramref name="name"/> on the network: tap on the bridge, QEMU in the namespace, its name and the key on the kernel command line.</summary>
    public void Apply(GuestStartOptions start, string name)
    {
        start.Network = GuestNetwork.Tap;
        start.Bridge = IsolatedNetwork.BridgeName;
        start.NetworkNamespace = Network.Namespace;
        start.DiskCache = "none"; // the guests' I/O reaches the host device, where the IOPS are measured
        start.KernelArguments = ((start.KernelArguments ?? "") + $" kvmoc.name={name} " + TinyGuestFleet.KernelArgumentForKey(PublicKey)).Trim();
    }

    /// <summary>The blog's loop over the started guests; the inventory is written next to the lease file.</summary>
    public Task<FleetReachResult> ReachAsync(IReadOnlyList<KvmGuest> guests, TimeSpan timeout, IOperationObserver observer, CancellationToken ct) =>
        FleetReach.RunAsync(Network, guests.Select(g => new FleetMember(g.Name, g.MacAddress ?? "", g.StartTime ?? DateTimeOffset.UtcNow)).ToList(),
            PrivateKey, Path.Combine(Network.Directory, "inventory.ini"), timeout, observer, ct);

    /// <summary>Stops dnsmasq, deletes the namespace and the network's folder (key, leases, inventory: the report keeps a copy).</summary>
    public async ValueTask DisposeAsync()
    {
        await Network.DisposeAsync().ConfigureAwait(false);
        try { Directory.Delete(Network.Directory, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Which I/O load the experiment starts in a share of its guests (through Ansible).</summary>
public enum ExperimentIoLoad
{
    /// <summary>4 KiB × 256 O_DIRECT writes in a loop.</summary>
    Write,
    /// <summary>4 KiB × 256 O_DIRECT reads in a loop.</summary>
    Read,
    /// <summary>One 4 KiB O_DIRECT write at a random block of the first 16 MiB per dd.</summary>
    RandomWrite,
}

/// <summary>One guest during the I/O load: its IOPS before and during it (Measure-KvmGuestIops, query-blockstats).</summary>
public sealed class ExperimentIoLoadGuest
{
    /// <summary>The guest.</summary>
    public string Name { get; set; } = "";
    /// <summary>True for the guests the load ran in.</summary>
    public bool IoLoaded { get; set; }
    /// <summary>IOPS before the load.</summary>
    public double IopsIdle { get; set; }
    /// <summary>IOPS during the load.</summary>
    public double IopsLoaded { get; set; }
    /// <summary>Its QEMU's I/O before the load (Measure-ProcessIops: io.stat IOPS where the QEMU has its own cgroup, else read + write syscalls per second; see the load's ProcessIopsSource).</summary>
    public double? ProcessIopsIdle { get; set; }
    /// <summary>Its QEMU's I/O during the load, as <see cref="ProcessIopsIdle"/>.</summary>
    public double? ProcessIopsLoaded { get; set; }
    /// <summary>Its QEMU's bytes per second to and from storage during the load (/proc/pid/io read_bytes + write_bytes).</summary>
    public double? ProcessBytesPerSecLoaded { get; set; }
}

/// <summary>The I/O load on a fraction of the fleet, watched from the host.</summary>
public sealed class ExperimentIoLoadResult
{
    /// <summary>Write, Read or RandomWrite.</summary>
    public ExperimentIoLoad Load { get; set; }
    /// <summary>The share of the guests asked for.</summary>
    public int Percent { get; set; }
    /// <summary>Seconds the load was sampled.</summary>
    public int Seconds { get; set; }
    /// <summary>The whole disk under the overlays.</summary>
    public string? Device { get; set; }
    /// <summary>That disk's IOPS before the load (Measure-DeviceIops).</summary>
    public double DeviceIopsIdle { get; set; }
    /// <summary>Its IOPS during the load.</summary>
    public double DeviceIopsLoaded { get; set; }
    /// <summary>(DeviceIopsLoaded − DeviceIopsIdle) / loaded guests: what one loaded guest costs the device.</summary>
    public double? DeviceIopsPerLoadedGuest { get; set; }
    /// <summary>How the QEMU processes' figures were obtained.</summary>
    public string? ProcessIopsSource { get; set; }
    /// <summary>Per guest.</summary>
    public ExperimentIoLoadGuest[] Guests { get; set; } = Array.Empty<ExperimentIoLoadGuest>();
    /// <summary>One reading per second during the load: the device, the guests' sum and the QEMUs' sum side by side (the report's IOPS chart).</summary>
    public ExperimentIopsSample[] Samples { get; set; } = Array.Empty<ExperimentIopsSample>();
}

/// <summary>-IoLoadPercent: starts the load through Ansible, samples guests and device side by side, stops it.</summary>
public static class ExperimentIoLoadRunner
{
    /// <summary>How many of <paramref name="guests"/> a percentage loads (at least one when the percentage is above 0).</summary>
    public static int LoadedCount(int guests, int percent) => percent <= 0 ? 0 : Math.Clamp((int)Math.Ceiling(guests * percent / 100.0), 1, guests);

    /// <summary>Runs the load.</summary>
    public static async Task<ExperimentIoLoadResult> RunAsync(ExperimentNetwork network, Fleet.FleetReachResult fleet, IReadOnlyList<KvmGuest> guests, ExperimentIoLoad load, int percent, int seconds, string overlayFolder, IOperationObserver observer, CancellationToken ct, HostRoots? roots = null)
    {
        var reachable = fleet.Guests.Where(g => g.AnsibleReachable).Select(g => g.Name).ToHashSet(StringComparer.Ordinal);
        var loaded = guests.Where(g => reachable.Contains(g.Name)).Take(LoadedCount(guests.Count, percent)).Select(g => g.Name).ToArray();
        var device = Io.BlockDevices.WholeDiskOf(overlayFolder);
        var result = new ExperimentIoLoadResult { Load = load, Percent = percent, Seconds = seconds, Device = device };
        observer.Progress(new ProgressInfo("I/O load", $"idle sample of {guests.Count} guest(s)"));
        ExperimentIopsTracker? tracker = null;
        string[] started = Array.Empty<string>();
        try
        {
            tracker = await ExperimentIopsTracker.OpenAsync(guests, device, roots, ct).ConfigureAwait(false);
            await Task.Delay(3000, ct).ConfigureAwait(false);
            var idle = await tracker.NextAsync(ct).ConfigureAwait(false);
            var (guestIdle, processIdle) = (tracker.GuestIops, tracker.ProcessIops);
            var command = Fleet.FleetReach.IoLoadCommand(load.ToString(), seconds + 10);
            started = await Fleet.FleetReach.RawAsync(network.Network, fleet.InventoryFile, loaded, command, network.PrivateKey, observer, ct).ConfigureAwait(false);
            if (started.Length < loaded.Length) observer.Warning($"The I/O load started in {started.Length} of {loaded.Length} guest(s): {string.Join(", ", loaded.Except(started))} did not answer.");
            await Task.Delay(1000, ct).ConfigureAwait(false);
            await tracker.NextAsync(ct).ConfigureAwait(false); // the ramp (and the Ansible call) is not part of the load's figures
            observer.Progress(new ProgressInfo("I/O load", $"{load} in {started.Length} guest(s) for {seconds} s"));
            var samples = new List<ExperimentIopsSample>();
            var guestRows = new List<double?[]>();
            var processRows = new List<double?[]>();
            var bytesRows = new List<double?[]>();
            long begin = System.Diagnostics.Stopwatch.GetTimestamp();
            for (int i = 1; i <= seconds; i++)
            {
                await Task.Delay(Io.Schedule.NextDue(begin, TimeSpan.FromSeconds(1)), ct).ConfigureAwait(false);
                var s = await tracker.NextAsync(ct).ConfigureAwait(false);
                s.ElapsedSeconds = Math.Round(System.Diagnostics.Stopwatch.GetElapsedTime(begin).TotalSeconds, 3);
                samples.Add(s);
                guestRows.Add(tracker.GuestIops);
                processRows.Add(tracker.ProcessIops);
                bytesRows.Add(tracker.ProcessBytesPerSec);
            }
            result.Samples = samples.ToArray();
            result.ProcessIopsSource = tracker.ProcessIopsSource;
            double? Mean(IEnumerable<(double? Value, double Weight)> v)
            {
                var known = v.Where(x => x.Value is not null).ToList();
                double w = known.Sum(x => x.Weight);
                return known.Count == 0 || w <= 0 ? null : Math.Round(known.Sum(x => x.Value!.Value * x.Weight) / w, 2);
            }
            double? Column(List<double?[]> rows, int g) => Mean(rows.Select((r, k) => (g < r.Length ? r[g] : null, samples[k].IntervalSeconds)));
            result.DeviceIopsIdle = idle.DeviceIops ?? 0;
            result.DeviceIopsLoaded = Mean(samples.Select(x => (x.DeviceIops, x.IntervalSeconds))) ?? 0;
            result.DeviceIopsPerLoadedGuest = started.Length > 0 ? Math.Round((result.DeviceIopsLoaded - result.DeviceIopsIdle) / started.Length, 2) : null;
            result.Guests = guests.Select((g, k) => new ExperimentIoLoadGuest
            {
                Name = g.Name,
                IoLoaded = started.Contains(g.Name),
                IopsIdle = guestIdle[k] ?? 0,
                IopsLoaded = Column(guestRows, k) ?? 0,
                ProcessIopsIdle = processIdle[k],
                ProcessIopsLoaded = Column(processRows, k),
                ProcessBytesPerSecLoaded = Column(bytesRows, k),
            }).ToArray();
            observer.Verbose($"I/O load {load} on {started.Length} guest(s): device {device} {result.DeviceIopsIdle} → {result.DeviceIopsLoaded} IOPS; "
                + string.Join(", ", result.Guests.Select(g => $"{g.Name} {g.IopsIdle} → {g.IopsLoaded} (QEMU {g.ProcessIopsIdle} → {g.ProcessIopsLoaded})")));
        }
        finally
        {
            if (tracker is not null) await tracker.DisposeAsync().ConfigureAwait(false);
            if (started.Length > 0)
                await Fleet.FleetReach.RawAsync(network.Network, fleet.InventoryFile, started, Fleet.FleetReach.StopIoLoadCommand, network.PrivateKey, NullObserver.Instance, CancellationToken.None).ConfigureAwait(false);
            observer.Progress(new ProgressInfo("I/O load", "done", Completed: true));
        }
        return result;
    }
}
