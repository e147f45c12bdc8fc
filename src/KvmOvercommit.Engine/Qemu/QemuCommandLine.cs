using System.Text;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// QEMU's option syntax: "key=value,key=value" where a comma inside a value is written twice. Escaping for building
/// command lines, parsing for reading them back from /proc/&lt;pid&gt;/cmdline.
/// </summary>
public static class QemuCommandLine
{
    /// <summary>Escapes a value for QEMU's comma-separated option syntax (',' → ',,').</summary>
    public static string Escape(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    /// <summary>
    /// Parses "a=1,b=x,,y,flag" into key/value pairs (",," is a literal comma). A first item without '=' gets
    /// <paramref name="impliedKey"/> (QEMU's implied key, e.g. "guest" for -name, "file" for -drive) or, without one,
    /// the value "on".
    /// </summary>
    public static Dictionary<string, string> Parse(string optionValue, string? impliedKey = null)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var items = new List<string>();
        var sb = new StringBuilder();
        for (int i = 0; i < optionValue.Length; i++)
        {
            char c = optionValue[i];
            if (c == ',')
            {
                if (i + 1 < optionValue.Length && optionValue[i + 1] == ',') { sb.Append(','); i++; continue; }
                items.Add(sb.ToString());
                sb.Clear();
                continue;
            }
            sb.Append(c);
        }
        items.Add(sb.ToString());
        for (int i = 0; i < items.Count; i++)
        {
            var item = items[i];
            if (item.Length == 0) continue;
            int eq = item.IndexOf('=');
            if (eq < 0)
            {
                if (i == 0 && impliedKey is not null) result[impliedKey] = item;
                else result[item] = "on";
            }
            else result[item[..eq]] = item[(eq + 1)..];
        }
        return result;
    }

    /// <summary>The values of every occurrence of <paramref name="option"/> (e.g. "-drive") in an argument vector.</summary>
    public static IEnumerable<string> Values(IReadOnlyList<string> argv, string option)
    {
        for (int i = 0; i < argv.Count - 1; i++)
        {
            var a = argv[i];
            if (a == option || (a.StartsWith("--", StringComparison.Ordinal) && a[1..] == option)) yield return argv[i + 1];
        }
    }

    /// <summary>The guest name from -name (guest=… or the implied first item), or null.</summary>
    public static string? GuestName(IReadOnlyList<string> argv)
    {
        var v = Values(argv, "-name").LastOrDefault();
        return v is null ? null : Parse(v, "guest").GetValueOrDefault("guest");
    }

    /// <summary>The unix socket path of the first QMP monitor (-qmp unix:PATH,… or -qmp-pretty), or null.</summary>
    public static string? QmpSocket(IReadOnlyList<string> argv)
    {
        foreach (var v in Values(argv, "-qmp").Concat(Values(argv, "-qmp-pretty")))
        {
            if (!v.StartsWith("unix:", StringComparison.Ordinal)) continue;
            return Parse(v["unix:".Length..], "path").GetValueOrDefault("path");
        }
        // -chardev socket,id=X,path=P … -mon chardev=X,mode=control
        var monitors = Values(argv, "-mon").Select(m => Parse(m, "chardev")).Where(m => m.GetValueOrDefault("mode") == "control").Select(m => m.GetValueOrDefault("chardev")).ToHashSet();
        foreach (var c in Values(argv, "-chardev").Select(c => Parse(c, "backend")))
            if (c.GetValueOrDefault("backend") == "socket" && c.TryGetValue("id", out var id) && monitors.Contains(id) && c.TryGetValue("path", out var path))
                return path;
        return null;
    }

    /// <summary>The VNC display number from -vnc (":3", "127.0.0.1:3", "unix:…" → null), or null.</summary>
    public static int? VncDisplay(IReadOnlyList<string> argv)
    {
        var v = Values(argv, "-vnc").LastOrDefault();
        if (v is null) return null;
        var addr = Parse(v, "vnc").GetValueOrDefault("vnc") ?? "";
        if (addr.StartsWith("unix:", StringComparison.Ordinal) || addr == "none") return null;
        int colon = addr.LastIndexOf(':');
        return colon >= 0 && int.TryParse(addr[(colon + 1)..], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var d) ? d : null;
    }
}
