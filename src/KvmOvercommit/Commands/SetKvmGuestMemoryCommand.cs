using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Inflates or deflates a guest's balloon: sets how much memory the guest may keep.</summary>
/// <remarks>
/// Sends QMP's balloon command with the target size; the guest's virtio_balloon driver gives memory back to the host
/// (or takes it again) at its own pace, so -Wait polls query-balloon until the guest reaches the target or
/// -TimeoutSeconds pass. The target must lie between 1 MiB and the memory the guest was started with. -PassThru
/// returns the guest's memory afterwards, with PreviousActualMB to restore it.
/// </remarks>
/// <example>
/// <code>Get-KvmGuest | Set-KvmGuestMemory -TargetMB 64 -Wait -PassThru</code>
/// <para>Shrinks every guest to 64 MiB and shows the result.</para>
/// </example>
/// <example>
/// <code>Set-KvmGuestMemory -Name web1 -TargetMB 1024 -WhatIf</code>
/// <para>Shows what would be done without doing it.</para>
/// </example>
[Cmdlet(VerbsCommon.Set, "KvmGuestMemory", SupportsShouldProcess = true)]
[OutputType(typeof(KvmGuestMemory))]
public sealed class SetKvmGuestMemoryCommand : KvmCmdlet
{
    /// <summary>Guest names; wildcards allowed.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>QEMU process ids of the guests.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("ProcessId")]
    [ValidateNotNullOrEmpty]
    public int[]? Id { get; set; }

    /// <summary>The memory the guest may keep, in MiB (the balloon takes the rest).</summary>
    [Parameter(Mandatory = true)]
    [ValidateRange(1, long.MaxValue)]
    public long TargetMB { get; set; }

    /// <summary>Wait until the guest has reached the target (or TimeoutSeconds have passed).</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>How long -Wait waits, in seconds.</summary>
    [Parameter]
    [ValidateRange(1, 3600)]
    public int TimeoutSeconds { get; set; } = 30;

    /// <summary>Return the guest's memory after the change.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (Name is null && Id is null)
            ThrowEngineError(new KvmOcException(ErrorKind.InvalidArgument, "GuestNotSpecified", "Name the guests (-Name, -Id, or pipe Get-KvmGuest).", null));
        var guests = new List<KvmGuest>();
        Invoke(() => guests = new KvmGuestInventory().Find(Name, Id, WriteEngineError));
        foreach (var guest in guests)
        {
            Invoke(() =>
            {
                var plan = KvmGuestBalloon.Plan(guest, TargetMB);
                if (!ShouldProcess(plan.Target, plan.Action)) return;
                InvokeAsync(async (observer, emit, ct) =>
                {
                    var result = await KvmGuestBalloon.ApplyAsync(plan, Wait, TimeSpan.FromSeconds(TimeoutSeconds), observer, ct).ConfigureAwait(false);
                    if (PassThru) emit(result);
                });
            });
        }
    }
}
