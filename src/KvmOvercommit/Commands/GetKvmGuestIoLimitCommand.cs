using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Reads the I/O limits (QEMU throttling) of every drive of a guest.</summary>
/// <remarks>
/// Asks QEMU over QMP (query-block) for each drive's limits: IOPS and bytes/s in total, read and write, their bursts
/// (*Max, for *MaxLength seconds), IopsSize and the throttle group. 0 means no limit. The objects bind by property
/// name to Set-KvmGuestIoLimit, so a saved reading piped back restores it.
/// </remarks>
/// <example>
/// <code>Get-KvmGuest | Get-KvmGuestIoLimit</code>
/// <para>Shows the limits of every drive of every guest.</para>
/// </example>
/// <example>
/// <code>$saved = Get-KvmGuestIoLimit web1; Set-KvmGuestIoLimit web1 -Iops 100; $saved | Set-KvmGuestIoLimit</code>
/// <para>Limits a guest for a while, then restores what it had.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "KvmGuestIoLimit")]
[OutputType(typeof(KvmGuestIoLimit))]
public sealed class GetKvmGuestIoLimitCommand : KvmCmdlet
{
    /// <summary>Guest names; wildcards allowed. Without Name and Id, every guest.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>QEMU process ids of the guests.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("ProcessId")]
    [ValidateNotNullOrEmpty]
    public int[]? Id { get; set; }

    /// <summary>Drives (as Measure-KvmGuestIops names them, e.g. virtio0); wildcards allowed. Default: every drive.</summary>
    [Parameter]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Drive { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        InvokeAsyncWithErrors(async (observer, emit, error, ct) =>
        {
            foreach (var g in new KvmGuestInventory().Find(Name, Id, error))
            {
                try
                {
                    foreach (var row in await KvmGuestIoLimits.GetAsync(g, Drive, ct).ConfigureAwait(false)) emit(row);
                }
                catch (KvmOcException e) { error(e); }
            }
        });
    }
}
