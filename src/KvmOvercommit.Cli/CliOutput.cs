using System.Collections;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using KvmOvercommit.Engine;

namespace KvmOvercommit.Cli;

/// <summary>Human tables and machine JSON. JSON property names are exactly the .NET (PowerShell) property names.</summary>
public static class CliOutput
{
    // Output objects are the engine's types, and the engine assembly is a trimmer root of kvmoc's native build (see
    // KvmOvercommit.Cli.csproj), so their public properties are all there to be read.
    const string Rooted = "Output types are KvmOvercommit.Engine types; that assembly is a TrimmerRootAssembly.";

    /// <summary>The engine's generated JSON metadata (no reflection: kvmoc is compiled ahead of time).</summary>
    public static JsonSerializerOptions JsonOptions => OutputJson.Indented;

    /// <summary>
    /// A result as JSON, by its run-time type. A type without generated metadata (not listed in OutputJson) is a
    /// bug in kvmoc, not the user's: it says so rather than printing half an object.
    /// </summary>
    public static string ToJson(object value, bool indented = true)
    {
        var options = indented ? OutputJson.Indented : OutputJson.Compact;
        if (!options.TryGetTypeInfo(value.GetType(), out var info))
            throw new InvalidOperationException($"kvmoc has no JSON metadata for {value.GetType().FullName}: add it to KvmOvercommit.Engine.OutputJson.");
        return JsonSerializer.Serialize(value, info);
    }

    /// <summary>A table of the named columns (all scalar properties when none are named).</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2075:UnrecognizedReflectionPattern", Justification = Rooted)]
    [UnconditionalSuppressMessage("Trimming", "IL2070:UnrecognizedReflectionPattern", Justification = Rooted)]
    public static void WriteTable(TextWriter w, IReadOnlyList<object> items, string[] columns, bool header = true)
    {
        if (items.Count == 0) return;
        var type = items[0].GetType();
        var props = (columns.Length > 0 ? columns.Select(c => type.GetProperty(c) ?? throw new ArgumentException($"No property {c} on {type.Name}")) : ScalarProperties(type)).ToArray();
        var cells = items.Select(i => props.Select(p => Format(p.GetValue(i))).ToArray()).ToList();
        var widths = props.Select((p, c) => Math.Max(p.Name.Length, cells.Max(r => r[c].Length))).ToArray();
        if (header)
        {
            w.WriteLine(string.Join("  ", props.Select((p, c) => Pad(p.Name, widths[c], IsNumeric(p.PropertyType)))).TrimEnd());
            w.WriteLine(string.Join("  ", widths.Select(x => new string('-', x))));
        }
        foreach (var row in cells)
            w.WriteLine(string.Join("  ", row.Select((v, c) => Pad(v, widths[c], IsNumeric(props[c].PropertyType)))).TrimEnd());
    }

    /// <summary>One object as "Name : value" lines, like Format-List.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2075:UnrecognizedReflectionPattern", Justification = Rooted)]
    [UnconditionalSuppressMessage("Trimming", "IL2070:UnrecognizedReflectionPattern", Justification = Rooted)]
    public static void WriteList(TextWriter w, object item)
    {
        var props = item.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetIndexParameters().Length == 0).ToArray();
        int width = props.Max(p => p.Name.Length);
        foreach (var p in props)
            w.WriteLine($"{p.Name.PadRight(width)} : {Format(p.GetValue(item))}");
    }

    [UnconditionalSuppressMessage("Trimming", "IL2075:UnrecognizedReflectionPattern", Justification = Rooted)]
    [UnconditionalSuppressMessage("Trimming", "IL2070:UnrecognizedReflectionPattern", Justification = Rooted)]
    static IEnumerable<PropertyInfo> ScalarProperties(Type t) => t.GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.GetIndexParameters().Length == 0 && IsScalar(p.PropertyType));

    static bool IsScalar(Type t)
    {
        t = Nullable.GetUnderlyingType(t) ?? t;
        return t.IsPrimitive || t.IsEnum || t == typeof(string) || t == typeof(decimal) || t == typeof(DateTimeOffset) || t == typeof(DateTime) || t == typeof(TimeSpan);
    }

    static bool IsNumeric(Type t)
    {
        t = Nullable.GetUnderlyingType(t) ?? t;
        return t.IsPrimitive && t != typeof(bool) && t != typeof(char) || t == typeof(decimal);
    }

    static string Pad(string s, int width, bool right) => right ? s.PadLeft(width) : s.PadRight(width);

    public static string Format(object? v) => v switch
    {
        null => "",
        string s => s,
        double d => d.ToString("0.##", CultureInfo.InvariantCulture),
        float f => f.ToString("0.##", CultureInfo.InvariantCulture),
        DateTimeOffset dto => dto.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
        TimeSpan ts => ts.ToString(@"d\.hh\:mm\:ss", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        IDictionary dict => string.Join(", ", dict.Keys.Cast<object>().Select(k => $"{k}={Format(dict[k])}")),
        IEnumerable e => string.Join(", ", e.Cast<object?>().Select(Format)),
        _ => v.ToString() ?? "",
    };
}
