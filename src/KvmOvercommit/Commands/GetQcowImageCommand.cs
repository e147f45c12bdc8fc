using System.Management.Automation;
using KvmOvercommit.Engine.Qcow;

namespace KvmOvercommit.Commands;

/// <summary>Reads qcow2 (and raw) disk images: format, sizes, backing chain, feature bits and whether QEMU holds them.</summary>
/// <remarks>
/// Reads the qcow2 header natively (versions 2 and 3, the backing-format and feature-name-table extensions), resolves
/// the backing chain the way QEMU does (a relative backing name is relative to the overlay's folder) down to the base,
/// and probes QEMU's image lock (InUse). Raw and other formats are recognised by their magic. A corrupt or truncated
/// header is an InvalidData error naming the file and the field; a missing backing file or a loop in the chain is an
/// error too. The same as `qemu-img info --backing-chain -U`, without starting a process per image.
/// </remarks>
/// <example>
/// <code>Get-QcowImage win7-*.qcow2</code>
/// <para>Every overlay of the fleet with its virtual size, allocated size, backing file and whether a guest uses it.</para>
/// </example>
/// <example>
/// <code>Get-ChildItem /var/lib/images -Filter *.qcow2 | Get-QcowImage | Where-Object InUse -eq $false</code>
/// <para>Images no running QEMU holds (FullName binds to -Path).</para>
/// </example>
/// <example>
/// <code>(Get-QcowImage win7-1.qcow2).BackingChain</code>
/// <para>Every image below an overlay, down to the base.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "QcowImage", DefaultParameterSetName = "Path")]
[OutputType(typeof(QcowImage))]
public sealed class GetQcowImageCommand : KvmCmdlet
{
    /// <summary>Image files to read (wildcards allowed; a path that names an existing file is taken literally); binds strings and files from the pipeline, and Path by property name.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Path")]
    [SupportsWildcards]
    [PathInputTransformation]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>Image files to read, taken literally (no wildcards: `[`, `]`, `*`, `?` are part of the name); binds PSPath and FullName from the pipeline (Get-ChildItem).</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "LiteralPath")]
    [Alias("PSPath", "FullName", "LP")]
    public string[] LiteralPath { get; set; } = Array.Empty<string>();

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        var files = ParameterSetName == "LiteralPath" ? LiteralPath.Select(ResolvePath) : Path.SelectMany(ResolveWildcardPath);
        foreach (var file in files)
            Invoke(() => WriteObject(QcowReader.Read(file, SyncObserver)));
    }
}
