using System.Text;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// QEMU's own option-value syntax (QemuOpts / keyval): <c>key=value,key=value</c> where a literal comma in a value is
/// written as <c>,,</c>, and the first element may omit its key (the "implied" key, e.g. <c>-m 4G</c> is <c>size=4G</c>,
/// <c>-device virtio-balloon-pci,id=b</c> is <c>driver=virtio-balloon-pci</c>).
/// </summary>
public static class QemuOptionString
{
    /// <summary>
    /// Parses one option value into its key/value pairs, in order. An element without '=' is the implied key's value
    /// when it comes first and <paramref name="impliedKey"/> is given, otherwise a flag (<c>server</c> → <c>server=on</c>).
    /// </summary>
    public static List<KeyValuePair<string, string>> Parse(string value, string? impliedKey = null)
    {
        var result = new List<KeyValuePair<string, string>>();
        int i = 0;
        bool first = true;
        while (i < value.Length)
        {
            // Key: up to '=' or ','.
            int keyStart = i;
            while (i < value.Length && value[i] != '=' && value[i] != ',') i++;
            string key;
            string val;
            if (i < value.Length && value[i] == '=')
            {
                key = value.Substring(keyStart, i - keyStart);
                i++;
                val = ReadValue(value, ref i);
            }
            else if (first && impliedKey is not null)
            {
                i = keyStart;
                key = impliedKey;
                val = ReadValue(value, ref i);
            }
            else
            {
                key = value.Substring(keyStart, i - keyStart);
                val = "on";
                if (i < value.Length) i++; // skip ','
            }
            if (key.Length > 0) result.Add(new(key, val));
            first = false;
        }
        return result;
    }

    /// <summary>The value of <paramref name="key"/> (the last one wins, as in QEMU), or null.</summary>
    public static string? Get(IReadOnlyList<KeyValuePair<string, string>> pairs, string key)
    {
        for (int i = pairs.Count - 1; i >= 0; i--)
            if (string.Equals(pairs[i].Key, key, StringComparison.Ordinal)) return pairs[i].Value;
        return null;
    }

    /// <summary>Escapes a value for QEMU's comma syntax (every ',' doubled).</summary>
    public static string Escape(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    /// <summary>Reads a value up to an unescaped ',' (consumed), turning ',,' into ','.</summary>
    static string ReadValue(string s, ref int i)
    {
        var sb = new StringBuilder();
        while (i < s.Length)
        {
            char c = s[i];
            if (c == ',')
            {
                if (i + 1 < s.Length && s[i + 1] == ',') { sb.Append(','); i += 2; continue; }
                i++;
                return sb.ToString();
            }
            sb.Append(c);
            i++;
        }
        return sb.ToString();
    }

    /// <summary>
    /// Parses a QEMU size: plain numbers for <c>-m</c> are MiB; suffixes K, M, G, T (powers of 1024, also with B, e.g. "4GB").
    /// Returns bytes, or null when the text is not a size.
    /// </summary>
    public static long? ParseMemorySize(string text, long defaultUnit = Units.MiB)
    {
        text = text.Trim();
        if (text.Length == 0) return null;
        int end = 0;
        while (end < text.Length && (char.IsAsciiDigit(text[end]) || text[end] == '.')) end++;
        if (end == 0) return null;
        if (!double.TryParse(text.AsSpan(0, end), System.Globalization.NumberStyles.AllowDecimalPoint, System.Globalization.CultureInfo.InvariantCulture, out var number)) return null;
        string suffix = text.Substring(end).Trim().ToUpperInvariant();
        if (suffix.EndsWith('B') && suffix.Length == 2) suffix = suffix[..1];
        long unit = suffix switch
        {
            "" => defaultUnit,
            "B" => 1,
            "K" => 1024,
            "M" => Units.MiB,
            "G" => Units.GiB,
            "T" => 1024 * Units.GiB,
            "P" => 1024L * 1024 * Units.GiB,
            _ => -1,
        };
        if (unit < 0) return null;
        return (long)Math.Round(number * unit);
    }
}
