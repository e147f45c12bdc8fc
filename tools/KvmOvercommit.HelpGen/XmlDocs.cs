using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace KvmOvercommit.HelpGen;

/// <summary>An example from an &lt;example&gt; doc comment: the code and the paragraphs that explain it.</summary>
public sealed record DocExample(string Code, IReadOnlyList<string> Remarks);

/// <summary>The compiler's XML documentation files (KvmOvercommit.xml, KvmOvercommit.Engine.xml), read as help text.</summary>
public sealed partial class XmlDocs
{
    readonly Dictionary<string, XElement> _members = new(StringComparer.Ordinal);

    /// <summary>Loads every documentation file given; missing files are ignored.</summary>
    public XmlDocs(params string[] xmlFiles)
    {
        foreach (var f in xmlFiles.Where(File.Exists))
            foreach (var m in XDocument.Load(f).Descendants("member"))
                if (m.Attribute("name")?.Value is { } name) _members[name] = m;
    }

    /// <summary>The doc files beside an assembly and beside its neighbours.</summary>
    public static XmlDocs ForAssembly(string assemblyPath)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(assemblyPath))!;
        return new XmlDocs(Directory.GetFiles(dir, "KvmOvercommit*.xml").Where(f => !f.EndsWith("-Help.xml", StringComparison.OrdinalIgnoreCase)).ToArray());
    }

    static string Id(Type t) => (t.FullName ?? t.Name).Replace('+', '.');

    /// <summary>The member element of a type, following &lt;inheritdoc/&gt; to base types.</summary>
    public XElement? ForType(Type t)
    {
        for (var cur = t; cur is not null; cur = cur.BaseType)
        {
            if (_members.TryGetValue("T:" + Id(cur), out var e) && e.Element("inheritdoc") is null) return e;
        }
        return null;
    }

    /// <summary>The member element of a property, following &lt;inheritdoc/&gt; and overrides to base types.</summary>
    public XElement? ForProperty(PropertyInfo p)
    {
        for (var cur = p.DeclaringType; cur is not null; cur = cur.BaseType)
        {
            if (_members.TryGetValue($"P:{Id(cur)}.{p.Name}", out var e) && e.Element("inheritdoc") is null) return e;
        }
        return null;
    }

    /// <summary>The summary of a type as one paragraph.</summary>
    public string Summary(Type t) => string.Join(" ", Paragraphs(ForType(t)?.Element("summary")));

    /// <summary>The summary of a property as one paragraph.</summary>
    public string Summary(PropertyInfo p) => string.Join(" ", Paragraphs(ForProperty(p)?.Element("summary")));

    /// <summary>The remarks of a type, one string per paragraph.</summary>
    public IReadOnlyList<string> Remarks(Type t) => Paragraphs(ForType(t)?.Element("remarks"));

    /// <summary>Every &lt;example&gt; of a type.</summary>
    public IReadOnlyList<DocExample> Examples(Type t)
    {
        var member = ForType(t);
        if (member is null) return [];
        var list = new List<DocExample>();
        foreach (var ex in member.Elements("example"))
        {
            var code = string.Join("\n", ex.Elements("code").Select(c => Dedent(c.Value)));
            var remarks = new List<string>();
            foreach (var node in ex.Nodes())
            {
                if (node is XElement { Name.LocalName: "code" }) continue;
                if (node is XElement { Name.LocalName: "para" } para) remarks.Add(Inline(para));
                else if (node is XText text && !string.IsNullOrWhiteSpace(text.Value)) remarks.Add(Squash(text.Value));
            }
            list.Add(new DocExample(code, remarks.Where(r => r.Length > 0).ToList()));
        }
        return list;
    }

    /// <summary>A doc element as paragraphs: &lt;para&gt; elements split, inline tags flattened to text.</summary>
    public static IReadOnlyList<string> Paragraphs(XElement? element)
    {
        if (element is null) return [];
        var paras = new List<string>();
        var current = new StringBuilder();
        void Flush()
        {
            var s = Squash(current.ToString());
            if (s.Length > 0) paras.Add(s);
            current.Clear();
        }
        foreach (var node in element.Nodes())
        {
            if (node is XElement { Name.LocalName: "para" } para) { Flush(); current.Append(Inline(para)); Flush(); }
            else if (node is XElement { Name.LocalName: "code" } code) { Flush(); paras.Add(Dedent(code.Value)); }
            else current.Append(node is XElement e ? Inline(e) : (node as XText)?.Value);
        }
        Flush();
        return paras;
    }

    static string Inline(XElement e)
    {
        var sb = new StringBuilder();
        foreach (var node in e.Nodes())
        {
            switch (node)
            {
                case XText t: sb.Append(t.Value); break;
                case XElement { Name.LocalName: "see" or "seealso" } see:
                    var cref = see.Attribute("cref")?.Value ?? see.Attribute("langword")?.Value ?? see.Attribute("href")?.Value ?? "";
                    sb.Append(see.Value.Length > 0 ? see.Value : cref[(cref.LastIndexOfAny([':', '.']) + 1)..]);
                    break;
                case XElement { Name.LocalName: "paramref" or "typeparamref" } r: sb.Append(r.Attribute("name")?.Value); break;
                case XElement child: sb.Append(' ').Append(Inline(child)).Append(' '); break;
            }
        }
        return Squash(sb.ToString());
    }

    static string Squash(string s) => Spaces().Replace(s, " ").Trim();

    /// <summary>Removes the common indentation of a code block and blank lines around it.</summary>
    static string Dedent(string code)
    {
        var lines = code.Replace("\r", "").Split('\n').ToList();
        while (lines.Count > 0 && lines[0].Trim().Length == 0) lines.RemoveAt(0);
        while (lines.Count > 0 && lines[^1].Trim().Length == 0) lines.RemoveAt(lines.Count - 1);
        var indent = lines.Where(l => l.Trim().Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return string.Join("\n", lines.Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()));
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Spaces();
}
