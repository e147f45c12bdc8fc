using System.Xml.Linq;

namespace KvmOvercommit.HelpGen;

/// <summary>
/// Writes MAML command help (the &lt;module&gt;.dll-Help.xml that Get-Help reads for a binary module) from the cmdlet
/// metadata and the XML doc comments: class summary → synopsis, remarks → description, examples → examples,
/// parameter property summary → parameter description.
/// </summary>
public static class MamlWriter
{
    public static readonly XNamespace Msh = "http://msh";
    public static readonly XNamespace Maml = "http://schemas.microsoft.com/maml/2004/10";
    public static readonly XNamespace Command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
    public static readonly XNamespace Dev = "http://schemas.microsoft.com/maml/dev/2004/10";

    const string WhatIfHelp = "Shows what would happen if the cmdlet runs. The cmdlet is not run.";
    const string ConfirmHelp = "Prompts you for confirmation before running the cmdlet.";

    /// <summary>The whole help document for every cmdlet.</summary>
    public static XDocument Build(IEnumerable<CmdletModel> cmdlets, XmlDocs docs) =>
        new(new XDeclaration("1.0", "utf-8", null),
            new XElement(Msh + "helpItems", new XAttribute("schema", "maml"),
                new XAttribute(XNamespace.Xmlns + "maml", Maml),
                new XAttribute(XNamespace.Xmlns + "command", Command),
                new XAttribute(XNamespace.Xmlns + "dev", Dev),
                cmdlets.Select(c => BuildCommand(c, docs))));

    static XElement Paras(XName name, IEnumerable<string> paragraphs)
    {
        var list = paragraphs.ToList();
        if (list.Count == 0) list.Add("");
        return new XElement(name, list.Select(p => new XElement(Maml + "para", p)));
    }

    /// <summary>A type as PowerShell shows it: String, Int32[], Nullable removed.</summary>
    public static string ShortName(Type t)
    {
        var u = Nullable.GetUnderlyingType(t);
        if (u is not null) return ShortName(u);
        if (t.IsArray) return ShortName(t.GetElementType()!) + "[]";
        if (t.IsGenericType) return t.Name[..t.Name.IndexOf('`')] + "[" + string.Join(",", t.GetGenericArguments().Select(ShortName)) + "]";
        return t.Name;
    }

    static string FullName(Type t)
    {
        var u = Nullable.GetUnderlyingType(t);
        if (u is not null) return FullName(u);
        if (t.IsArray) return FullName(t.GetElementType()!) + "[]";
        return t.IsGenericType ? t.Namespace + "." + ShortName(t) : t.FullName ?? t.Name;
    }

    static string PipelineInput(bool byValue, bool byName) => (byValue, byName) switch
    {
        (true, true) => "True (ByValue, ByPropertyName)",
        (true, false) => "True (ByValue)",
        (false, true) => "True (ByPropertyName)",
        _ => "False",
    };

    static XElement Parameter(ParameterModel p, ParameterSetModel? set, XmlDocs docs)
    {
        var byValue = set?.ValueFromPipeline ?? p.ByValue;
        var byName = set?.ValueFromPipelineByPropertyName ?? p.ByPropertyName;
        var mandatory = set?.Mandatory ?? p.Sets.All(s => s.Mandatory);
        var position = set is not null ? set.Position : p.Sets.Select(s => s.Position).FirstOrDefault(x => x is not null);
        var description = docs.Summary(p.Property);
        if (description.Length == 0) description = p.Sets.Select(s => s.HelpMessage).FirstOrDefault(h => !string.IsNullOrEmpty(h)) ?? "";
        var e = new XElement(Command + "parameter",
            new XAttribute("required", mandatory ? "true" : "false"),
            new XAttribute("variableLength", p.Type.IsArray ? "true" : "false"),
            new XAttribute("globbing", p.SupportsWildcards ? "true" : "false"),
            new XAttribute("pipelineInput", PipelineInput(byValue, byName)),
            new XAttribute("position", position?.ToString() ?? "named"),
            new XAttribute("aliases", p.Aliases.Count == 0 ? "none" : string.Join(", ", p.Aliases)),
            new XElement(Maml + "name", p.Name),
            Paras(Maml + "description", [description]));
        if (p.ValidateSet.Count > 0)
            e.Add(new XElement(Command + "parameterValueGroup", p.ValidateSet.Select(v =>
                new XElement(Command + "parameterValue", new XAttribute("required", "false"), new XAttribute("variableLength", "false"), v))));
        if (!p.IsSwitch)
            e.Add(new XElement(Command + "parameterValue", new XAttribute("required", "true"), new XAttribute("variableLength", p.Type.IsArray ? "true" : "false"), ShortName(p.Type)));
        e.Add(new XElement(Dev + "type", new XElement(Maml + "name", FullName(p.Type)), new XElement(Maml + "uri")),
            new XElement(Dev + "defaultValue", p.IsSwitch ? "False" : "None"));
        return e;
    }

