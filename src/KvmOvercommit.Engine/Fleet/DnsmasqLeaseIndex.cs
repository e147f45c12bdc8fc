namespace KvmOvercommit.Engine.Fleet;

/// <summary>
/// Leases by MAC address, so guest listings can fill in a guest's IP address (Get-KvmGuest: the guest's MAC matches
/// a lease). Per MAC, an IPv4 lease beats an IPv6 one and a later lease beats an earlier one (infinite counts as latest).
/// </summary>
public sealed class DnsmasqLeaseIndex
{
    readonly Dictionary<string, List<DnsmasqLease>> _byMac = new(StringComparer.Ordinal);

    /// <summary>An index of the given leases (those without a MAC address are ignored).</summary>
    public DnsmasqLeaseIndex(IEnumerable<DnsmasqLease> leases)
    {
        foreach (var l in leases)
        {
            var mac = DnsmasqLeaseReader.NormalizeMacAddress(l.MacAddress);
            if (mac is null) continue;
            if (!_byMac.TryGetValue(mac, out var list)) _byMac[mac] = list = new List<DnsmasqLease>();
            list.Add(l);
        }
        foreach (var list in _byMac.Values)
            list.Sort((a, b) => a.IsIPv6 != b.IsIPv6 ? a.IsIPv6.CompareTo(b.IsIPv6) : Rank(b.Expiry).CompareTo(Rank(a.Expiry)));
    }

    static DateTimeOffset Rank(DateTimeOffset? expiry) => expiry ?? DateTimeOffset.MaxValue;

    /// <summary>
    /// The leases at the default locations; when there are none (no dnsmasq on this host) an empty index and a verbose
    /// message, because a guest listing must not fail for want of leases.
    /// </summary>
    public static DnsmasqLeaseIndex LoadDefault(IOperationObserver observer, DnsmasqLeaseReader? reader = null)
    {
        try
        {
            return new DnsmasqLeaseIndex((reader ?? new DnsmasqLeaseReader()).ReadDefault(observer));
        }
        catch (KvmOcException e) when (e.Kind is ErrorKind.NotFound or ErrorKind.PermissionDenied)
        {
            observer.Verbose($"No IP addresses from DHCP leases: {e.Message}");
            return new DnsmasqLeaseIndex(Array.Empty<DnsmasqLease>());
        }
    }

    /// <summary>Number of distinct MAC addresses with a lease.</summary>
    public int Count => _byMac.Count;

    /// <summary>The leases of a MAC address (any notation), best first; empty when none.</summary>
    public IReadOnlyList<DnsmasqLease> LeasesFor(string? macAddress) =>
        DnsmasqLeaseReader.NormalizeMacAddress(macAddress) is { } mac && _byMac.TryGetValue(mac, out var list) ? list : Array.Empty<DnsmasqLease>();

    /// <summary>The address of the best lease of a MAC address (latest IPv4, else latest IPv6); null when it has none.</summary>
    public string? AddressFor(string? macAddress) => LeasesFor(macAddress).FirstOrDefault()?.IPAddress;
}
