using System.Management.Automation;
using KvmOvercommit.Engine.Ksm;

namespace KvmOvercommit.Commands;

/// <summary>Reads every KSM counter and setting of /sys/kernel/mm/ksm as one typed object.</summary>
/// <remarks>
/// Replaces the shell loop `for i in $(ls /sys/kernel/mm/ksm); do echo -n "$i: "; cat /sys/kernel/mm/ksm/$i; done`.
/// Every file becomes a typed property (Run, PagesToScan, PagesSharing, AdvisorMode, …); files the running kernel
/// lacks are $null and files this module does not know yet appear in Other. Derived properties show what the
/// counters mean: SavedBytes ((pages_sharing + ksm_zero_pages) × page size), SharedBytes, SharingRatio
/// (pages_sharing / pages_shared), UnsharedRatio and MiB versions. The files are read in-process in one pass.
/// Pipe the result into Set-KsmTuning to restore every setting later.
/// </remarks>
/// <example>
/// <code>Get-KsmStat</code>
/// <para>Shows whether KSM runs, how fast it scans and how much memory it saves.</para>
/// </example>
/// <example>
/// <code>$saved = Get-KsmStat; Set-KsmTuning -Profile Aggressive -Run Merge; …; $saved | Set-KsmTuning</code>
/// <para>Saves every setting, tunes KSM aggressively, and restores the saved settings afterwards.</para>
/// </example>
/// <example>
/// <code>Invoke-Command -HostName h1,h2 { Get-KsmStat } | Sort-Object SavedBytes</code>
/// <para>Compares KSM savings across hosts over SSH remoting.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "KsmStat")]
[OutputType(typeof(KsmStat))]
public sealed class GetKsmStatCommand : KvmCmdlet
{
    /// <inheritdoc />
    protected override void ProcessRecord() => Invoke(() => WriteObject(KsmStatReader.Read()), terminating: true);
}
