using System.Reflection;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using KvmOvercommit.HelpGen;

namespace KvmOvercommit.Module.Tests.Infrastructure;

/// <summary>
/// The module's conventions as checks over a <see cref="ModuleUnderTest"/>; each returns the problems it finds
/// (empty = fine). The tests assert that the real module has none and that broken modules have the expected ones.
/// </summary>
public static partial class ModuleChecks
{
    /// <summary>PowerShell 7's approved verbs (Get-Verb).</summary>
    public static readonly HashSet<string> ApprovedVerbs = new(StringComparer.Ordinal)
    {
        // Common
        "Add", "Clear", "Close", "Copy", "Enter", "Exit", "Find", "Format", "Get", "Hide", "Join", "Lock", "Move", "New",
        "Open", "Optimize", "Pop", "Push", "Redo", "Remove", "Rename", "Reset", "Resize", "Search", "Select", "Set", "Show",
        "Skip", "Split", "Step", "Switch", "Undo", "Unlock", "Watch",
        // Communications
        "Connect", "Disconnect", "Read", "Receive", "Send", "Write",
        // Data
        "Backup", "Checkpoint", "Compare", "Compress", "Convert", "ConvertFrom", "ConvertTo", "Dismount", "Edit", "Expand",
        "Export", "Group", "Import", "Initialize", "Limit", "Merge", "Mount", "Out", "Publish", "Restore", "Save", "Sync",
        "Unpublish", "Update",
        // Diagnostic
        "Debug", "Measure", "Ping", "Repair", "Resolve", "Test", "Trace",
        // Lifecycle
        "Approve", "Assert", "Build", "Complete", "Confirm", "Deny", "Deploy", "Disable", "Enable", "Install", "Invoke",
        "Register", "Request", "Restart", "Resume", "Start", "Stop", "Submit", "Suspend", "Uninstall", "Unregister", "Wait",
        // Other
        "Use",
        // Security
        "Block", "Grant", "Protect", "Revoke", "Unblock", "Unprotect",
    };

    /// <summary>Verbs that change state: their cmdlets must support -WhatIf/-Confirm.</summary>
    public static readonly HashSet<string> StateChangingVerbs = new(StringComparer.Ordinal)
    {
        "Set", "Start", "Stop", "New", "Remove", "Invoke", "Restart", "Enable", "Disable", "Clear", "Reset", "Install",
        "Uninstall", "Update", "Register", "Unregister", "Suspend", "Resume", "Move", "Rename", "Copy", "Mount", "Dismount",
        "Restore", "Repair", "Optimize", "Resize", "Merge", "Publish", "Unpublish", "Lock", "Unlock", "Grant", "Revoke",
    };

    /// <summary>Verbs whose cmdlets must offer -PassThru.</summary>
    public static readonly HashSet<string> PassThruVerbs = new(StringComparer.Ordinal) { "Set", "Start", "Stop" };

    /// <summary>Commands of PowerShell 7 itself, that README may use and that no module cmdlet may shadow.</summary>
    public static readonly HashSet<string> BuiltInCommands = new(StringComparer.OrdinalIgnoreCase)
    {
        "Add-Content", "Add-Member", "Add-Type", "Clear-Content", "Clear-Host", "Clear-Item", "Clear-Variable", "Compare-Object",
        "ConvertFrom-Csv", "ConvertFrom-Json", "ConvertFrom-StringData", "ConvertTo-Csv", "ConvertTo-Html", "ConvertTo-Json",
        "ConvertTo-Xml", "Copy-Item", "Enter-PSSession", "Exit-PSSession", "Export-Clixml", "Export-Csv", "Export-ModuleMember",
        "ForEach-Object", "Format-Custom", "Format-List", "Format-Table", "Format-Wide", "Get-Alias", "Get-ChildItem",
        "Get-Command", "Get-Content", "Get-Credential", "Get-Culture", "Get-Date", "Get-Error", "Get-Event", "Get-FileHash",
        "Get-Help", "Get-History", "Get-Host", "Get-InstalledModule", "Get-Item", "Get-ItemProperty", "Get-Job", "Get-Location",
        "Get-Member", "Get-Module", "Get-Process", "Get-PSDrive", "Get-PSSession", "Get-Random", "Get-Service", "Get-TimeZone",
        "Get-Unique", "Get-Uptime", "Get-Variable", "Get-Verb", "Group-Object", "Import-Clixml", "Import-Csv", "Import-Module",
        "Install-Module", "Install-PSResource", "Invoke-Command", "Invoke-Expression", "Invoke-Item", "Invoke-Pester",
        "Invoke-RestMethod", "Invoke-WebRequest", "Join-Path", "Measure-Command", "Measure-Object", "Move-Item", "New-Item",
        "New-Object", "New-PSSession", "New-TimeSpan", "New-Variable", "Out-File", "Out-GridView", "Out-Host", "Out-Null",
        "Out-String", "Pop-Location", "Push-Location", "Read-Host", "Receive-Job", "Remove-Item", "Remove-Job", "Remove-Module",
        "Remove-PSSession", "Remove-Variable", "Rename-Item", "Resolve-Path", "Save-Help", "Select-Object", "Select-String",
        "Select-Xml", "Set-Content", "Set-Item", "Set-Location", "Set-StrictMode", "Set-Variable", "Sort-Object", "Split-Path",
        "Start-Job", "Start-Process", "Start-Sleep", "Stop-Job", "Stop-Process", "Tee-Object", "Test-Connection", "Test-Json",
        "Test-Path", "Update-Help", "Update-Module", "Wait-Job", "Wait-Process", "Where-Object", "Write-Debug", "Write-Error",
        "Write-Host", "Write-Information", "Write-Output", "Write-Progress", "Write-Verbose", "Write-Warning",
    };

