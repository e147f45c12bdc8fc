using System.Management.Automation;
using KvmOvercommit.Engine.HostInfo;

namespace KvmOvercommit.Commands;

/// <summary>Shows the host's memory as free and /proc/meminfo do, with KSM's saving and the memory promised to running guests.</summary>
/// <remarks>
/// Reads /proc/meminfo (kernels without MemAvailable get the MemFree + Buffers + Cached estimate, flagged by
/// AvailableEstimated), /sys/kernel/mm/ksm for the saving, and sums -m over the running QEMU processes.
/// UsedMinusBuffersCacheBytes is the old `free` "-/+ buffers/cache" used figure the blog reads.
/// </remarks>
/// <example>
/// <code>Get-HostMemory</code>
/// <para>Total, available and used memory, KSM's saving and the guests' committed memory (the blog's `free -m`).</para>
/// </example>
/// <example>
/// <code>Invoke-Command -HostName kvm1,kvm2 { Get-HostMemory } | Sort-Object AvailableBytes</code>
/// <para>Compares hosts over PowerShell remoting.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "HostMemory")]
[OutputType(typeof(HostMemory))]
public sealed class GetHostMemoryCommand : KvmCmdlet
{
    /// <inheritdoc />
    protected override void ProcessRecord() => Invoke(() => WriteObject(new HostInfoReader().ReadMemory()), terminating: true);
}
