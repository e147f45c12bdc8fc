using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// The manifest and the package, judged by PowerShell itself (Import-PowerShellDataFile, Test-ModuleManifest,
/// Import-Module, Get-Command) instead of a hand-written reader; and every PowerShell file of the repository parsed by
/// PowerShell's own parser.
/// </summary>
public class ManifestTests(SessionFixture fx) : IClassFixture<SessionFixture>
{
    PwshSession S => fx.Session;

    static void NoProblems(IEnumerable<string> problems)
    {
        var list = problems.ToList();
        Assert.True(list.Count == 0, $"{list.Count} problem(s):\n  " + string.Join("\n  ", list));
    }

    [Fact]
    public void TestModuleManifestAcceptsTheSourceAndThePackagedManifest()
    {
        foreach (var path in new[] { Path.Combine(RepoPaths.Root, "module", "KvmOvercommit.psd1"), RepoPaths.PackagedManifest })
        {
            // The source folder has no dll: Test-ModuleManifest then reports the RootModule, which only the package has.
            var r = S.Run("Test-ModuleManifest -Path $args[0]", [path]);
            var errors = r.AllErrors.Where(e => path == RepoPaths.PackagedManifest || !e.ToString().Contains("KvmOvercommit.dll")).ToList();
            Assert.True(errors.Count == 0, $"{path}:\n" + string.Join("\n", errors));
        }
    }

    [Fact]
    public void ManifestHasTheRequiredKeysAndExportsExactlyTheModulesCmdlets()
    {
        var data = (Hashtable)S.Run("Import-PowerShellDataFile -LiteralPath $args[0]", [RepoPaths.PackagedManifest]).Ok().Output.Single().BaseObject;
        var problems = new List<string>();
        if ((string?)data["RootModule"] != "KvmOvercommit.dll") problems.Add($"RootModule is {data["RootModule"]}");
        if ((string?)data["PowerShellVersion"] != "7.4") problems.Add($"PowerShellVersion is {data["PowerShellVersion"]}, not 7.4");
        if (!Strings(data["CompatiblePSEditions"]).SequenceEqual(["Core"])) problems.Add("CompatiblePSEditions is not @('Core')");
        foreach (var key in new[] { "FunctionsToExport", "VariablesToExport", "AliasesToExport" })
            if (!data.ContainsKey(key) || Strings(data[key]).Count != 0) problems.Add($"{key} must be @() in a binary module");
        var tags = Strings(((Hashtable)((Hashtable)data["PrivateData"]!)["PSData"]!)["Tags"]);
        foreach (var t in new[] { "Linux", "KVM", "PSEdition_Core" }) if (!tags.Contains(t)) problems.Add($"Tags lack {t}");
        foreach (var key in new[] { "FormatsToProcess", "TypesToProcess" })
            foreach (var f in Strings(data[key]))
                if (!File.Exists(Path.Combine(RepoPaths.PackageDir, f))) problems.Add($"{key} names {f}, which the package lacks");

        var listed = Strings(data["CmdletsToExport"]);
        if (!listed.SequenceEqual(listed.Order(StringComparer.OrdinalIgnoreCase))) problems.Add("CmdletsToExport is not alphabetical");
        // What the dll really defines: its cmdlets, found by PowerShell when the dll is imported on its own.
        var defined = S.Run("(Import-Module -Name $args[0] -PassThru -Force -Prefix Zz).ExportedCmdlets.Keys; Remove-Module KvmOvercommit -Force; Import-Module $args[1] -Force",
            [Path.Combine(RepoPaths.PackageDir, "KvmOvercommit.dll"), RepoPaths.PackagedManifest]).Ok()
            .Output.Select(o => o.ToString().Replace("-Zz", "-")).ToHashSet();
        foreach (var c in defined.Except(listed)) problems.Add($"CmdletsToExport lacks {c}, which the dll defines");
        foreach (var c in listed.Except(defined)) problems.Add($"CmdletsToExport names {c}, which the dll does not define");
        var exported = S.Run("(Get-Command -Module KvmOvercommit).Name").Ok().Output.Select(o => o.ToString()).ToHashSet();
        Assert.Equal(listed.ToHashSet(), exported);
        NoProblems(problems);
    }

    static List<string> Strings(object? v) => v switch
    {
        null => [],
        string s => [s],
        IEnumerable e => e.Cast<object>().Select(o => o.ToString()!).ToList(),
        _ => [v.ToString()!],
    };