    /// <summary>Nouns of PowerShell's own cmdlets: a module noun equal to one of these clashes with them.</summary>
    public static readonly HashSet<string> BuiltInNouns = new(BuiltInCommands.Select(c => c[(c.IndexOf('-') + 1)..]), StringComparer.OrdinalIgnoreCase);

    /// <summary>Last words of a noun that end in 's' but are singular.</summary>
    static readonly HashSet<string> SingularS = new(StringComparer.OrdinalIgnoreCase) { "Iops", "Status", "Alias", "Analysis", "Bus", "Series" };

    static readonly string[] Deserialized = ["Deserialized."];

    // ---------------------------------------------------------------- cmdlets

    public static IEnumerable<string> Discovery(ModuleUnderTest m, string? commandsDir)
    {
        foreach (var misfit in m.Inspector.Misfits) yield return misfit;
        foreach (var c in m.Cmdlets)
            if (c.Type.Name != $"{c.Verb}{c.Noun}Command") yield return $"{c.Name}: class {c.Type.Name} should be named {c.Verb}{c.Noun}Command";
        if (commandsDir is null || !Directory.Exists(commandsDir)) yield break;
        var classes = m.Cmdlets.Select(c => c.Type.Name).ToHashSet();
        foreach (var f in Directory.GetFiles(commandsDir, "*Command.cs", SearchOption.AllDirectories))
        {
            var name = Path.GetFileNameWithoutExtension(f);
            if (!classes.Contains(name)) yield return $"{Path.GetFileName(f)}: no cmdlet class {name} found in the built module";
        }
    }

    static IEnumerable<string> Words(string pascal) => WordsRegex().Matches(pascal).Select(x => x.Value);

    public static IEnumerable<string> Naming(ModuleUnderTest m)
    {
        foreach (var c in m.Cmdlets)
        {
            if (!ApprovedVerbs.Contains(c.Verb)) yield return $"{c.Name}: '{c.Verb}' is not an approved verb";
            if (BuiltInCommands.Contains(c.Name)) yield return $"{c.Name}: clashes with PowerShell's own {c.Name}";
            else if (BuiltInNouns.Contains(c.Noun)) yield return $"{c.Name}: the noun '{c.Noun}' clashes with PowerShell's own cmdlets";
            if (!PascalNoun().IsMatch(c.Noun)) yield return $"{c.Name}: the noun must be PascalCase letters and digits";
            var words = Words(c.Noun).ToList();
            if (words.Count < 2) yield return $"{c.Name}: the noun '{c.Noun}' needs a product/area prefix (e.g. Ksm{c.Noun}, Qcow{c.Noun})";
            var last = words.LastOrDefault() ?? c.Noun;
            if (last.Length > 2 && last.EndsWith('s') && !last.EndsWith("ss") && !SingularS.Contains(last))
                yield return $"{c.Name}: the noun '{c.Noun}' looks plural; nouns are singular";
        }
        foreach (var dup in m.Cmdlets.GroupBy(c => c.Name, StringComparer.OrdinalIgnoreCase).Where(g => g.Count() > 1))
            yield return $"{dup.Key}: defined by {dup.Count()} classes";
    }

