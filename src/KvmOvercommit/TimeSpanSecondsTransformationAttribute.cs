using System.Globalization;
using System.Management.Automation;

namespace KvmOvercommit;

/// <summary>
/// Lets a TimeSpan parameter take seconds as a number (`-Duration 30`, `-Duration 2.5`) besides a TimeSpan or its
/// string form (`-Duration 00:05:00`, `(New-TimeSpan -Minutes 5)`). Without it PowerShell would read `30` as 30 ticks.
/// A numeric string ("30") counts as seconds too; anything else is left to PowerShell's binder.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class TimeSpanSecondsTransformationAttribute : ArgumentTransformationAttribute
{
    /// <summary>Converts numbers (seconds) to a TimeSpan; TimeSpans and other strings pass through.</summary>
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData) => ToTimeSpan(inputData is PSObject pso ? pso.BaseObject : inputData) ?? inputData;

    /// <summary>The conversion itself (null: not a number of seconds).</summary>
    public static TimeSpan? ToTimeSpan(object? value)
    {
        try
        {
            return value switch
            {
                TimeSpan t => t,
                int or long or short or byte or sbyte or ushort or uint or ulong or float or double or decimal =>
                    TimeSpan.FromSeconds(Convert.ToDouble(value, CultureInfo.InvariantCulture)),
                string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var secs) => TimeSpan.FromSeconds(secs),
                _ => null,
            };
        }
        catch (OverflowException e)
        {
            throw new ArgumentTransformationMetadataException($"'{value}' seconds is out of range for a duration.", e);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentTransformationMetadataException($"'{value}' is not a valid number of seconds.", e);
        }
    }
}
