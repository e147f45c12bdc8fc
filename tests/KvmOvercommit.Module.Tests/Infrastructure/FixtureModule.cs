using System.Runtime.InteropServices;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using KvmOvercommit.HelpGen;

namespace KvmOvercommit.Module.Tests.Infrastructure;

/// <summary>
/// A small module compiled at test time (Roslyn, against the PowerShellStandard reference assembly and the real
/// engine) with its own manifest, format file and README, in a temporary folder: lets the self-tests show that each
/// check passes on a module that follows the conventions and fails on one that breaks them.
/// </summary>
public sealed class FixtureModule : IDisposable
{
    public string Dir { get; }
    public ModuleUnderTest Module { get; }

    public FixtureModule(string csharp, string psd1, string formatXml, string typesXml, string readme)
    {
        Dir = Path.Combine(Path.GetTempPath(), "kvmoc-fixture-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Dir);
        var engine = Path.Combine(Path.GetDirectoryName(RepoPaths.ModuleDll)!, "KvmOvercommit.Engine.dll");
        File.Copy(engine, Path.Combine(Dir, "KvmOvercommit.Engine.dll"));
        var references = Directory.GetFiles(RuntimeEnvironment.GetRuntimeDirectory(), "*.dll")
            .Where(f => !Path.GetFileName(f).StartsWith("Microsoft.DiaSymReader", StringComparison.Ordinal))
            .Append(ModuleInspector.FindSma())
            .Append(engine)
            .Select(f => { try { return MetadataReference.CreateFromFile(f); } catch (BadImageFormatException) { return null; } })
            .Where(r => r is not null)
            .Select(r => r!);
        var tree = CSharpSyntaxTree.ParseText(csharp, new CSharpParseOptions(LanguageVersion.CSharp10, DocumentationMode.Diagnose));
        var compilation = CSharpCompilation.Create("KvmOvercommit", [tree], references,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Disable));
        using (var dll = File.Create(Path.Combine(Dir, "KvmOvercommit.dll")))
        using (var xml = File.Create(Path.Combine(Dir, "KvmOvercommit.xml")))
        {
            var result = compilation.Emit(dll, xmlDocumentationStream: xml);
            var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
            if (!result.Success) throw new InvalidOperationException("fixture does not compile:\n" + string.Join("\n", errors));
        }
        File.WriteAllText(Path.Combine(Dir, "KvmOvercommit.psd1"), psd1);
        File.WriteAllText(Path.Combine(Dir, "KvmOvercommit.format.ps1xml"), formatXml);
        File.WriteAllText(Path.Combine(Dir, "KvmOvercommit.types.ps1xml"), typesXml);
        File.WriteAllText(Path.Combine(Dir, "README.md"), readme);
        Module = ModuleUnderTest.Load(Path.Combine(Dir, "KvmOvercommit.dll"), Dir, Path.Combine(Dir, "README.md"));
    }

    public void Dispose()
    {
        Module.Dispose();
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}
