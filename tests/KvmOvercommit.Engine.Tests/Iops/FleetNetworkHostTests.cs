using System.Diagnostics;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.Io;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Iops;

/// <summary>
/// The blog's fleet loop on real parts: 4 fleet tiny guests (TCG) on an isolated network (namespace, bridge, real
/// dnsmasq), leases → inventory → ansible-inventory → ansible -m raw over SSH (dropbear) inside the namespace, then a
/// write load started through Ansible on half of them, seen per guest (query-blockstats) and on the host's disk; at
/// the end the namespace, bridge, taps, dnsmasq, guests and overlays are gone.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class FleetNetworkHostTests
{
    [SkippableFact]
    public async Task FourGuestsOnTheIsolatedNetworkAreLeasedReachedByAnsibleAndLoadedThroughIt()
    {
        Prereq.RequireRoot();
        Prereq.RequireTool("dnsmasq");
        Prereq.RequireTool("ip");
        Prereq.RequireTool("ansible");
        Prereq.RequireTool("ansible-inventory");
        Prereq.RequireTool("ssh");
        Prereq.RequireTool("ssh-keygen");
        using var f = await GuestFixture.CreateAsync();
        var fleet = await TinyGuest.GetAsync(new TinyGuestOptions { Variant = TinyGuestVariant.Fleet }, NullObserver.Instance);
        Assert.Equal(TinyGuestVariant.Fleet, fleet.Variant);
        Assert.Contains("virtio_net", fleet.Modules);
        var netDir = Path.Combine(f.Dir.Path, "net");
        var net = await IsolatedNetwork.CreateAsync(netDir, null, NullObserver.Instance, default);
        var ns = net.Namespace;
        int? dnsmasq = net.DnsmasqId;
        var overlays = new List<string>();
        var taps = new List<string>();
        try
        {
            Assert.True(IsolatedNetwork.NamespaceExists(ns));
            Assert.NotNull(dnsmasq);
            // No route out: the namespace knows only the bridge's /24 (a route lookup, no packet is sent).
            var routes = await net.RoutesAsync(default);
            Assert.Equal($"10.213.0.0/24 dev {IsolatedNetwork.BridgeName} proto kernel scope link src 10.213.0.1", Assert.Single(routes));
            var (rc, _, err) = await net.RunAsync("ip", new[] { "route", "get", "192.0.2.1" }, default);
            Assert.NotEqual(0, rc);
            Assert.Contains("unreachable", err, StringComparison.OrdinalIgnoreCase);

            var (key, pub) = await FleetReach.NewKeyAsync(f.Dir.Path, default);
            var baseImage = f.CreateDisk(f.Dir.File("base.qcow2"), size: "16M");
            var members = new List<FleetMember>();
            var guests = new List<KvmGuest>();
            for (int i = 1; i <= 4; i++)
            {
                var name = f.Name($"fleet{i}");
                var disk = f.CreateDisk(f.Dir.File(name + ".qcow2"), backing: baseImage);
                overlays.Add(disk);
                var o = f.TinyOptions(name, disk, $"kvmoc.name={name} {TinyGuestFleet.KernelArgumentForKey(pub)}");
                o.Kernel = fleet.Kernel; o.Initrd = fleet.Initrd;
                o.Network = GuestNetwork.Tap; o.Bridge = IsolatedNetwork.BridgeName; o.NetworkNamespace = ns; o.DiskCache = "none";
                var plan = GuestLauncher.Plan(o, NullObserver.Instance);
                Assert.StartsWith("tap,id=net0,ifname=kvt", plan.Arguments[Array.IndexOf(plan.Arguments, "-netdev") + 1], StringComparison.Ordinal);
                var g = await f.StartAsync(plan, NullObserver.Instance);
                guests.Add(g);
                taps.Add(plan.TapDevice!);
                members.Add(new FleetMember(name, g.MacAddress!, g.StartTime ?? DateTimeOffset.UtcNow));
            }

            // One tap per guest, made by QEMU in the namespace, on the bridge.
            var (lrc, links, _) = await net.RunAsync("ip", new[] { "-o", "link", "show", "master", IsolatedNetwork.BridgeName }, default);
            Assert.Equal(0, lrc);
            Assert.All(taps, t => Assert.Contains(t + ":", links, StringComparison.Ordinal));

            var inventory = Path.Combine(f.Dir.Path, "inventory.ini");
            var reach = await FleetReach.RunAsync(net, members, key, inventory, TimeSpan.FromSeconds(240), NullObserver.Instance, default);
            Assert.Equal(4, reach.Leased);
            Assert.All(reach.Guests, g => Assert.Equal(g.Name, g.LeaseHostName)); // udhcpc sent the guest's name
            Assert.All(reach.Guests, g => Assert.StartsWith("10.213.0.", g.IPAddress, StringComparison.Ordinal));
            Assert.Equal(members.Select(m => m.Name).OrderBy(n => n, StringComparer.Ordinal), reach.InventoryHosts); // ansible-inventory accepted it
            Assert.True(reach.Reached == 4, string.Join("; ", reach.Guests.Select(g => $"{g.Name}: {g.AnsibleOutput}")));
            Assert.All(reach.Guests, g => Assert.Equal(g.Name, g.AnsibleOutput));
            Assert.All(reach.Guests, g => Assert.InRange(g.SecondsToReachable!.Value, g.SecondsToLease!.Value, 240));
            Assert.Contains("ansible_user=root", File.ReadAllText(inventory));

            // Write load on half of them, through Ansible; idle vs loaded per guest, and the host disk under the overlays.
            var idle = await GuestIopsAsync(guests, 3);
            var device = BlockDevices.WholeDiskOf(f.Dir.Path)!;
            var deviceIdle = await DeviceIopsAsync(device, 3);
            var loaded = guests.Take(2).Select(g => g.Name).ToArray();
            var started = await FleetReach.RawAsync(net, inventory, loaded,
                FleetReach.IoLoadCommand("Write", 60), key, NullObserver.Instance, default);
            Assert.Equal(loaded.OrderBy(n => n), started.OrderBy(n => n));
            await Task.Delay(1000);
            var deviceTask = DeviceIopsAsync(device, 5);
            var busy = await GuestIopsAsync(guests, 5);
            var deviceBusy = await deviceTask;
            foreach (var n in loaded)
                Assert.True(busy[n] >= 20 * Math.Max(idle[n], 1), $"{n}: loaded {busy[n]} IOPS, idle {idle[n]}");
            foreach (var n in guests.Skip(2).Select(g => g.Name))
                Assert.True(busy[n] < 20, $"{n} was not loaded but did {busy[n]} IOPS");
            Assert.True(deviceBusy > deviceIdle + 0.5 * loaded.Sum(n => busy[n]), $"device {device}: {deviceIdle} IOPS idle, {deviceBusy} under a guest load of {loaded.Sum(n => busy[n])}");
        }
        finally
        {
            foreach (var p in f.Running()) GuestLauncher.kill(p.Id, 9);
            var sw = Stopwatch.StartNew();
            while (f.Running().Count > 0 && sw.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(100);
            await net.DisposeAsync();
            foreach (var o in overlays) File.Delete(o);
        }
        Assert.False(IsolatedNetwork.NamespaceExists(ns));
        Assert.Empty(f.Running());
        Assert.False(dnsmasq is { } pid && File.Exists($"/proc/{pid}/status") && !File.ReadAllText($"/proc/{pid}/status").Contains("State:\tZ", StringComparison.Ordinal), "dnsmasq still runs");
        Assert.All(taps, t => Assert.False(Directory.Exists("/sys/class/net/" + t))); // never in the host's namespace, and that one is gone
        Assert.All(overlays, o => Assert.False(File.Exists(o)));
    }

    static async Task<Dictionary<string, double>> GuestIopsAsync(IReadOnlyList<KvmGuest> guests, int seconds)
    {
        var rows = new List<KvmGuestIops>();
        var errors = new List<KvmOcException>();
        await new KvmGuestIopsSampler().RunAsync(guests, TimeSpan.FromSeconds(seconds), 1, rows.Add, errors.Add, NullObserver.Instance, default);
        Assert.Empty(errors);
        return guests.ToDictionary(g => g.Name, g => rows.Where(r => r.Name == g.Name).Sum(r => r.Iops));
    }

    static async Task<double> DeviceIopsAsync(string device, int seconds)
    {
        double iops = 0;
        await foreach (var row in new DeviceIopsSampler().SampleAsync(new DeviceIopsOptions { Device = new[] { device }, Interval = TimeSpan.FromSeconds(seconds), Count = 1 }, NullObserver.Instance, default))
            iops += row.Iops;
        return iops;
    }
}
