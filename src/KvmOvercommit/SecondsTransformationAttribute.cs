using System.Globalization;
using System.Management.Automation;

namespace KvmOvercommit;

/// <summary>
/// Lets a parameter of seconds (a double) also take a TimeSpan or Auto: `-StaggerSeconds 1.5`,
/// `-StaggerSeconds (New-TimeSpan -Minutes 1)` and `-StaggerSeconds Auto` all work. Auto binds to
/// <see cref="Engine.Validation.AutoStagger"/> (the parameter stays a double); numbers and numeric strings pass through
/// to PowerShell's own conversion; any other text is refused with what is accepted. The range is the engine's rule
/// (<see cref="Engine.Validation"/>), checked by the cmdlet.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class SecondsTransformationAttribute : ArgumentTransformationAttribute
{
    /// <summary>Converts a TimeSpan to its total seconds and "Auto" to the Auto value; anything else passes through.</summary>
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        var value = inputData is PSObject pso ? pso.BaseObject : inputData;
        if (value is TimeSpan t) return t.TotalSeconds;
        if (value is string s)
        {
            var text = s.Trim();
            if (text.Equals("Auto", StringComparison.OrdinalIgnoreCase)) return Engine.Validation.AutoStagger;
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out _) && !double.TryParse(text, NumberStyles.Float, CultureInfo.CurrentCulture, out _))
                throw new ArgumentTransformationMetadataException(
                    $"'{s}' is not a number of seconds, a TimeSpan or Auto. Give seconds from 0 to 86400 (1.5 is allowed), a TimeSpan (New-TimeSpan -Minutes 1), or Auto: the first guest's boot IOPS and the device's IOPS capacity decide the stagger.");
        }
        return inputData;
    }
}