    [Fact]
    public void PackageHoldsTheEngineAndHelpButNotPowerShellItself()
    {
        var dir = RepoPaths.PackageDir;
        var problems = new List<string>();
        foreach (var f in new[] { "KvmOvercommit.Engine.dll", "en-US/about_KvmOvercommit.help.txt", "en-US/KvmOvercommit.dll-Help.xml" })
            if (!File.Exists(Path.Combine(dir, f))) problems.Add($"{f} is not in the package");
        if (File.Exists(Path.Combine(dir, "System.Management.Automation.dll"))) problems.Add("the package ships System.Management.Automation.dll (PowerShell's own)");
        Assert.Equal(File.ReadAllText(Path.Combine(RepoPaths.Root, "module", "KvmOvercommit.psd1")), File.ReadAllText(RepoPaths.PackagedManifest));
        NoProblems(problems);
    }

    /// <summary>
    /// Kept as a file check because no run can catch it: a stale package passes every runtime test with the old code.
    /// </summary>
    [Fact]
    public void PackageIsTheModuleJustBuilt()
    {
        if (Environment.GetEnvironmentVariable("KVMOC_MODULE") is { Length: > 0 }) return; // an explicitly chosen package
        var built = Path.Combine(RepoPaths.Root, "src", "KvmOvercommit", "bin", RepoPaths.Configuration, "net8.0", "KvmOvercommit.dll");
        Assert.True(File.Exists(built), $"{built} is missing");
        Assert.True(File.ReadAllBytes(built).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(RepoPaths.PackageDir, "KvmOvercommit.dll"))),
            $"{RepoPaths.PackageDir}/KvmOvercommit.dll differs from the module just built: run ./build.sh package");
    }

    [Fact]
    public void ImportingTheModuleRaisesNoErrorAndLoadsItsViews()
    {
        // Update-FormatData/Update-TypeData errors (a malformed or inconsistent ps1xml) surface on import.
        var r = S.Run("Import-Module $args[0] -Force -PassThru | Out-Null; (Get-FormatData -TypeName 'KvmOvercommit.*').TypeNames", [RepoPaths.PackagedManifest]).Ok();
        Assert.NotEmpty(r.Output);
    }

    static IEnumerable<string> RepositoryFiles(params string[] patterns) =>
        patterns.SelectMany(p => Directory.EnumerateFiles(RepoPaths.Root, p, SearchOption.AllDirectories))
            .Where(f => !Path.GetRelativePath(RepoPaths.Root, f).Split(Path.DirectorySeparatorChar)
                .Any(d => d is "bin" or "obj" or "out" or "node_modules" or ".git"));

    [Fact]
    public void EveryPowerShellFileParses()
    {
        var files = RepositoryFiles("*.ps1", "*.psm1", "*.psd1").ToList();
        Assert.Contains(files, f => f.EndsWith("build.ps1"));
        var problems = new List<string>();
        foreach (var f in files)
        {
            Parser.ParseFile(f, out _, out var errors);
            problems.AddRange(errors.Select(e => $"{Path.GetRelativePath(RepoPaths.Root, f)}:{e.Extent.StartLineNumber}:{e.Extent.StartColumnNumber}: {e.Message}"));
        }
        NoProblems(problems);
    }

    [Fact]
    public void TheParserCheckCatchesABrokenFile()
    {
        var f = Path.Combine(Path.GetTempPath(), $"kvmoc-broken-{Guid.NewGuid():N}.ps1");
        File.WriteAllText(f, "Describe 'x' {\n    It 'y' {\n        if ($true) { 1 | Should -Be 1\n    }\n");
        try
        {
            Parser.ParseFile(f, out _, out var errors);
            Assert.NotEmpty(errors);
        }
        finally { File.Delete(f); }
    }

    /// <summary>A file check on purpose: import only loads the ps1xml files the manifest names, this covers every one.</summary>
    [Fact]
    public void EveryPs1xmlIsWellFormedXml()
    {
        var problems = new List<string>();
        foreach (var f in RepositoryFiles("*.ps1xml"))
        {
            try { System.Xml.Linq.XDocument.Load(f); }
            catch (System.Xml.XmlException e) { problems.Add($"{Path.GetRelativePath(RepoPaths.Root, f)}:{e.LineNumber}:{e.LinePosition}: {e.Message}"); }
        }
        NoProblems(problems);
    }
}
