using System.Text.RegularExpressions;

namespace KvmOvercommit.Engine;

/// <summary>PowerShell-style wildcard matching (*, ?, [abc], backtick escapes), case-insensitive, without a PowerShell reference.</summary>
public sealed class Wildcard
{
    readonly Regex _regex;

    public Wildcard(string pattern)
    {
        Pattern = pattern;
        _regex = new Regex("^" + ToRegex(pattern) + "$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Singleline);
    }

    public string Pattern { get; }

    public bool IsMatch(string? value) => value is not null && _regex.IsMatch(value);

    public static bool ContainsWildcard(string pattern)
    {
        for (int i = 0; i < pattern.Length; i++)
        {
            if (pattern[i] == '`') { i++; continue; }
            if (pattern[i] is '*' or '?' or '[') return true;
        }
        return false;
    }

    /// <summary>True when any of the patterns matches; an empty or null set matches everything.</summary>
    public static bool MatchesAny(IEnumerable<string>? patterns, string? value)
    {
        if (patterns is null) return true;
        bool any = false;
        foreach (var p in patterns)
        {
            any = true;
            if (new Wildcard(p).IsMatch(value)) return true;
        }
        return !any;
    }

    static string ToRegex(string pattern)
    {
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            switch (c)
            {
                case '`' when i + 1 < pattern.Length: sb.Append(Regex.Escape(pattern[++i].ToString())); break;
                case '*': sb.Append(".*"); break;
                case '?': sb.Append('.'); break;
                case '[':
                    int end = pattern.IndexOf(']', i + 1);
                    if (end < 0) { sb.Append(@"\["); break; }
                    sb.Append('[').Append(pattern.Substring(i + 1, end - i - 1).Replace(@"\", @"\\")).Append(']');
                    i = end;
                    break;
                default: sb.Append(Regex.Escape(c.ToString())); break;
            }
        }
        return sb.ToString();
    }
}
