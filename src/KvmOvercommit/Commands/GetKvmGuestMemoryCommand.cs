using System.Management.Automation;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Reads a guest's balloon: how much memory the guest has now against what it was started with.</summary>
/// <remarks>
/// Asks QEMU over QMP (query-balloon) for the guest's actual memory. TargetMB is the last target Set-KvmGuestMemory set
/// (remembered in the guest's run directory; QEMU itself does not report it). A guest without a balloon device gives
/// the error GuestHasNoBalloon.
/// <para>
/// The guest's own view comes from the virtio balloon's statistics (QOM guest-stats): GuestFreeBytes,
/// GuestAvailableBytes, GuestTotalBytes, GuestDiskCachesBytes, GuestSwapInBytes/GuestSwapOutBytes,
/// GuestMajorFaults/GuestMinorFaults and StatsLastUpdate; null where the guest reports none (no balloon driver, or
/// statistics not polled yet). A balloon that does not poll its guest yet is set to poll every
/// -StatsIntervalSeconds (default 2; qom-set guest-stats-polling-interval), and the first report is awaited up to 3 s;
/// -StatsIntervalSeconds 0 reads only what is already there.
/// </para>
/// </remarks>
/// <example>
/// <code>Get-KvmGuest | Get-KvmGuestMemory</code>
/// <para>Shows the balloon of every guest.</para>
/// </example>
/// <example>
/// <code>Get-KvmGuestMemory -Name tiny1 | Format-List Name, ActualMB, GuestFreeMB, GuestAvailableMB, GuestMajorFaults, StatsLastUpdate</code>
/// <para>What the guest itself says it has free and available.</para>
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

    /// <summary>Turn the balloon's guest statistics on where they are off, polled this often (seconds); 0 reads only what is there.</summary>
    [Parameter]
    [ValidateRange(0, 3600)]
    public int StatsIntervalSeconds { get; set; } = BalloonStatistics.DefaultPollingSeconds;

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        InvokeAsyncWithErrors(async (observer, emit, error, ct) =>
        {
            foreach (var g in new KvmGuestInventory().Find(Name, Id, error))
            {
                try { emit(await KvmGuestBalloon.GetAsync(g, StatsIntervalSeconds, observer, ct).ConfigureAwait(false)); }
                catch (Engine.KvmOcException e) { error(e); }
            }
        });
    }
}
