using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;

namespace KvmOvercommit;

/// <summary>Lets -Run take Stop, Merge, Unmerge (and 0, 1, 2) besides the enum names Stopped, Merging, Unmerging.</summary>
public sealed class KsmRunStateTransformationAttribute : ArgumentTransformationAttribute
{
    /// <summary>Turns a word or number into a KsmRunState; anything else is passed on for PowerShell to reject.</summary>
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        var value = inputData is PSObject pso ? pso.BaseObject : inputData;
        if (value is null or KsmRunState) return value;
        try
        {
            return KsmRunStateParser.Parse(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "");
        }
        catch (KvmOcException e)
        {
            throw new ArgumentTransformationMetadataException(e.Message, e);
        }
    }
}