    static XElement Common(string name, string help) =>
        new(Command + "parameter", new XAttribute("required", "false"), new XAttribute("variableLength", "false"),
            new XAttribute("globbing", "false"), new XAttribute("pipelineInput", "False"), new XAttribute("position", "named"),
            new XAttribute("aliases", name == "WhatIf" ? "wi" : "cf"),
            new XElement(Maml + "name", name), Paras(Maml + "description", [help]),
            new XElement(Dev + "type", new XElement(Maml + "name", "System.Management.Automation.SwitchParameter"), new XElement(Maml + "uri")),
            new XElement(Dev + "defaultValue", "False"));

    static IEnumerable<(ParameterModel P, ParameterSetModel S)> Ordered(IEnumerable<(ParameterModel P, ParameterSetModel S)> ps) =>
        ps.OrderBy(x => x.S.Position ?? int.MaxValue).ThenByDescending(x => x.S.Mandatory).ThenBy(x => x.P.IsSwitch);

    static XElement BuildCommand(CmdletModel c, XmlDocs docs)
    {
        var synopsis = docs.Summary(c.Type);
        var remarks = docs.Remarks(c.Type);
        var sets = c.ParameterSets.Count == 0 ? [null] : c.ParameterSets.Cast<string?>().ToList();
        var syntax = new XElement(Command + "syntax", sets.Select(set =>
        {
            var item = new XElement(Command + "syntaxItem", new XElement(Maml + "name", c.Name),
                Ordered(c.InSet(set ?? ModuleInspector.AllParameterSets)).Select(x => Parameter(x.P, x.S, docs)));
            if (c.SupportsShouldProcess) item.Add(Common("WhatIf", WhatIfHelp), Common("Confirm", ConfirmHelp));
            return item;
        }));
        var parameters = new XElement(Command + "parameters", c.Parameters.OrderBy(p => p.Name, StringComparer.OrdinalIgnoreCase).Select(p => Parameter(p, null, docs)));
        if (c.SupportsShouldProcess) parameters.Add(Common("WhatIf", WhatIfHelp), Common("Confirm", ConfirmHelp));

        var inputs = c.Parameters.Where(p => p.ByValue || p.ByPropertyName)
            .Select(p => p.ByValue ? FullName(p.Type) : $"{FullName(p.Type)} (as property {p.Name})")
            .Distinct().ToList();
        var examples = docs.Examples(c.Type);
        return new XElement(Command + "command",
            new XElement(Command + "details",
                new XElement(Command + "name", c.Name),
                new XElement(Command + "verb", c.Verb),
                new XElement(Command + "noun", c.Noun),
                Paras(Maml + "description", [synopsis])),
            Paras(Maml + "description", remarks.Count > 0 ? remarks : [synopsis]),
            syntax,
            parameters,
            new XElement(Command + "inputTypes", (inputs.Count == 0 ? ["None"] : inputs).Select(i =>
                new XElement(Command + "inputType", new XElement(Dev + "type", new XElement(Maml + "name", i)), Paras(Maml + "description", [])))),
            new XElement(Command + "returnValues", c.OutputTypes.Select(o => o.Name).Distinct().Select(o =>
                new XElement(Command + "returnValue", new XElement(Dev + "type", new XElement(Maml + "name", o)), Paras(Maml + "description", [])))),
            new XElement(Command + "examples", examples.Select((ex, i) =>
                new XElement(Command + "example",
                    new XElement(Maml + "title", $"-------------------------- Example {i + 1} --------------------------"),
                    new XElement(Dev + "code", ex.Code),
                    Paras(Dev + "remarks", ex.Remarks)))),
            new XElement(Maml + "relatedLinks",
                new XElement(Maml + "navigationLink", new XElement(Maml + "linkText", "about_KvmOvercommit"), new XElement(Maml + "uri"))));
    }
}
