using System.Xml.Linq;
using KvmOvercommit.HelpGen;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// The module's conventions, checked on the built module without a PowerShell runtime (attributes are read as
/// CustomAttributeData through MetadataLoadContext). Each test lists every problem it finds.
/// </summary>
public class ModuleConventionTests
{
    static ModuleUnderTest M => ModuleUnderTest.Real;

    static void NoProblems(IEnumerable<string> problems)
    {
        var list = problems.ToList();
        Assert.True(list.Count == 0, $"{list.Count} problem(s):\n  " + string.Join("\n  ", list));
    }

    [Fact]
    public void EveryCommandsFileIsAFoundCmdletClass() =>
        NoProblems(ModuleChecks.Discovery(M, Path.Combine(RepoPaths.Root, "src", "KvmOvercommit", "Commands")));

    [Fact]
    public void CmdletsUseApprovedVerbsAndSingularPrefixedNouns() => NoProblems(ModuleChecks.Naming(M));

    [Fact]
    public void CmdletsDeclareOutputTypeShouldProcessAndPassThru() => NoProblems(ModuleChecks.Contracts(M));

    [Fact]
    public void ManifestExportsExactlyTheCmdletsAndHasTheRequiredKeys() => NoProblems(ModuleChecks.Manifest(M));

    [Fact]
    public void FormatViewsNameRealTypesAndPropertiesAndCoverEveryOutputType() => NoProblems(ModuleChecks.Formats(M));

    [Fact]
    public void TypesFileExtendsRealTypes() => NoProblems(ModuleChecks.Types(M));

    [Fact]
    public void EveryPs1xmlIsWellFormedXml()
    {
        var problems = new List<string>();
        var files = Directory.GetFiles(RepoPaths.Root, "*.ps1xml", SearchOption.AllDirectories)
            .Where(f => !f.Split(Path.DirectorySeparatorChar).Any(d => d is "bin" or "obj" or "out" or "node_modules" or ".git"));
        foreach (var f in files)
        {
            try { XDocument.Load(f); }
            catch (System.Xml.XmlException e) { problems.Add($"{Path.GetRelativePath(RepoPaths.Root, f)}:{e.LineNumber}:{e.LinePosition}: {e.Message}"); }
        }
        NoProblems(problems);
    }

    [Fact]
    public void ReadmePipelinesBindByPropertyNameOrValue() => NoProblems(ModuleChecks.Pipelines(M));

    /// <summary>The pipelines DESIGN.md promises, checked as soon as both cmdlets exist.</summary>
    public static readonly (string Left, string Right)[] DesignedPipelines =
    [
        ("Get-KsmStat", "Set-KsmTuning"),          // $saved = Get-KsmStat; … ; $saved | Set-KsmTuning restores
        ("Set-KsmTuning", "Set-KsmTuning"),        // -PassThru returns the replaced settings, which restore
        ("Get-KvmGuest", "Stop-KvmGuest"),
        ("Get-KvmGuest", "Get-KvmGuestMemory"),
        ("Get-KvmGuest", "Set-KvmGuestMemory"),
        ("Get-KvmGuest", "Measure-KvmGuestIops"),
        ("Start-KvmGuest", "Stop-KvmGuest"),
        ("New-QcowOverlay", "Start-KvmGuest"),
        ("New-QcowOverlay", "Get-QcowImage"),
        ("Get-DnsmasqLease", "ConvertTo-AnsibleInventory"),
        ("Get-KvmGuest", "ConvertTo-AnsibleInventory"),
    ];

    [Fact]
    public void DesignedPipelinesBindWhereBothCmdletsExist()
    {
        var cmdlets = M.Cmdlets.ToDictionary(c => c.Name, StringComparer.OrdinalIgnoreCase);
        var extended = ModuleChecks.ExtendedMembers(M);
        var problems = DesignedPipelines
            .Where(p => cmdlets.ContainsKey(p.Left) && cmdlets.ContainsKey(p.Right))
            .Where(p => ModuleChecks.Binding(cmdlets[p.Left], cmdlets[p.Right], extended) is null)
            .Select(p => $"{p.Left} | {p.Right} does not bind (no output property matches a ValueFromPipelineByPropertyName parameter or alias, no by-value parameter takes the type)");
        NoProblems(problems);
    }

    [Fact]
    public void GeneratedHelpCoversEveryParameterAndHasExamples() =>
        NoProblems(ModuleChecks.Help(M, MamlWriter.Build(M.Cmdlets, M.Docs)));

    [Fact]
    public void FoundCmdletsMatchTheCommandsFolder()
    {
        // Guards the reflection itself: it must find as many cmdlets as there are Commands/*Command.cs files.
        var dir = Path.Combine(RepoPaths.Root, "src", "KvmOvercommit", "Commands");
        var files = Directory.Exists(dir) ? Directory.GetFiles(dir, "*Command.cs", SearchOption.AllDirectories).Length : 0;
        Assert.Equal(files, M.Cmdlets.Count);
    }
}
