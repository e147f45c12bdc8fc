using System.Collections;
using System.Management.Automation;

namespace KvmOvercommit;

/// <summary>
/// Guards a path parameter that binds from the pipeline by value: only strings and files (FileInfo/DirectoryInfo, whose
/// FullName is taken) bind. Any other object is refused instead of being turned into its ToString() — so
/// `Get-Process -Id $PID | New-QcowOverlay -BackingPath base.qcow2` is a binding error, not a file called
/// "System.Diagnostics.Process (dotnet)".
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class PathInputTransformationAttribute : ArgumentTransformationAttribute
{
    /// <summary>Strings pass, files become their FullName, arrays are checked element by element; anything else is refused.</summary>
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        var value = inputData is PSObject pso ? pso.BaseObject : inputData;
        switch (value)
        {
            case null:
            case string:
                return inputData;
            case FileSystemInfo f:
                return f.FullName;
            case PathInfo pi:
                return pi.ProviderPath; // Resolve-Path, Get-Location
            case var own when OwnPath(inputData) is { } path:
                return path; // this module's own objects (a QcowImage from New-QcowOverlay), also Deserialized
            case IEnumerable e:
                var list = new List<string>();
                foreach (var item in e)
                {
                    if (Transform(engineIntrinsics, item) is not { } one) continue;
                    list.Add(one is PSObject p ? p.BaseObject.ToString()! : one.ToString()!);
                }
                return list.ToArray();
            default:
                throw new ArgumentTransformationMetadataException(
                    $"A path must be a string or a file, not a {value.GetType().FullName} ('{value}'). Pipe file names or Get-ChildItem output, or pass the path property (e.g. -Path $x.Path).");
        }
    }

    /// <summary>The Path of one of this module's objects (its type, or its Deserialized type, is KvmOvercommit.*), else null.</summary>
    static string? OwnPath(object? input)
    {
        var pso = input as PSObject ?? (input is null ? null : PSObject.AsPSObject(input));
        if (pso is null || !pso.TypeNames.Any(t => t.StartsWith("KvmOvercommit.", StringComparison.Ordinal) || t.StartsWith("Deserialized.KvmOvercommit.", StringComparison.Ordinal))) return null;
        return pso.Properties["Path"]?.Value as string;
    }
}
