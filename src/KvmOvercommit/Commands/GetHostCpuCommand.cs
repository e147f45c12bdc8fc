using System.Management.Automation;
using KvmOvercommit.Engine.HostInfo;

namespace KvmOvercommit.Commands;

/// <summary>Shows the host's CPUs (sockets, cores, threads, model, virtualization support), load averages and the vCPUs of running guests.</summary>
/// <remarks>
/// Reads /proc/cpuinfo and /proc/loadavg, checks for vmx/svm and /dev/kvm, and sums -smp over the running QEMU
/// processes, so VcpuRatio shows how far the CPUs are overcommitted.
/// </remarks>
/// <example>
/// <code>Get-HostCpu</code>
/// <para>Logical CPUs, sockets, cores, threads per core, model, load and the guests' vCPU sum (the blog's `cat /proc/cpuinfo` and `top`).</para>
/// </example>
/// <example>
/// <code>(Get-HostCpu).VirtualizationSupported</code>
/// <para>True when the CPU has VT-x or AMD-V.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "HostCpu")]
[OutputType(typeof(HostCpu))]
public sealed class GetHostCpuCommand : KvmCmdlet
{
    /// <inheritdoc />
    protected override void ProcessRecord() => Invoke(() => WriteObject(new HostInfoReader().ReadCpu()), terminating: true);
}
