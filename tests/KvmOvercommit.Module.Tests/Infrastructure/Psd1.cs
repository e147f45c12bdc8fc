using System.Text;

namespace KvmOvercommit.Module.Tests.Infrastructure;

/// <summary>
/// Reads a PowerShell data file (.psd1) without a PowerShell runtime: the restricted language subset manifests use —
/// @{ } hashtables, @( ) arrays, comma lists, '…' and "…" strings, numbers, $true/$false/$null, # and &lt;# #&gt; comments.
/// Hashtables become case-insensitive dictionaries, arrays lists of values.
/// </summary>
public sealed class Psd1
{
    readonly string _s;
    int _i;

    Psd1(string text) => _s = text;

    /// <summary>Parses the text; throws FormatException with the line number on anything it does not understand.</summary>
    public static Dictionary<string, object?> Parse(string text)
    {
        var p = new Psd1(text);
        p.Skip();
        var value = p.Value();
        p.Skip();
        if (p._i < p._s.Length) throw p.Error("unexpected text after the top-level hashtable");
        return value as Dictionary<string, object?> ?? throw p.Error("the file is not a hashtable");
    }

    /// <summary>A value as a list of strings: a single string becomes a one-item list, null an empty one.</summary>
    public static List<string> Strings(object? value) => value switch
    {
        null => [],
        string s => [s],
        List<object?> l => l.Select(v => v?.ToString() ?? "").ToList(),
        _ => [value.ToString()!],
    };

    FormatException Error(string what) => new($"psd1 line {_s[..Math.Min(_i, _s.Length)].Count(c => c == '\n') + 1}: {what}");

    char Peek(int k = 0) => _i + k < _s.Length ? _s[_i + k] : '\0';

    /// <summary>Skips white space (newlines included) and comments.</summary>
    void Skip(bool newlines = true)
    {
        while (_i < _s.Length)
        {
            var c = _s[_i];
            if (c == '\n' && !newlines) return;
            if (char.IsWhiteSpace(c)) { _i++; continue; }
            if (c == '`' && (Peek(1) == '\n' || Peek(1) == '\r')) { _i += 2; continue; }
            if (c == '<' && Peek(1) == '#')
            {
                var end = _s.IndexOf("#>", _i + 2, StringComparison.Ordinal);
                if (end < 0) throw Error("unterminated block comment");
                _i = end + 2;
                continue;
            }
            if (c == '#') { while (_i < _s.Length && _s[_i] != '\n') _i++; continue; }
            return;
        }
    }

    object? Value()
    {
        Skip();
        var first = Single();
        Skip(newlines: false);
        if (Peek() != ',') return first;
        var list = new List<object?> { first };
        while (Peek() == ',')
        {
            _i++;
            Skip();
            list.Add(Single());
            Skip(newlines: false);
        }
        return list;
    }

    object? Single()
    {
        var c = Peek();
        if (c == '@' && Peek(1) == '{') { _i += 2; return Hashtable(); }
        if (c == '@' && Peek(1) == '(') { _i += 2; return Array(); }
        if (c == '(') { _i++; var v = Value(); Skip(); Expect(')'); return v; }
        if (c == '\'') return SingleQuoted();
        if (c == '"') return DoubleQuoted();
        if (c == '$')
        {
            var word = Word(1);
            return word.ToLowerInvariant() switch
            {
                "true" => true,
                "false" => false,
                "null" => null,
                _ => throw Error($"variable ${word} is not allowed in a data file"),
            };
        }
        if (char.IsDigit(c) || c == '-' || c == '.')
        {
            var start = _i;
            while (_i < _s.Length && (char.IsLetterOrDigit(_s[_i]) || _s[_i] is '.' or '-' or '+')) _i++;
            return _s[start.._i];
        }
        throw Error($"unexpected '{c}'");
    }

    string Word(int skip)
    {
        _i += skip;
        var start = _i;
        while (_i < _s.Length && (char.IsLetterOrDigit(_s[_i]) || _s[_i] is '_' or ':')) _i++;
        return _s[start.._i];
    }

    void Expect(char c)
    {
        if (Peek() != c) throw Error($"expected '{c}'");
        _i++;
    }

    List<object?> Array()
    {
        var list = new List<object?>();
        while (true)
        {
            Skip();
            if (Peek() == ')') { _i++; return list; }
            if (Peek() == ';') { _i++; continue; }
            if (_i >= _s.Length) throw Error("unterminated @( )");
            var v = Value();
            if (v is List<object?> l) list.AddRange(l); else list.Add(v);
        }
    }

    Dictionary<string, object?> Hashtable()
    {
        var d = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
        while (true)
        {
            Skip();
            if (Peek() == '}') { _i++; return d; }
            if (Peek() == ';') { _i++; continue; }
            if (_i >= _s.Length) throw Error("unterminated @{ }");
            string key = Peek() switch
            {
                '\'' => SingleQuoted(),
                '"' => DoubleQuoted(),
                _ => Word(0),
            };
            if (key.Length == 0) throw Error($"expected a key, found '{Peek()}'");
            Skip(newlines: false);
            Expect('=');
            if (d.ContainsKey(key)) throw Error($"duplicate key '{key}'");
            d[key] = Value();
        }
    }

    string SingleQuoted()
    {
        _i++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_i >= _s.Length) throw Error("unterminated string");
            var c = _s[_i++];
            if (c == '\'' || c == '‘' || c == '’')
            {
                if (Peek() == '\'') { sb.Append('\''); _i++; continue; }
                return sb.ToString();
            }
            sb.Append(c);
        }
    }

    string DoubleQuoted()
    {
        _i++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_i >= _s.Length) throw Error("unterminated string");
            var c = _s[_i++];
            if (c == '`' && _i < _s.Length) { sb.Append(_s[_i++]); continue; }
            if (c == '"')
            {
                if (Peek() == '"') { sb.Append('"'); _i++; continue; }
                return sb.ToString();
            }
            if (c == '$' && (char.IsLetter(Peek()) || Peek() == '(' || Peek() == '{')) throw Error("expandable strings are not allowed in a data file");
            sb.Append(c);
        }
    }
}
