using System.Globalization;
using System.Management.Automation;

namespace KvmOvercommit;

/// <summary>
/// Lets a DateTimeOffset parameter bind what remoting and CliXml make of a DateTimeOffset: a property bag
/// (Deserialized.System.DateTimeOffset, with UtcDateTime) or its string form; a DateTime is taken as what it says
/// (local or UTC). So `Invoke-Command { Get-DnsmasqLease } | ConvertTo-AnsibleInventory` binds Expiry.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class DateTimeOffsetTransformationAttribute : ArgumentTransformationAttribute
{
    /// <summary>Converts the bound value to a DateTimeOffset where it can; anything else is left to PowerShell's binder.</summary>
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        var value = inputData is PSObject pso ? pso.BaseObject : inputData;
        switch (value)
        {
            case null: return null;
            case DateTimeOffset: return value;
            case DateTime dt: return new DateTimeOffset(dt.Kind == DateTimeKind.Unspecified ? DateTime.SpecifyKind(dt, DateTimeKind.Utc) : dt.ToUniversalTime());
            case string s when DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var parsed): return parsed.ToUniversalTime();
            case string s when DateTimeOffset.TryParse(s, CultureInfo.CurrentCulture, DateTimeStyles.AssumeUniversal, out var parsed): return parsed.ToUniversalTime();
        }
        if (inputData is PSObject bag && bag.Properties["UtcDateTime"]?.Value is { } utc)
        {
            var inner = utc is PSObject p ? p.BaseObject : utc;
            if (inner is DateTime u) return new DateTimeOffset(DateTime.SpecifyKind(u, DateTimeKind.Utc));
        }
        return inputData;
    }
}