    public static IEnumerable<string> Contracts(ModuleUnderTest m)
    {
        foreach (var c in m.Cmdlets)
        {
            if (c.OutputTypes.Count == 0) yield return $"{c.Name}: no [OutputType]";
            foreach (var o in c.OutputTypes)
            {
                if (o.Type is null) yield return $"{c.Name}: [OutputType] names '{o.Name}', which is not a type of the module or engine";
                else if (o.Type.FullName is "System.Object" or "System.Management.Automation.PSObject")
                    yield return $"{c.Name}: [OutputType({o.Type.Name})] says nothing; name the real type";
            }
            if (StateChangingVerbs.Contains(c.Verb) && !c.SupportsShouldProcess)
                yield return $"{c.Name}: '{c.Verb}' changes state, so the cmdlet needs SupportsShouldProcess = true";
            if (PassThruVerbs.Contains(c.Verb) && !c.Parameters.Any(p => p.Name == "PassThru" && p.IsSwitch))
                yield return $"{c.Name}: {c.Verb} cmdlets need a -PassThru switch";
            if (c.ConfirmImpact == "High" && !c.SupportsShouldProcess)
                yield return $"{c.Name}: ConfirmImpact High without SupportsShouldProcess";
            foreach (var p in c.Parameters)
            {
                if (p.Name is "WhatIf" or "Confirm" or "Verbose" or "Debug" or "ErrorAction" or "OutVariable")
                    yield return $"{c.Name}: -{p.Name} is a common parameter and must not be declared";
                var names = p.Names.ToList();
                foreach (var other in c.Parameters.Where(o => o != p))
                    foreach (var clash in other.Names.Intersect(names, StringComparer.OrdinalIgnoreCase))
                        if (string.CompareOrdinal(p.Name, other.Name) < 0) yield return $"{c.Name}: -{p.Name} and -{other.Name} both answer to '{clash}'";
                if (p.Sets.Count(s => s.Position is not null) > 0)
                    foreach (var set in p.Sets.Where(s => s.Position is not null))
                        foreach (var o in c.Parameters.Where(o => o != p && string.CompareOrdinal(p.Name, o.Name) < 0))
                            if (o.Sets.Any(s => s.Position == set.Position && (s.SetName == set.SetName || s.SetName == ModuleInspector.AllParameterSets || set.SetName == ModuleInspector.AllParameterSets)))
                                yield return $"{c.Name}: -{p.Name} and -{o.Name} share position {set.Position}";
            }
        }
    }

    // ---------------------------------------------------------------- manifest

