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
    public static async Task<ExperimentNetwork?> StartAsync(ExperimentNetworkMode mode, string workDirectory, IOperationObserver observer, CancellationToken ct)
    {
        if (mode == ExperimentNetworkMode.None) return null;
        // Outside the work directory, whose cleanup removes only what the experiment created there.
        var ns = IsolatedNetwork.NewName();
        var dir = Path.Combine(Path.GetTempPath(), ns);
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
