using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;

namespace KvmOvercommit.Commands;

/// <summary>Shows how much memory KSM saves per process, from /proc/&lt;pid&gt;/ksm_stat.</summary>
/// <remarks>
/// Reads ksm_stat and ksm_merging_pages of every process (the blog's ksm_stat.sh): merged pages, zero pages, the
/// kernel's per-process profit, whether the process is mergeable. Lists only processes KSM knows about unless -All;
/// sorted by profit, highest first. Works on kernels whose ksm_stat uses `key value` or `key: value` lines, and
/// on older kernels without some lines (those properties are $null).
/// </remarks>
/// <example>
/// <code>Get-KsmProcess</code>
/// <para>Every process with KSM activity, biggest saver first.</para>
/// </example>
/// <example>
/// <code>Get-KsmProcess -Name qemu*, kvm | Measure-Object SavedBytes -Sum</code>
/// <para>What KSM saves across all QEMU guests.</para>
/// </example>
/// <example>
/// <code>Get-Process qemu-system-x86_64 | Get-KsmProcess</code>
/// <para>Binds the Id of each process from the pipeline.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "KsmProcess", DefaultParameterSetName = "Name")]
[OutputType(typeof(KsmProcessStat))]
public sealed class GetKsmProcessCommand : KvmCmdlet
{
    /// <summary>Process names to show (wildcards allowed).</summary>
    [Parameter(Position = 0, ParameterSetName = "Name")]
    [SupportsWildcards]
    public string[]? Name { get; set; }

    /// <summary>Process ids to show (binds the Id of Get-Process output from the pipeline).</summary>
    [Parameter(Mandatory = true, ParameterSetName = "Id", ValueFromPipelineByPropertyName = true)]
    [Alias("ProcessId", "Pid")]
    public int[]? Id { get; set; }

    /// <summary>Also list processes without KSM activity.</summary>
    [Parameter]
    public SwitchParameter All { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord() => Invoke(() =>
    {
        var list = KsmProcessReader.Query(null, Id, Name, All);
        if (Id is not null)
            foreach (var missing in Id.Except(list.Select(p => p.Id)))
                WriteEngineError(new KvmOcException(ErrorKind.NotFound, "KsmProcessNotFound", $"No process with id {missing}.", missing, "The process may have exited."));
        if (Name is not null)
            foreach (var n in Name.Where(n => !Wildcard.ContainsWildcard(n) && !list.Any(p => new Wildcard(n).IsMatch(p.Name))))
                WriteEngineError(new KvmOcException(ErrorKind.NotFound, "KsmProcessNotFound", $"No process named '{n}' with KSM activity.", n, "Add -All to include processes KSM does not know."));
        foreach (var p in list) WriteObject(p);
    });
}
