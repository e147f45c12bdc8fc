using System.Management.Automation;
using KvmOvercommit.Engine.Fleet;

namespace KvmOvercommit.Commands;

/// <summary>Gets the DHCP leases dnsmasq (or libvirt's dnsmasq) handed out: who is on the guest network, at which address.</summary>
/// <remarks>
/// Reads dnsmasq lease files (IPv4 lines, and the DHCPv6 lines after the "duid" line, whose MAC column is the IAID)
/// and libvirt's JSON lease status files (/var/lib/libvirt/dnsmasq/*.status). Without -Path it reads every file that
/// exists of /var/lib/misc/dnsmasq.leases, /var/lib/dnsmasq/dnsmasq.leases, /var/lib/libvirt/dnsmasq/*.leases and
/// /var/lib/libvirt/dnsmasq/*.status. Expiry is null for infinite leases, HostName null when the client sent none.
/// Lines that are not leases become warnings naming file:line. The output pipes into ConvertTo-AnsibleInventory.
/// </remarks>
/// <example>
/// <code>Get-DnsmasqLease</code>
/// <para>Lists the leases in the usual lease files.</para>
/// </example>
/// <example>
/// <code>Get-DnsmasqLease -Path /var/lib/libvirt/dnsmasq/*.status | Where-Object HostName -like 'win7-*'</code>
/// <para>Lists the leases libvirt handed to the win7 guests.</para>
/// </example>
/// <example>
/// <code>Get-DnsmasqLease | ConvertTo-AnsibleInventory -GroupBy '^(?&lt;group&gt;[a-z0-9]+)-' -User admin | Set-Content inventory.ini</code>
/// <para>Writes an Ansible inventory of every leased host, grouped by the name prefix.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "DnsmasqLease", DefaultParameterSetName = "Path")]
[OutputType(typeof(DnsmasqLease))]
public sealed class GetDnsmasqLeaseCommand : KvmCmdlet
{
    /// <summary>Lease files to read (dnsmasq lease files or libvirt *.status files); wildcards allowed. Default: the usual locations.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Path")]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [PathInputTransformation]
    public string[]? Path { get; set; }

    /// <summary>Lease files taken literally (no wildcards); binds PSPath and FullName from the pipeline (Get-ChildItem).</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "LiteralPath")]
    [Alias("PSPath", "FullName", "LP")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = Array.Empty<string>();

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (ParameterSetName == "LiteralPath")
        {
            foreach (var file in LiteralPath.Select(ResolvePath))
                Invoke(() => WriteLeases(DnsmasqLeaseReader.ReadFile(file, SyncObserver)));
            return;
        }
        if (Path is null || Path.Length == 0)
        {
            Invoke(() => WriteLeases(new DnsmasqLeaseReader().ReadDefault(SyncObserver)));
            return;
        }
        foreach (var p in Path)
            foreach (var file in ResolveWildcardPath(p))
                Invoke(() => WriteLeases(DnsmasqLeaseReader.ReadFile(file, SyncObserver)));
    }

    void WriteLeases(IEnumerable<DnsmasqLease> leases)
    {
        foreach (var l in leases) WriteObject(l);
    }
}
