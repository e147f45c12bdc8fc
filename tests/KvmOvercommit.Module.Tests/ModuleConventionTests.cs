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
