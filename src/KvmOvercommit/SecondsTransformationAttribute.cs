using System.Management.Automation;

namespace KvmOvercommit;

/// <summary>
/// Lets a parameter of seconds (a double) also take a TimeSpan: `-StaggerSeconds 1.5` and
/// `-StaggerSeconds (New-TimeSpan -Minutes 1)` both work. Numbers and strings pass through to PowerShell's own
/// conversion; the range is the engine's rule (<see cref="Engine.Validation"/>), checked by the cmdlet.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class SecondsTransformationAttribute : ArgumentTransformationAttribute
{
    /// <summary>Converts a TimeSpan to its total seconds; anything else passes through.</summary>
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData) =>
        (inputData is PSObject pso ? pso.BaseObject : inputData) is TimeSpan t ? t.TotalSeconds : inputData;
}
