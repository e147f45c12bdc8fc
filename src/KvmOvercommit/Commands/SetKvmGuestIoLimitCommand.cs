using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Limits a guest's disk I/O: IOPS and bytes per second per drive, with bursts and throttle groups.</summary>
/// <remarks>
/// Sends QMP block_set_io_throttle for each selected drive (the id is the drive's qdev path from query-block), then
/// reads the limits back. Only the limits given change; 0 removes a limit (and its burst). A total limit (-Iops, -Bps)
/// replaces the read/write limits of its kind and the other way round, since QEMU refuses both at once. A burst
/// (-IopsMax …) allows that rate for -IopsMaxLength seconds and needs its limit. -Group puts the drive in a throttle
/// group: every drive in the group shares one set of limits (QEMU's groups live in one QEMU process, so they span one
/// guest's drives, not several guests), and setting limits on one
/// member changes them for all. -PassThru returns the limits as they were before, so they can be piped back to
/// restore them. -WhatIf reads the current limits and changes nothing.
/// </remarks>
/// <example>
/// <code>Set-KvmGuestIoLimit -Name 'win7-*' -Iops 50</code>
/// <para>Caps every win7 guest's disk at 50 IOPS: the blog's 5000 IOPS budget shared by 100 guests.</para>
/// </example>
/// <example>
/// <code>$old = Set-KvmGuestIoLimit web1 -Iops 200 -IopsMax 2000 -IopsMaxLength 10 -PassThru; $old | Set-KvmGuestIoLimit</code>
/// <para>200 IOPS with bursts of 2000 for 10 s, then back to what it had.</para>
/// </example>
/// <example>
/// <code>Get-KvmGuest 'web*' | Set-KvmGuestIoLimit -Iops 500 -Group web -WhatIf</code>
/// <para>Shows the limit each web guest would get: 500 IOPS shared by all its drives (throttle group web).</para>
/// </example>
[Cmdlet(VerbsCommon.Set, "KvmGuestIoLimit", SupportsShouldProcess = true)]
[OutputType(typeof(KvmGuestIoLimit))]
public sealed class SetKvmGuestIoLimitCommand : KvmCmdlet
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

    /// <summary>Drives to limit (e.g. virtio0); wildcards allowed. Default: every drive.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Drive { get; set; }

    /// <summary>Total I/O operations per second; 0 removes the limit.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? Iops { get; set; }
    /// <summary>Read operations per second; 0 removes the limit.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? IopsRead { get; set; }
    /// <summary>Write operations per second; 0 removes the limit.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? IopsWrite { get; set; }
    /// <summary>Total bytes per second; 0 removes the limit.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? Bps { get; set; }
    /// <summary>Read bytes per second; 0 removes the limit.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? BpsRead { get; set; }
    /// <summary>Write bytes per second; 0 removes the limit.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? BpsWrite { get; set; }
    /// <summary>Burst of total operations per second (at least -Iops), for -IopsMaxLength seconds.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? IopsMax { get; set; }
    /// <summary>Burst of read operations per second.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? IopsReadMax { get; set; }
    /// <summary>Burst of write operations per second.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? IopsWriteMax { get; set; }
    /// <summary>Burst of total bytes per second.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? BpsMax { get; set; }
    /// <summary>Burst of read bytes per second.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? BpsReadMax { get; set; }
    /// <summary>Burst of write bytes per second.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? BpsWriteMax { get; set; }
    /// <summary>Seconds the -IopsMax burst may last.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? IopsMaxLength { get; set; }
    /// <summary>Seconds the -IopsReadMax burst may last.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? IopsReadMaxLength { get; set; }
    /// <summary>Seconds the -IopsWriteMax burst may last.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? IopsWriteMaxLength { get; set; }
    /// <summary>Seconds the -BpsMax burst may last.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? BpsMaxLength { get; set; }
    /// <summary>Seconds the -BpsReadMax burst may last.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? BpsReadMaxLength { get; set; }
    /// <summary>Seconds the -BpsWriteMax burst may last.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? BpsWriteMaxLength { get; set; }
    /// <summary>Bytes counted as one operation for the IOPS limits (a larger request counts as several); 0: each request is one.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)] [ValidateRange(0, long.MaxValue)] public long? IopsSize { get; set; }

    /// <summary>The throttle group: the guest's drives in one group share its limits (a group lives in one QEMU process).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [AllowNull, AllowEmptyString]
    public string? Group { get; set; }

    /// <summary>Return the limits as they were before the change (pipe them back to Set-KvmGuestIoLimit to restore).</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (Name is null && Id is null)
            ThrowEngineError(new KvmOcException(ErrorKind.InvalidArgument, "GuestNotSpecified", "Name the guests (-Name, -Id, or pipe Get-KvmGuest).", null));
        var change = new IoLimitChange
        {
            Iops = Iops, IopsRead = IopsRead, IopsWrite = IopsWrite, Bps = Bps, BpsRead = BpsRead, BpsWrite = BpsWrite,
            IopsMax = IopsMax, IopsReadMax = IopsReadMax, IopsWriteMax = IopsWriteMax, BpsMax = BpsMax, BpsReadMax = BpsReadMax, BpsWriteMax = BpsWriteMax,
            IopsMaxLength = IopsMaxLength, IopsReadMaxLength = IopsReadMaxLength, IopsWriteMaxLength = IopsWriteMaxLength,
            BpsMaxLength = BpsMaxLength, BpsReadMaxLength = BpsReadMaxLength, BpsWriteMaxLength = BpsWriteMaxLength,
            IopsSize = IopsSize, Group = string.IsNullOrEmpty(Group) ? null : Group,
        };
        if (change.IsEmpty)
            ThrowEngineError(new KvmOcException(ErrorKind.InvalidArgument, "IoLimitNotSpecified", "Give at least one limit to set (-Iops, -Bps, … or -Group); 0 removes a limit.", null));
        var guests = new List<KvmGuest>();
        Invoke(() => guests = new KvmGuestInventory().Find(Name, Id, WriteEngineError));
        foreach (var guest in guests)
        {
            var plans = new List<IoLimitPlan>();
            InvokeAsync(async (observer, emit, ct) => plans = await KvmGuestIoLimits.PlanAsync(guest, Drive, change, ct).ConfigureAwait(false));
            foreach (var plan in plans)
            {
                if (!ShouldProcess(plan.Target, plan.Action)) continue;
                InvokeAsync(async (observer, emit, ct) =>
                {
                    await KvmGuestIoLimits.ApplyAsync(plan, observer, ct).ConfigureAwait(false);
                    if (PassThru) emit(plan.Current);
                });
            }
        }
    }
}
