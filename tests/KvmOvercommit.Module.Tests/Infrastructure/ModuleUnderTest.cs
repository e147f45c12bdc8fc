using System.Xml.Linq;
using KvmOvercommit.HelpGen;

namespace KvmOvercommit.Module.Tests.Infrastructure;

public static class RepoPaths
{
    public static string Root
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "KvmOvercommit.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
        }
    }

    /// <summary>Release or Debug: the configuration these tests were built in (bin/&lt;config&gt;/net10.0/).</summary>
    public static string Configuration => new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name;

    /// <summary>The built module assembly of the same configuration as the tests.</summary>
    public static string ModuleDll
    {
        get
        {
            var p = Path.Combine(Root, "src", "KvmOvercommit", "bin", Configuration, "net8.0", "KvmOvercommit.dll");
            if (!File.Exists(p)) throw new FileNotFoundException($"build the module first: {p} is missing", p);
            return p;
        }
    }

    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);
}

/// <summary>
/// Everything the module consists of, loaded without a PowerShell runtime: the cmdlets (MetadataLoadContext), their XML
/// docs, the manifest, the format and types files, the README. The real module is one instance; the self-tests build
/// deliberately broken ones to show every check can fail.
/// </summary>
public sealed class ModuleUnderTest : IDisposable
{
    public required ModuleInspector Inspector { get; init; }
    public required XmlDocs Docs { get; init; }
    public required Dictionary<string, object?> Manifest { get; init; }
    /// <summary>Directory the manifest's file names are relative to (module/ in the repo, or a package folder).</summary>
    public required string ManifestDir { get; init; }
    public required IReadOnlyList<(string Path, XDocument Doc)> Formats { get; init; }
    public required IReadOnlyList<(string Path, XDocument Doc)> Types { get; init; }
    public required string Readme { get; init; }

    public IReadOnlyList<CmdletModel> Cmdlets => Inspector.Cmdlets;

    static readonly Lazy<ModuleUnderTest> RealModule = new(() => Load(RepoPaths.ModuleDll, Path.Combine(RepoPaths.Root, "module"), Path.Combine(RepoPaths.Root, "README.md")));

    /// <summary>The module as built from this repository.</summary>
    public static ModuleUnderTest Real => RealModule.Value;

    /// <summary>Loads a module: its dll, the manifest KvmOvercommit.psd1 in <paramref name="manifestDir"/> and the files it names.</summary>
    public static ModuleUnderTest Load(string moduleDll, string manifestDir, string readmePath)
    {
        var manifest = Psd1.Parse(File.ReadAllText(Path.Combine(manifestDir, "KvmOvercommit.psd1")));
        List<(string, XDocument)> Xml(string key) => Psd1.Strings(manifest.GetValueOrDefault(key))
            .Select(f => Path.Combine(manifestDir, f))
            .Where(File.Exists)
            .Select(f => (f, XDocument.Load(f, LoadOptions.SetLineInfo)))
            .ToList();
        return new ModuleUnderTest
        {
            Inspector = ModuleInspector.Open(moduleDll),
            Docs = XmlDocs.ForAssembly(moduleDll),
            Manifest = manifest,
            ManifestDir = manifestDir,
            Formats = Xml("FormatsToProcess"),
            Types = Xml("TypesToProcess"),
            Readme = File.Exists(readmePath) ? File.ReadAllText(readmePath) : "",
        };
    }

    public void Dispose() => Inspector.Dispose();
}
