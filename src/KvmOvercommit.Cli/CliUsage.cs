using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;
using KvmOvercommit.Engine;

namespace KvmOvercommit.Cli;

/// <summary>
/// Usage errors, decided before any command runs (exit code 2, nothing done): every token that starts with '-' and is
/// not an option of the command — also where System.CommandLine would take it as a positional path or name
/// (`qcow overlay … --what-iff data.qcow2`, `guest stop --what-iff g1`) — unless it comes after `--`; unknown
/// subcommands and stray arguments; and System.CommandLine's own parse errors (a missing required option, a value
/// that is not a number). Each is one stderr line starting with an error id, with "Did you mean …?" when an option
/// or subcommand is one or two letters away.
/// </summary>
public static class CliUsage
{
    /// <summary>The usage errors of <paramref name="parse"/>; empty when the command may run.</summary>
    public static List<KvmOcException> Check(ParseResult parse)
    {
        var errors = new List<KvmOcException>();
        var command = parse.CommandResult.Command;
        string path = CommandPath(parse.CommandResult);
        string hint = $"'{path} --help' lists its options; a path or name that starts with '-' goes after '--' ({path} … -- -name).";

        // Tokens after `--` are arguments whatever they look like.
        var tokens = parse.Tokens;
        int dd = -1;
        for (int i = 0; i < tokens.Count; i++) if (tokens[i].Type == TokenType.DoubleDash) { dd = i; break; }
        var afterDoubleDash = new HashSet<Token>(ReferenceEqualityComparer.Instance);
        if (dd >= 0) for (int i = dd + 1; i < tokens.Count; i++) afterDoubleDash.Add(tokens[i]);

        var unknown = new List<string>();
        foreach (var arg in parse.CommandResult.Children.OfType<ArgumentResult>())
            foreach (var t in arg.Tokens)
                if (LooksLikeOption(t.Value) && !afterDoubleDash.Contains(t))
                    unknown.Add(t.Value);
        var unmatched = parse.UnmatchedTokens;
        foreach (var u in unmatched) if (LooksLikeOption(u)) unknown.Add(u);
        foreach (var u in unknown.Distinct(StringComparer.Ordinal))
        {
            var suggestions = Suggest(OptionPart(u), OptionNames(parse.CommandResult));
            errors.Add(new KvmOcException(ErrorKind.InvalidArgument, "UnknownOption",
                $"'{path}' has no option '{u}'; nothing was done.{DidYouMean(suggestions)}", u, hint));
        }

        foreach (var u in unmatched)
        {
            if (!LooksLikeOption(u))
            {
                var subs = Suggest(u, command.Subcommands.SelectMany(s => s.Aliases.Prepend(s.Name)));
                errors.Add(new KvmOcException(ErrorKind.InvalidArgument, command.Subcommands.Count > 0 ? "UnknownCommand" : "UnexpectedArgument",
                    command.Subcommands.Count > 0
                        ? $"'{path}' has no subcommand '{u}'; nothing was done.{DidYouMean(subs)}"
                        : $"'{path}' takes no argument '{u}'; nothing was done.{DidYouMean(subs)}",
                    u, $"'{path} --help' lists what it takes."));
            }
        }
        // System.CommandLine's own errors, except those about the tokens reported above.
        var reported = unmatched.Concat(unknown).ToList();
        foreach (var e in parse.Errors)
        {
            if (reported.Any(r => e.Message.Contains($"'{r}'", StringComparison.Ordinal))) continue;
            if (command.Subcommands.Count > 0 && command.Action is null)
            {
                if (errors.Count > 0) break; // "Required command was not provided" after an unknown subcommand says nothing new
                errors.Add(new KvmOcException(ErrorKind.InvalidArgument, "MissingCommand",
                    $"'{path}' needs a subcommand: {string.Join(", ", command.Subcommands.Where(s => !s.Hidden).Select(s => s.Name))}.", path, $"'{path} --help' says what each does."));
                break;
            }
            errors.Add(new KvmOcException(ErrorKind.InvalidArgument, "InvalidUsage", Readable(e.Message), path, $"'{path} --help' lists its options."));
        }
        return errors;
    }

    /// <summary>A token an option would look like: "-x", "--name", "--name=value"; not "-" (stdin) and not a negative number.</summary>
    static bool LooksLikeOption(string s) => s.Length > 1 && s[0] == '-' && !double.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _);

    static string OptionPart(string token)
    {
        int cut = token.IndexOfAny(new[] { '=', ':' });
        return cut > 0 ? token[..cut] : token;
    }

    /// <summary>"kvmoc qcow overlay" for the command that was parsed.</summary>
    public static string CommandPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is not null; r = r.Parent)
            if (r is CommandResult c) names.Add(c.Parent is null ? "kvmoc" : c.Command.Name);
        names.Reverse();
        return string.Join(' ', names);
    }

    /// <summary>Every option spelling the command accepts: its own, and the recursive ones of its parents (--json, --verbose, --help).</summary>
    public static IEnumerable<string> OptionNames(CommandResult result)
    {
        var names = new List<string>();
        bool self = true;
        for (SymbolResult? r = result; r is not null; r = r.Parent)
        {
            if (r is not CommandResult c) continue;
            foreach (var o in c.Command.Options)
                if (self || o.Recursive) names.AddRange(o.Aliases.Prepend(o.Name));
            self = false;
        }
        return names.Distinct(StringComparer.Ordinal);
    }

    static string DidYouMean(IReadOnlyList<string> suggestions) => suggestions.Count switch
    {
        0 => "",
        1 => $" Did you mean '{suggestions[0]}'?",
        _ => $" Did you mean one of {string.Join(", ", suggestions.Select(s => $"'{s}'"))}?",
    };

    /// <summary>The candidates one or two edits away (three for long names), or that the token is a prefix of; nearest first.</summary>
    public static IReadOnlyList<string> Suggest(string token, IEnumerable<string> candidates)
    {
        var scored = new List<(string C, int D)>();
        foreach (var c in candidates.Distinct(StringComparer.Ordinal))
        {
            int d = Distance(token, c);
            int limit = c.Length >= 12 ? 3 : 2;
            bool prefix = token.Length >= 4 && c.StartsWith(token, StringComparison.OrdinalIgnoreCase);
            if (d <= limit || prefix) scored.Add((c, prefix ? Math.Min(d, limit) : d));
        }
        return scored.OrderBy(s => s.D).ThenBy(s => s.C, StringComparer.Ordinal).Take(3).Select(s => s.C).ToList();
    }

    /// <summary>Optimal string alignment distance (Levenshtein plus swapped neighbours), case-insensitive.</summary>
    public static int Distance(string a, string b)
    {
        a = a.ToLowerInvariant(); b = b.ToLowerInvariant();
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }

    static readonly Regex TypeName = new(@"'System\.Nullable`1\[(System\.\w+)\]'|'(System\.\w+)(\[\])?'", RegexOptions.CultureInvariant);

    /// <summary>System.CommandLine's message with .NET type names said in words ("a whole number" instead of 'System.Int32').</summary>
    static string Readable(string message) => TypeName.Replace(message, m => (m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value) switch
    {
        "System.Int32" => "a whole number from -2147483648 to 2147483647",
        "System.Int64" => "a whole number from -9223372036854775808 to 9223372036854775807",
        "System.Double" => "a number",
        "System.Boolean" => "true or false",
        "System.String" => "a text",
        var other => other.Replace("System.", ""),
    }).Replace('\n', ' ').Replace('\r', ' ');
}
