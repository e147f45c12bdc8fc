using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Fleet;

public class DnsmasqLeaseIndexTests
{
    static DnsmasqLease L(string mac, string ip, long? expiry, bool v6 = false) => new()
    {
        MacAddress = mac, IPAddress = ip, IsIPv6 = v6, Expiry = expiry is null ? null : DateTimeOffset.FromUnixTimeSeconds(expiry.Value),
    };

    [Fact]
    public void FindsTheLatestIPv4LeaseOfAMacInAnyNotation()
    {
        var index = new DnsmasqLeaseIndex(new[]
        {
            L("52:54:00:00:00:01", "fd00::1", null, v6: true),
            L("52:54:00:00:00:01", "10.0.0.1", 100),
            L("52:54:00:00:00:01", "10.0.0.2", 200),
            L("52:54:00:00:00:02", "fd00::2", 5, v6: true),
        });
        Assert.Equal("10.0.0.2", index.AddressFor("52-54-00-00-00-01"));
        Assert.Equal("10.0.0.2", index.AddressFor("52:54:00:00:00:01".ToUpperInvariant()));
        Assert.Equal("fd00::2", index.AddressFor("525400000002"));
        Assert.Null(index.AddressFor("52:54:00:00:00:03"));
        Assert.Null(index.AddressFor(null));
        Assert.Equal(3, index.LeasesFor("52:54:00:00:00:01").Count);
    }

    [Fact]
    public void MissingLeaseFilesGiveAnEmptyIndexNotAnError()
    {
        using var t = new TempDir();
        var obs = new RecordingObserver();
        var index = DnsmasqLeaseIndex.LoadDefault(obs, new DnsmasqLeaseReader(t.Path));
        Assert.Equal(0, index.Count);
        Assert.Contains(obs.Verbose, v => v.Contains("No IP addresses from DHCP leases"));
    }

    [Fact]
    public void LoadsTheDefaultFiles()
    {
        using var t = new TempDir();
        t.Write("var/lib/libvirt/dnsmasq/virbr0.status", File.ReadAllText(Fixture.PathOf("fleet/virbr0.status")));
        var index = DnsmasqLeaseIndex.LoadDefault(new RecordingObserver(), new DnsmasqLeaseReader(t.Path));
        Assert.Equal("192.168.122.45", index.AddressFor("52:54:00:12:34:56")); // IPv4 beats the later IPv6 lease of the same MAC
    }
}