    public static IEnumerable<string> Manifest(ModuleUnderTest m)
    {
        var d = m.Manifest;
        string? Str(string key) => d.GetValueOrDefault(key) as string;
        if (Str("RootModule") != "KvmOvercommit.dll") yield return $"RootModule is '{Str("RootModule")}', not 'KvmOvercommit.dll'";
        if (Str("PowerShellVersion") != "7.4") yield return $"PowerShellVersion is '{Str("PowerShellVersion")}', not '7.4'";
        var editions = Psd1.Strings(d.GetValueOrDefault("CompatiblePSEditions"));
        if (editions.Count != 1 || editions[0] != "Core") yield return $"CompatiblePSEditions is @({string.Join(", ", editions)}), not @('Core')";
        if (!Guid.TryParse(Str("GUID"), out _)) yield return "GUID is missing or not a GUID";
        if (string.IsNullOrWhiteSpace(Str("Description"))) yield return "Description is empty";
        var version = Str("ModuleVersion");
        var built = m.Inspector.Module.GetName().Version;
        if (version is null || !Version.TryParse(version, out var v)) yield return "ModuleVersion is missing or not a version";
        else if (built is not null && (v.Major, v.Minor, Math.Max(v.Build, 0)) != (built.Major, built.Minor, Math.Max(built.Build, 0)))
            yield return $"ModuleVersion {version} differs from the assembly version {built} (Directory.Build.props <Version>)";
        foreach (var key in new[] { "FormatsToProcess", "TypesToProcess" })
        {
            var files = Psd1.Strings(d.GetValueOrDefault(key));
            if (files.Count == 0) yield return $"{key} is empty";
            foreach (var f in files.Where(f => !File.Exists(Path.Combine(m.ManifestDir, f)))) yield return $"{key} names {f}, which does not exist";
        }
        foreach (var key in new[] { "FunctionsToExport", "VariablesToExport", "AliasesToExport" })
        {
            if (!d.TryGetValue(key, out var value)) yield return $"{key} is missing (omitting it exports everything)";
            else if (Psd1.Strings(value).Count > 0) yield return $"{key} must be @() in a binary module, not {string.Join(", ", Psd1.Strings(value))}";
        }
        if (!d.TryGetValue("CmdletsToExport", out var exportsValue)) yield return "CmdletsToExport is missing (omitting it exports everything)";
        var exports = Psd1.Strings(exportsValue);
        if (exports.Contains("*")) yield return "CmdletsToExport must list the cmdlets, not '*'";
        foreach (var missing in m.Cmdlets.Select(c => c.Name).Except(exports, StringComparer.OrdinalIgnoreCase))
            yield return $"CmdletsToExport lacks {missing}";
        foreach (var extra in exports.Except(m.Cmdlets.Select(c => c.Name), StringComparer.OrdinalIgnoreCase).Where(e => e != "*"))
            yield return $"CmdletsToExport names {extra}, which is not a cmdlet of the module";
        foreach (var dup in exports.GroupBy(e => e, StringComparer.OrdinalIgnoreCase).Where(g => g.Count() > 1))
            yield return $"CmdletsToExport names {dup.Key} {dup.Count()} times";
        var sorted = exports.OrderBy(e => e, StringComparer.OrdinalIgnoreCase).ToList();
        if (!sorted.SequenceEqual(exports)) yield return $"CmdletsToExport is not alphabetical: expected {string.Join(", ", sorted)}";
        var psData = (d.GetValueOrDefault("PrivateData") as Dictionary<string, object?>)?.GetValueOrDefault("PSData") as Dictionary<string, object?>;
        var tags = Psd1.Strings(psData?.GetValueOrDefault("Tags"));
        foreach (var tag in new[] { "Linux", "KVM", "PSEdition_Core" }.Where(t => !tags.Contains(t)))
            yield return $"PrivateData.PSData.Tags lacks '{tag}'";
        foreach (var tag in tags.Where(t => t.Any(char.IsWhiteSpace))) yield return $"tag '{tag}' contains white space";
    }

    // ---------------------------------------------------------------- format and types

    static string Where(XObject x, string path) => x is System.Xml.IXmlLineInfo li && li.HasLineInfo() ? $"{Path.GetFileName(path)}:{li.LineNumber}" : Path.GetFileName(path);

