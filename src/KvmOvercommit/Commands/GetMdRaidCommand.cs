using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.HostInfo;

namespace KvmOvercommit.Commands;

/// <summary>Lists the host's software RAID (md) arrays from /proc/mdstat: level, state, members, health and resync progress.</summary>
/// <remarks>
/// Parses /proc/mdstat, or a saved copy given with -Path. Each array shows its members with their role numbers
/// and failed/spare/journal/write-mostly flags, the size in blocks, chunk size, superblock version, the health
/// string ([UU_]) and any resync, recovery, check or reshape with its percent, speed and estimated finish. A host
/// without the md driver has no /proc/mdstat and no arrays.
/// </remarks>
/// <example>
/// <code>Get-MdRaid</code>
/// <para>The arrays of this host (the blog's `cat /proc/mdstat`).</para>
/// </example>
/// <example>
/// <code>Get-MdRaid -Path ./mdstat.saved | Where-Object Degraded</code>
/// <para>Degraded arrays in a saved copy.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "MdRaid")]
[OutputType(typeof(MdRaidArray))]
public sealed class GetMdRaidCommand : KvmCmdlet
{
    /// <summary>Array names (md126); wildcards allowed. Default: all.</summary>
    [Parameter(Position = 0)]
    [SupportsWildcards]
    public string[]? Name { get; set; }

    /// <summary>A saved copy of /proc/mdstat to read instead of the live one.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath", "LiteralPath")]
    public string? Path { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        Invoke(() =>
        {
            var path = Path is null ? null : ResolvePath(Path);
            foreach (var a in new HostInfoReader().ReadMdRaid(path, SyncObserver))
                if (Wildcard.MatchesAny(Name, a.Name)) WriteObject(a);
        });
    }
}
