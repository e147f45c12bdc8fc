using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.GuestOps;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Fleet;

/// <summary>Issue 6: Get-KvmGuest fills IPAddress from the leases when a guest's MAC matches.</summary>
public class GuestAddressTests
{
    [Fact]
    public async Task GuestsWhoseMacHasALeaseGetItsAddress()
    {
        using var t = new TempDir();
        var proc = Path.Combine(t.Path, "proc");
        Directory.CreateDirectory(proc);
        FakeProc.WriteStat(proc);
        FakeProc.WriteProcess(proc, 10, new[] { "qemu-system-x86_64", "-name", "win7-1", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56" });
        FakeProc.WriteProcess(proc, 11, new[] { "qemu-system-x86_64", "-name", "win7-2", "-net", "nic,macaddr=52:54:00:aa:bb:cc" });
        FakeProc.WriteProcess(proc, 12, new[] { "qemu-system-x86_64", "-name", "nonic" });
        var leases = new DnsmasqLeaseIndex(new[]
        {
            new DnsmasqLease { MacAddress = "52:54:00:12:34:56", IPAddress = "192.168.122.45" },
            new DnsmasqLease { MacAddress = "52:54:00:99:99:99", IPAddress = "192.168.122.99" },
        });
        var inventory = new KvmGuestInventory(new HostRoots(Proc: proc)) { Leases = _ => leases };
        var guests = await inventory.GetAsync(null, null, queryState: false, null, NullObserver.Instance, default);
        Assert.Equal("192.168.122.45", guests.Single(g => g.Name == "win7-1").IPAddress);
        Assert.Null(guests.Single(g => g.Name == "win7-2").IPAddress); // its MAC has no lease
        Assert.Null(guests.Single(g => g.Name == "nonic").IPAddress);
    }

    [Fact]
    public void AnAddressAlreadyKnownIsKept()
    {
        var leases = new DnsmasqLeaseIndex(new[] { new DnsmasqLease { MacAddress = "52:54:00:00:00:01", IPAddress = "10.0.0.1" } });
        var guests = new[]
        {
            new KvmGuest { Name = "a", MacAddress = "52-54-00-00-00-01" },
            new KvmGuest { Name = "b", MacAddress = "52:54:00:00:00:01", IPAddress = "10.9.9.9" },
        };
        Assert.Equal(1, KvmGuestInventory.FillAddresses(guests, leases));
        Assert.Equal("10.0.0.1", guests[0].IPAddress);
        Assert.Equal("10.9.9.9", guests[1].IPAddress);
    }
}
