using System.Management.Automation;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Lists the QEMU guests running on this host, also ones started by hand.</summary>
/// <remarks>
/// Every QEMU process is found from /proc/&lt;pid&gt;/cmdline (qemu-system-*, kvm, qemu-kvm) and its command line is
/// parsed the way QEMU parses it: name, memory, vCPUs, disks, VNC display, QMP socket, accelerator. The kernel's
/// numbers come with it: resident and swapped memory, CPU time, start time, and KSM's merged pages and profit per
/// guest. IPAddress comes from the dnsmasq/libvirt DHCP leases when a lease has the guest's MAC address. State comes from each guest's QMP socket when it answers within a short timeout (a busy or dead socket
/// leaves State empty instead of holding the listing up). This replaces `ps ax | grep kvm | wc -l`.
/// </remarks>
/// <example>
/// <code>Get-KvmGuest</code>
/// <para>Lists every guest with memory, vCPUs, resident memory, KSM savings and state.</para>
/// </example>
/// <example>
/// <code>Get-KvmGuest -Name 'win7-*' | Measure-Object -Property RssBytes -Sum</code>
/// <para>Adds up what the win7 guests cost the host in resident memory.</para>
/// </example>
/// <example>
/// <code>(Get-KvmGuest).Count</code>
/// <para>Counts the guests, as the blog did with ps ax | grep kvm | wc -l.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "KvmGuest")]
[OutputType(typeof(KvmGuest))]
public sealed class GetKvmGuestCommand : KvmCmdlet
{
    /// <summary>Guest names to list; wildcards allowed. A name without wildcards that matches no guest is an error.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>QEMU process ids to list.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("ProcessId")]
    [ValidateNotNullOrEmpty]
    public int[]? Id { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        InvokeAsyncWithErrors(async (observer, emit, error, ct) =>
        {
            var guests = await new KvmGuestInventory().GetAsync(Name, Id, queryState: true, error, observer, ct).ConfigureAwait(false);
            foreach (var g in guests) emit(g);
        });
    }
}