    /// <summary>Members that types.ps1xml adds to a type (alias, script, note, code properties).</summary>
    public static Dictionary<string, HashSet<string>> ExtendedMembers(ModuleUnderTest m)
    {
        var result = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var (_, doc) in m.Types)
            foreach (var type in doc.Root?.Elements("Type") ?? [])
            {
                var name = type.Element("Name")?.Value.Trim() ?? "";
                if (!result.TryGetValue(name, out var set)) result[name] = set = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
                foreach (var member in type.Element("Members")?.Elements() ?? [])
                    if (member.Element("Name")?.Value.Trim() is { } memberName) set.Add(memberName);
            }
        return result;
    }

    static bool HasProperty(Type t, string name, Dictionary<string, HashSet<string>> extended) =>
        t.GetProperties(BindingFlags.Public | BindingFlags.Instance).Any(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
        || (extended.TryGetValue(t.FullName!, out var extra) && extra.Contains(name));

    public static IEnumerable<string> Types(ModuleUnderTest m)
    {
        foreach (var (path, doc) in m.Types)
        {
            if (doc.Root?.Name.LocalName != "Types") { yield return $"{Path.GetFileName(path)}: the root element must be <Types>"; continue; }
            foreach (var type in doc.Root.Elements("Type"))
            {
                var name = type.Element("Name")?.Value.Trim() ?? "";
                var realName = name.StartsWith(Deserialized[0], StringComparison.Ordinal) ? name[Deserialized[0].Length..] : name;
                var t = m.Inspector.FindType(realName);
                if (t is null) { yield return $"{Where(type, path)}: type {name} is not a module or engine type"; continue; }
                foreach (var alias in type.Descendants("AliasProperty"))
                {
                    var target = alias.Element("ReferencedMemberName")?.Value.Trim() ?? "";
                    if (!HasProperty(t, target, [])) yield return $"{Where(alias, path)}: alias {alias.Element("Name")?.Value} refers to {target}, which {t.Name} does not have";
                }
                foreach (var member in type.Element("Members")?.Elements() ?? [])
                    if (member.Element("Name")?.Value.Trim() is { } memberName && t.GetProperty(memberName) is not null)
                        yield return $"{Where(member, path)}: {name} already has a property {memberName}";
            }
        }
    }

    /// <summary>Every view of every format file: name, type names, and each column/item with its property or script block.</summary>
    public static IEnumerable<(string Where, string Name, List<string> TypeNames, XElement View)> Views(ModuleUnderTest m) =>
        m.Formats.SelectMany(f => (f.Doc.Root?.Element("ViewDefinitions")?.Elements("View") ?? [])
            .Select(v => (Where(v, f.Path), v.Element("Name")?.Value.Trim() ?? "(unnamed)",
                v.Element("ViewSelectedBy")?.Elements("TypeName").Select(t => t.Value.Trim()).ToList() ?? [], v)));

    public static IEnumerable<string> Formats(ModuleUnderTest m)
    {
        foreach (var (file, doc) in m.Formats)
            if (doc.Root?.Name.LocalName != "Configuration" || doc.Root.Element("ViewDefinitions") is null)
                yield return $"{Path.GetFileName(file)}: the root must be <Configuration> with <ViewDefinitions>";
        var extended = ExtendedMembers(m);
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (where, name, typeNames, view) in Views(m))
        {
            if (typeNames.Count == 0) yield return $"{where}: view {name} selects no <TypeName>";
            foreach (var tn in typeNames.Where(t => !t.StartsWith(Deserialized[0], StringComparison.Ordinal)))
            {
                if (!typeNames.Contains(Deserialized[0] + tn)) yield return $"{where}: view {name} lists {tn} but not Deserialized.{tn}";
                var control = view.Elements().FirstOrDefault(e => e.Name.LocalName.EndsWith("Control"))?.Name.LocalName ?? "?";
                if (seen.TryGetValue($"{tn}/{control}", out var first)) yield return $"{where}: a second {control} for {tn} (first at {first})";
                else seen[$"{tn}/{control}"] = where;
            }
            foreach (var tn in typeNames.Where(t => t.StartsWith(Deserialized[0], StringComparison.Ordinal)))
                if (!typeNames.Contains(tn[Deserialized[0].Length..])) yield return $"{where}: view {name} lists {tn} without the live type";

            var live = typeNames.Where(t => !t.StartsWith(Deserialized[0], StringComparison.Ordinal)).ToList();
            var types = new List<Type>();
            foreach (var tn in live)
            {
                var t = m.Inspector.FindType(tn);
                if (t is null) yield return $"{where}: view {name} names type {tn}, which is not a module or engine type";
                else types.Add(t);
            }

            var table = view.Element("TableControl");
            if (table is not null)
            {
                var headers = table.Element("TableHeaders")?.Elements("TableColumnHeader").Count() ?? 0;
                foreach (var entry in table.Element("TableRowEntries")?.Elements("TableRowEntry") ?? [])
                {
                    var columns = entry.Element("TableColumnItems")?.Elements("TableColumnItem").Count() ?? 0;
                    if (headers != 0 && columns != headers) yield return $"{Where(entry, FileOf(view))}: view {name} has {headers} headers but {columns} columns";
                }
            }
            foreach (var item in view.Descendants().Where(e => e.Name.LocalName is "TableColumnItem" or "ListItem" or "WideEntry" or "ExpressionBinding"))
            {
                var prop = item.Element("PropertyName")?.Value.Trim();
                var script = item.Element("ScriptBlock")?.Value.Trim();
                if (prop is null && script is null && item.Name.LocalName != "ExpressionBinding")
                {
                    if (item.Name.LocalName == "WideEntry") prop = item.Element("WideItem")?.Element("PropertyName")?.Value.Trim();
                    if (prop is null && item.Element("WideItem")?.Element("ScriptBlock") is null)
                        yield return $"{Where(item, FileOf(view))}: view {name} has an item with neither PropertyName nor ScriptBlock";
                }
                if (script is not null && script.Length == 0) yield return $"{Where(item, FileOf(view))}: view {name} has an empty ScriptBlock";
                if (prop is null) continue;
                foreach (var t in types.Where(t => !HasProperty(t, prop, extended)))
                    yield return $"{Where(item, FileOf(view))}: view {name} shows {prop}, which {t.FullName} does not have";
            }
        }

        // Every type a cmdlet says it outputs has a view, unless it is a plain value (string, number, enum).
        var viewed = Views(m).SelectMany(v => v.TypeNames).ToHashSet(StringComparer.Ordinal);
        foreach (var c in m.Cmdlets)
            foreach (var o in c.OutputTypes.Where(o => o.Type is not null).Select(o => o.Type!))
            {
                var t = o.IsArray ? o.GetElementType()! : o;
                if (t.IsPrimitive || t.IsEnum || t.FullName is "System.String" or "System.Void") continue;
                if (t.Assembly != m.Inspector.Module && t.Assembly != m.Inspector.Engine) continue;
                if (!viewed.Contains(t.FullName!)) yield return $"{c.Name}: output type {t.FullName} has no format view";
            }

        string FileOf(XElement view) => m.Formats.First(f => f.Doc == view.Document).Path;
    }

    // ---------------------------------------------------------------- README pipelines

    /// <summary>Filters that pass the same objects on: a pipeline through them still binds the left cmdlet to the right.</summary>
    static readonly HashSet<string> Transparent = new(StringComparer.OrdinalIgnoreCase)
    { "Where-Object", "where", "?", "Sort-Object", "sort", "Tee-Object", "tee", "Select-Object", "select" };

    /// <summary>One pipeline of a README code block: its commands (first word of each segment) and the full segments.</summary>
    public static IEnumerable<(int Line, List<string> Segments)> ReadmePipelines(string readme)
    {
        var lines = readme.Replace("\r", "").Split('\n');
        var inBlock = false;
        var psBlock = false;
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd();
            var fence = FenceRegex().Match(line);
            if (fence.Success)
            {
                if (!inBlock) { inBlock = true; psBlock = fence.Groups[1].Value.ToLowerInvariant() is "powershell" or "pwsh" or "ps1" or "ps" or "posh" or ""; }
                else inBlock = false;
                continue;
            }
            if (!inBlock || !psBlock) continue;
            var start = i + 1;
            var text = StripPrompt(line);
            // A pipeline may continue on the next line after a trailing | or a backtick, or with a leading |.
            while (i + 1 < lines.Length && (text.EndsWith('|') || text.EndsWith('`') || lines[i + 1].TrimStart().StartsWith('|')))
                text = text.TrimEnd('`') + " " + lines[++i].Trim();
            var segments = SplitPipeline(StripComment(text));
            if (segments.Count > 1) yield return (start, segments);
        }
    }

    static string StripPrompt(string line)
    {
        var t = line.Trim();
        return t.StartsWith("PS>") ? t[3..].Trim() : t.StartsWith("PS ") && t.Contains('>') ? t[(t.IndexOf('>') + 1)..].Trim() : t;
    }

    static string StripComment(string text)
    {
        var depthQuote = '\0';
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (depthQuote != '\0') { if (c == depthQuote) depthQuote = '\0'; continue; }
            if (c is '\'' or '"') depthQuote = c;
            else if (c == '#' && (i == 0 || char.IsWhiteSpace(text[i - 1]))) return text[..i].TrimEnd();
        }
        return text;
    }

    /// <summary>Splits on | outside quotes, braces, brackets and parentheses (so script blocks stay whole).</summary>
    public static List<string> SplitPipeline(string text)
    {
        var segments = new List<string>();
        var depth = 0;
        var quote = '\0';
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (quote != '\0') { if (c == quote) quote = '\0'; continue; }
            switch (c)
            {
                case '\'' or '"': quote = c; break;
                case '{' or '(' or '[': depth++; break;
                case '}' or ')' or ']': depth--; break;
                case '|' when depth == 0:
                    if (i + 1 < text.Length && text[i + 1] == '|') { segments.Clear(); i++; start = i + 1; break; } // a || b: separate chains
                    segments.Add(text[start..i].Trim());
                    start = i + 1;
                    break;
                case ';' when depth == 0: segments.Clear(); start = i + 1; break;
            }
        }
        segments.Add(text[start..].Trim());
        return segments.Where(s => s.Length > 0).ToList();
    }

    static string CommandOf(string segment)
    {
        var s = segment.TrimStart('&', ' ', '.');
        if (s.StartsWith('(')) return "";
        var m = CommandRegex().Match(s);
        return m.Success ? m.Groups[1].Value : "";
    }

    /// <summary>Every pipeline in README code blocks and in the cmdlets' help examples binds from left to right.</summary>
    public static IEnumerable<string> Pipelines(ModuleUnderTest m)
    {
        var sources = new List<(string Where, string Text)> { ("README.md", m.Readme) };
        foreach (var c in m.Cmdlets)
            foreach (var (ex, i) in m.Docs.Examples(c.Type).Select((e, i) => (e, i + 1)))
                sources.Add(($"help of {c.Name}, example {i}, line", "```powershell\n" + ex.Code + "\n```\n"));
        return sources.SelectMany(s => Pipelines(m, s.Where, s.Text));
    }

    /// <summary>PowerShell's own commands whose output type is known, so that `Get-ChildItem *.qcow2 | Get-QcowImage` is checked too.</summary>
    static readonly Dictionary<string, (string Assembly, string Type)> BuiltInOutputs = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Get-ChildItem"] = ("System.Private.CoreLib", "System.IO.FileInfo"),
        ["gci"] = ("System.Private.CoreLib", "System.IO.FileInfo"),
        ["dir"] = ("System.Private.CoreLib", "System.IO.FileInfo"),
        ["ls"] = ("System.Private.CoreLib", "System.IO.FileInfo"),
        ["Get-Item"] = ("System.Private.CoreLib", "System.IO.FileInfo"),
        ["gi"] = ("System.Private.CoreLib", "System.IO.FileInfo"),
        ["Get-Process"] = ("System.Diagnostics.Process", "System.Diagnostics.Process"),
        ["gps"] = ("System.Diagnostics.Process", "System.Diagnostics.Process"),
        ["ps"] = ("System.Diagnostics.Process", "System.Diagnostics.Process"),
    };

    static IEnumerable<string> Pipelines(ModuleUnderTest m, string where, string text)
    {
        var cmdlets = m.Cmdlets.ToDictionary(c => c.Name, StringComparer.OrdinalIgnoreCase);
        var extended = ExtendedMembers(m);
        foreach (var (line, segments) in ReadmePipelines(text))
        {
            var at = where == "README.md" ? $"README.md:{line}" : $"{where} {line - 1}";
            (string Name, List<Type> Types)? left = null;
            foreach (var segment in segments)
            {
                var name = CommandOf(segment);
                if (cmdlets.TryGetValue(name, out var right))
                {
                    if (left is { } l && l.Types.Count > 0 && Binding(l.Types, right, extended) is null)
                        yield return $"{at}: {l.Name} | {right.Name} — no output property of {string.Join("/", l.Types.Select(t => t.Name))} binds to a ValueFromPipelineByPropertyName parameter (name or alias) of {right.Name}, and {right.Name} takes none of them by value";
                    left = (right.Name, right.OutputTypes.Where(o => o.Type is not null).Select(o => o.Type!).ToList());
                }
                else if (Transparent.Contains(name) && !(name.StartsWith("select", StringComparison.OrdinalIgnoreCase) && SelectPropertyRegex().IsMatch(segment)))
                {
                    // passes the same objects on
                }
                else if (BuiltInOutputs.TryGetValue(name, out var builtIn) && m.Inspector.RuntimeType(builtIn.Assembly, builtIn.Type) is { } type)
                {
                    left = (name, [type]);
                }
                else
                {
                    if (IsModuleLooking(name) && !BuiltInCommands.Contains(name))
                        yield return $"{at}: {name} is not a cmdlet of the module (nor a PowerShell command the checks know)";
                    left = null;
                }
            }
        }
    }

    static bool IsModuleLooking(string name) => VerbNounRegex().IsMatch(name) && ApprovedVerbs.Contains(name[..name.IndexOf('-')]);

    /// <summary>How <paramref name="left"/>'s output reaches <paramref name="right"/>: a description, or null if nothing binds.</summary>
    public static string? Binding(CmdletModel left, CmdletModel right, Dictionary<string, HashSet<string>>? extended = null) =>
        Binding(left.OutputTypes.Where(o => o.Type is not null).Select(o => o.Type!), right, extended);

    /// <summary>How objects of <paramref name="outputs"/> reach <paramref name="right"/>: a description, or null if nothing binds.</summary>
    public static string? Binding(IEnumerable<Type> outputs, CmdletModel right, Dictionary<string, HashSet<string>>? extended = null)
    {
        extended ??= [];
        foreach (var o in outputs)
        {
            foreach (var p in right.Parameters.Where(p => p.ByValue))
            {
                var pt = Nullable.GetUnderlyingType(p.Type) ?? (p.Type.IsArray ? p.Type.GetElementType()! : p.Type);
                if (pt.FullName is "System.Object" or "System.Management.Automation.PSObject" || pt.IsAssignableFrom(o))
                    return $"{o.Name} by value to -{p.Name}";
            }
            var props = o.GetProperties(BindingFlags.Public | BindingFlags.Instance).Select(p => p.Name)
                .Concat(extended.TryGetValue(o.FullName!, out var extra) ? extra : []).ToList();
            foreach (var p in right.Parameters.Where(p => p.ByPropertyName))
            {
                var hit = p.Names.FirstOrDefault(n => props.Contains(n, StringComparer.OrdinalIgnoreCase));
                if (hit is not null) return $"{o.Name}.{hit} by property name to -{p.Name}";
            }
        }
        return null;
    }

    // ---------------------------------------------------------------- help

    public static IEnumerable<string> Help(ModuleUnderTest m, XDocument maml)
    {
        XNamespace cmd = MamlWriter.Command, maml_ = MamlWriter.Maml, dev = MamlWriter.Dev;
        var commands = maml.Root?.Elements(cmd + "command").ToDictionary(
            c => c.Element(cmd + "details")?.Element(cmd + "name")?.Value ?? "", StringComparer.OrdinalIgnoreCase) ?? [];
        foreach (var c in m.Cmdlets)
        {
            if (!commands.TryGetValue(c.Name, out var help)) { yield return $"{c.Name}: no help"; continue; }
            var synopsis = help.Element(cmd + "details")?.Element(maml_ + "description")?.Value.Trim() ?? "";
            if (synopsis.Length == 0) yield return $"{c.Name}: empty synopsis (the class <summary>)";
            var described = help.Element(cmd + "parameters")?.Elements(cmd + "parameter").ToDictionary(
                p => p.Element(maml_ + "name")?.Value ?? "", p => p.Element(maml_ + "description")?.Value.Trim() ?? "", StringComparer.OrdinalIgnoreCase) ?? [];
            foreach (var p in c.Parameters)
            {
                if (!described.TryGetValue(p.Name, out var text)) yield return $"{c.Name}: -{p.Name} is not in the help";
                else if (text.Length == 0) yield return $"{c.Name}: -{p.Name} has no description (the property's <summary>)";
            }
            var examples = help.Element(cmd + "examples")?.Elements(cmd + "example").ToList() ?? [];
            if (examples.Count == 0) yield return $"{c.Name}: no example (<example><code>…</code><para>…</para></example>)";
            foreach (var (ex, i) in examples.Select((e, i) => (e, i + 1)))
            {
                var code = ex.Element(dev + "code")?.Value ?? "";
                if (!code.Contains(c.Name, StringComparison.OrdinalIgnoreCase)) yield return $"{c.Name}: example {i} does not use {c.Name}";
                if ((ex.Element(dev + "remarks")?.Value.Trim() ?? "").Length == 0) yield return $"{c.Name}: example {i} has no explanation (<para>)";
            }
        }
        foreach (var extra in commands.Keys.Except(m.Cmdlets.Select(c => c.Name), StringComparer.OrdinalIgnoreCase))
            yield return $"help for {extra}, which is not a cmdlet of the module";
    }

    [GeneratedRegex(@"[A-Z][a-z0-9]*|[A-Z]+(?![a-z])")]
    private static partial Regex WordsRegex();
    [GeneratedRegex(@"^[A-Z][A-Za-z0-9]*$")]
    private static partial Regex PascalNoun();
    [GeneratedRegex(@"^\s*(?:```|~~~)\s*([A-Za-z0-9]*)")]
    private static partial Regex FenceRegex();
    [GeneratedRegex(@"^([A-Za-z?%][\w\-\.]*|\?|%)")]
    private static partial Regex CommandRegex();
    [GeneratedRegex(@"^[A-Za-z]+-[A-Za-z][A-Za-z0-9]+$")]
    private static partial Regex VerbNounRegex();
    [GeneratedRegex(@"-(Property|ExpandProperty|ExcludeProperty)\b|^\S+\s+[A-Za-z@\*]", RegexOptions.IgnoreCase)]
    private static partial Regex SelectPropertyRegex();
}
