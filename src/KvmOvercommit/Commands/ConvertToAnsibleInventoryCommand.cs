using System.Collections;
using System.Management.Automation;
using KvmOvercommit.Engine.Fleet;

namespace KvmOvercommit.Commands;

/// <summary>Turns DHCP leases or guests into an Ansible inventory (INI, or the JSON of a dynamic-inventory script).</summary>
/// <remarks>
/// Takes anything with a host name (HostName or Name) and an address (IPAddress) from the pipeline: leases from
/// Get-DnsmasqLease, guests from Get-KvmGuest, or your own objects. Every host gets ansible_host, ansible_user (with
/// -User) and mac_address (when known). Hosts without a name are named by their address; with several entries for one
/// name the latest lease wins (-Verbose says which addresses were dropped). -GroupBy is a regular expression matched
/// case-insensitively against each name: the host joins the group named by the capture group "group", else by the
/// first capture group, else by the whole match ('^(\w+)-\d+$' puts win7-12 into group win7). -GroupMap is a hashtable
/// of wildcard = group (@{ 'win7-*' = 'windows' }): a host joins every group whose wildcard matches. Group names are made
/// valid for Ansible (letters, digits, '_'). The inventory is written as one string when the input ends.
/// </remarks>
/// <example>
/// <code>Get-DnsmasqLease | ConvertTo-AnsibleInventory -GroupBy '^(?&lt;group&gt;[a-z0-9]+)-' -User admin | Set-Content inventory.ini</code>
/// <para>Replaces the blog's custom inventory script: an INI inventory with a group per name prefix (win7-01 → win7).</para>
/// </example>
/// <example>
/// <code>Get-DnsmasqLease | ConvertTo-AnsibleInventory -Format Json -GroupMap @{ 'win7-*' = 'windows'; 'deb-*' = 'linux' }</code>
/// <para>The JSON a dynamic-inventory script prints for --list, with _meta.hostvars.</para>
/// </example>
/// <example>
/// <code>ConvertTo-AnsibleInventory -HostName db1 -IPAddress 10.0.0.5 -User root</code>
/// <para>An inventory of one host given by hand.</para>
/// </example>
[Cmdlet(VerbsData.ConvertTo, "AnsibleInventory")]
[OutputType(typeof(string))]
public sealed class ConvertToAnsibleInventoryCommand : KvmCmdlet
{
    readonly List<InventoryEntry> _entries = new();

    /// <summary>The host's name (a lease's HostName, a guest's Name); hosts without one are named by their address.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("Name")]
    [AllowNull, AllowEmptyString]
    public string? HostName { get; set; }

    /// <summary>The host's addresses; the first IPv4 address is used, else the first IPv6 address that is not link-local.</summary>
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [AllowNull, AllowEmptyCollection]
    public string[]? IPAddress { get; set; }

    /// <summary>The host's MAC address; becomes the host variable mac_address.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull, AllowEmptyCollection]
    public string[]? MacAddress { get; set; }

    /// <summary>When the host's lease expires; when several entries have the same name, the latest lease wins.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull]
    [DateTimeOffsetTransformation]
    public DateTimeOffset? Expiry { get; set; }

    /// <summary>Ini (an inventory file) or Json (what a dynamic-inventory script prints for --list).</summary>
    [Parameter]
    public InventoryFormat Format { get; set; } = InventoryFormat.Ini;

    /// <summary>A regular expression on the host name whose capture group ("group", else the first) names the host's group.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? GroupBy { get; set; }

    /// <summary>A hashtable of wildcard = group: a host joins every group whose wildcard matches its name.</summary>
    [Parameter]
    [ValidateNotNull]
    public IDictionary? GroupMap { get; set; }

    /// <summary>The user Ansible logs in as (ansible_user on every host).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? User { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (string.IsNullOrEmpty(HostName) && (IPAddress is null || IPAddress.Length == 0)) return;
        _entries.Add(new InventoryEntry
        {
            HostName = HostName,
            IPAddress = IPAddress,
            MacAddress = MacAddress?.FirstOrDefault(m => !string.IsNullOrWhiteSpace(m)),
            Expiry = Expiry,
        });
    }

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        var options = new InventoryOptions
        {
            Format = Format,
            GroupBy = GroupBy,
            User = User,
            GroupMap = GroupMap?.Cast<DictionaryEntry>()
                .Select(e => KeyValuePair.Create(LanguagePrimitives.ConvertTo<string>(e.Key), LanguagePrimitives.ConvertTo<string>(e.Value)))
                .ToList(),
        };
        Invoke(() => WriteObject(AnsibleInventoryWriter.Write(_entries, options, SyncObserver)), terminating: true);
    }
}
