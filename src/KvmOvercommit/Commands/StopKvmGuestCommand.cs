using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Stops QEMU guests: ACPI power down over QMP, then QMP quit; SIGKILL only with -Force.</summary>
/// <remarks>
/// Presses the guest's ACPI power button (QMP system_powerdown) and waits -TimeoutSeconds for the guest to power off;
/// a guest that does not react is ended with QMP quit. -TurnOff quits at once. A guest without a reachable QMP socket
/// (e.g. started by hand) gets SIGTERM, on which QEMU quits. Only -Force sends SIGKILL, when QEMU does not exit after
/// quit. The guest's run directory is removed; its disks are never touched. Guests are chosen by -Name (wildcards) or
/// piped from Get-KvmGuest or Start-KvmGuest.
/// </remarks>
/// <example>
/// <code>Stop-KvmGuest -Name 'win7-*'</code>
/// <para>Shuts every win7 guest down gracefully, quitting those that do not power off within 30 s.</para>
/// </example>
/// <example>
/// <code>Get-KvmGuest | Stop-KvmGuest -TurnOff -Force -PassThru</code>
/// <para>Turns every guest off at once, killing any QEMU that does not quit, and shows what was stopped.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Stop, "KvmGuest", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = "Name")]
[OutputType(typeof(KvmGuest))]
public sealed class StopKvmGuestCommand : KvmCmdlet
{
    /// <summary>Names of the guests to stop; wildcards allowed.</summary>
    [Parameter(ParameterSetName = "Name", Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>Guests to stop, as Get-KvmGuest or Start-KvmGuest return them.</summary>
    [Parameter(ParameterSetName = "InputObject", Mandatory = true, ValueFromPipeline = true)]
    [ValidateNotNull]
    public KvmGuest[]? InputObject { get; set; }

    /// <summary>Skip the ACPI power down: QMP quit at once.</summary>
    [Parameter]
    public SwitchParameter TurnOff { get; set; }

    /// <summary>SIGKILL a QEMU that does not exit after quit.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Seconds to wait for the guest to power itself off before QMP quit (from 1 to 3600; -TurnOff quits at once).</summary>
    [Parameter]
    public int TimeoutSeconds { get; set; } = 30;

    /// <summary>The folder holding run directories (to also clean those of guests that are gone); default as Start-KvmGuest.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? RunDirectory { get; set; }

    /// <summary>Return each stopped guest.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <inheritdoc />
    protected override void BeginProcessing() => Validate(() => Validation.TimeoutSeconds(TimeoutSeconds));

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        var targets = new List<KvmGuest>();
        if (InputObject is not null) targets.AddRange(InputObject);
        else
        {
            Invoke(() =>
            {
                var found = GuestStopper.Find(Name, RunDirectory is null ? null : ResolvePath(RunDirectory));
                foreach (var n in Name!)
                    if (!Wildcard.ContainsWildcard(n) && !found.Any(g => new Wildcard(n).IsMatch(g.Name)))
                        WriteEngineError(new KvmOcException(ErrorKind.NotFound, "GuestNotFound", $"No guest named '{n}' is running.", n, "Get-KvmGuest lists the guests that run."));
                targets.AddRange(found);
            });
        }
        var options = new GuestStopOptions { TurnOff = TurnOff, Force = Force, Timeout = TimeSpan.FromSeconds(TimeoutSeconds) };
        foreach (var guest in targets)
        {
            var target = guest.Id > 0 ? $"{guest.Name} (pid {guest.Id})" : guest.Name;
            if (!ShouldProcess(target, GuestStopper.Describe(guest, options))) continue;
            InvokeAsync(async (observer, emit, ct) =>
            {
                var (stopped, _) = await GuestStopper.StopAsync(guest, options, observer, ct).ConfigureAwait(false);
                if (PassThru) emit(stopped);
            });
        }
    }
}
