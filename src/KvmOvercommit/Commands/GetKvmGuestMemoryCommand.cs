using System.Management.Automation;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Reads a guest's balloon: how much memory the guest has now against what it was started with.</summary>
/// <remarks>
/// Asks QEMU over QMP (query-balloon) for the guest's actual memory. TargetMB is the last target Set-KvmGuestMemory set
/// (remembered in the guest's run directory; QEMU itself does not report it). A guest without a balloon device gives
/// the error GuestHasNoBalloon.
/// </remarks>
/// <example>
/// <code>Get-KvmGuest | Get-KvmGuestMemory</code>
/// <para>Shows the balloon of every guest.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "KvmGuestMemory")]
[OutputType(typeof(KvmGuestMemory))]
public sealed class GetKvmGuestMemoryCommand : KvmCmdlet
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

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        InvokeAsyncWithErrors(async (observer, emit, error, ct) =>
        {
            foreach (var g in new KvmGuestInventory().Find(Name, Id, error))
            {
                try { emit(await KvmGuestBalloon.GetAsync(g, ct).ConfigureAwait(false)); }
                catch (Engine.KvmOcException e) { error(e); }
            }
        });
    }
}
