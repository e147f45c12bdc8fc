namespace KvmOvercommit.Engine.Fleet;

/// <summary>
/// One DHCP lease handed out by dnsmasq (its lease file) or by libvirt's dnsmasq (its JSON status file).
/// Property names match ConvertTo-AnsibleInventory's parameters, so leases pipe straight into it.
/// </summary>
[OutputObject]
public sealed class DnsmasqLease
{
    /// <summary>When the lease expires (UTC); null for an infinite lease (expiry 0 in the file).</summary>
    public DateTimeOffset? Expiry { get; set; }

    /// <summary>The client's hardware address, lower case with colons (52:54:00:12:34:56); null for IPv6 leases, whose file field is the IAID.</summary>
    public string? MacAddress { get; set; }

    /// <summary>ARP hardware type of <see cref="MacAddress"/> (1 = Ethernet); null for IPv6 leases.</summary>
    public int? HardwareType { get; set; }

    /// <summary>The leased address (IPv4 or IPv6).</summary>
    public string IPAddress { get; set; } = "";

    /// <summary>The host name the client sent; null when dnsmasq recorded none (`*`).</summary>
    public string? HostName { get; set; }

    /// <summary>The DHCP client identifier (IPv4) or the client's DUID (IPv6), colon-separated hex; null when none (`*`).</summary>
    public string? ClientId { get; set; }

    /// <summary>The client's DUID: for IPv6 the client-id field; for IPv4 the DUID inside an RFC 4361 client identifier (type 255); else null.</summary>
    public string? Duid { get; set; }

    /// <summary>The IPv6 identity association id (the IAID in the MAC column of IPv6 lines; prefixed T for temporary addresses); null for IPv4.</summary>
    public string? Iaid { get; set; }

    /// <summary>The DHCPv6 server's own DUID (the `duid` line of the lease file); null for IPv4.</summary>
    public string? ServerDuid { get; set; }

    /// <summary>True for a DHCPv6 lease.</summary>
    public bool IsIPv6 { get; set; }

    /// <summary>The file the lease was read from.</summary>
    public string LeaseFile { get; set; } = "";

    /// <summary>Line number in <see cref="LeaseFile"/> (for JSON status files, the 1-based index of the entry).</summary>
    public int LineNumber { get; set; }
}
