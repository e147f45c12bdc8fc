using System.Xml.Linq;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// The importable module folder that `./build.sh package` (or build.ps1 -Task Package) makes under
/// out/KvmOvercommit/&lt;version&gt;/: it holds everything its manifest names, and its MAML help covers every cmdlet.
/// `./build.sh test` packages before it tests; run alone without a package, these skip (and fail in CI).
/// </summary>
public class PackageTests
{
    static string PackageDir()
    {
        var manifest = Psd1.Parse(File.ReadAllText(Path.Combine(RepoPaths.Root, "module", "KvmOvercommit.psd1")));
        var dir = Path.Combine(RepoPaths.Root, "out", "KvmOvercommit", (string)manifest["ModuleVersion"]!);
        var present = File.Exists(Path.Combine(dir, "KvmOvercommit.psd1"));
        if (!present && RepoPaths.InCi) Assert.Fail($"{dir} is missing: CI runs ./build.sh test, which packages first");
        Skip.IfNot(present, $"no package at {dir}: run ./build.sh package");
        return dir;
    }

    [SkippableFact]
    public void PackageHoldsEverythingTheManifestNames()
    {
        var dir = PackageDir();
        using var m = ModuleUnderTest.Load(Path.Combine(dir, "KvmOvercommit.dll"), dir, Path.Combine(RepoPaths.Root, "README.md"));
        var problems = ModuleChecks.Manifest(m).ToList();
        foreach (var f in new[] { "KvmOvercommit.Engine.dll", "en-US/about_KvmOvercommit.help.txt", "en-US/KvmOvercommit.dll-Help.xml" })
            if (!File.Exists(Path.Combine(dir, f))) problems.Add($"{f} is not in the package");
        if (File.Exists(Path.Combine(dir, "System.Management.Automation.dll"))) problems.Add("the package ships System.Management.Automation.dll (PowerShell's own)");
        Assert.Equal(File.ReadAllText(Path.Combine(RepoPaths.Root, "module", "KvmOvercommit.psd1")), File.ReadAllText(Path.Combine(dir, "KvmOvercommit.psd1")));
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [SkippableFact]
    public void PackagedHelpCoversEveryCmdlet()
    {
        var dir = PackageDir();
        using var m = ModuleUnderTest.Load(Path.Combine(dir, "KvmOvercommit.dll"), dir, Path.Combine(RepoPaths.Root, "README.md"));
        var maml = XDocument.Load(Path.Combine(dir, "en-US", "KvmOvercommit.dll-Help.xml"));
        var problems = ModuleChecks.Help(m, maml).ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [SkippableFact]
    public void PackageIsTheModuleJustBuilt()
    {
        var dir = PackageDir();
        var fresh = File.ReadAllBytes(RepoPaths.ModuleDll).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(dir, "KvmOvercommit.dll")));
        if (!fresh && RepoPaths.InCi) Assert.Fail($"{dir}/KvmOvercommit.dll differs from the module just built: package after building");
        Skip.IfNot(fresh, $"{dir} is older than the last build: run ./build.sh package");
    }
}
