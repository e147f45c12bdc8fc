using System.Diagnostics;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// The parse gate (tools/psparse: tree-sitter's PowerShell grammar + xmllint) catches syntax errors in PowerShell files
/// that nothing here can run: a deliberately broken file makes it fail with file:line:col, correct files pass.
/// </summary>
public class ParseGateTests
{
    static (int Code, string Output) RunGate(string dir)
    {
        var gate = Path.Combine(RepoPaths.Root, "tools", "psparse", "psparse.cjs");
        var modules = Path.Combine(RepoPaths.Root, "tools", "psparse", "node_modules", "web-tree-sitter");
        if (!Directory.Exists(modules) && RepoPaths.InCi) Assert.Fail("tools/psparse/node_modules is missing: ./build.sh test installs it (npm ci)");
        Skip.IfNot(Directory.Exists(modules), "tools/psparse/node_modules missing: run ./build.sh gate once");
        var psi = new ProcessStartInfo("node", [gate, dir]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(60_000), "the gate did not finish in 60 s");
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    static string TempDirWith(params (string Name, string Text)[] files)
    {
        var dir = Path.Combine(Path.GetTempPath(), "kvmoc-gate-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        foreach (var (name, text) in files)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(dir, name))!);
            File.WriteAllText(Path.Combine(dir, name), text);
        }
        return dir;
    }

    [SkippableFact]
    public void BrokenPowerShellFailsTheGateWithItsPosition()
    {
        var dir = TempDirWith(
            ("ok.psd1", "@{ RootModule = 'x.dll'; Tags = @('a', 'b') }\n"),
            ("tests/Broken.Tests.ps1", "Describe 'x' {\n    It 'y' {\n        if ($true) { 1 | Should -Be 1\n    }\n"),
            ("bin/ignored.ps1", "function ( {"));
        try
        {
            var (code, output) = RunGate(dir);
            Assert.Equal(1, code);
            Assert.Contains(Path.Combine(dir, "tests", "Broken.Tests.ps1") + ":", output);
            Assert.DoesNotContain("ok.psd1:", output);
            Assert.DoesNotContain("ignored.ps1", output);
            Assert.Contains("FAILED", output);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void MalformedPs1xmlFailsTheGate()
    {
        var dir = TempDirWith(("My.format.ps1xml", "<Configuration>\n<ViewDefinitions>\n</Configuration>\n"));
        try
        {
            var (code, output) = RunGate(dir);
            Assert.Equal(1, code);
            Assert.Contains(Path.Combine(dir, "My.format.ps1xml") + ":3:", output);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void CorrectFilesPassTheGate()
    {
        var dir = TempDirWith(
            ("a.ps1", "[CmdletBinding()]\nparam([ValidateSet('Build','Test')][string]$Task = 'Build')\n$ErrorActionPreference = 'Stop'\nswitch ($Task) {\n    'Build' { & dotnet build }\n    default { throw \"unknown $Task\" }\n}\n"),
            ("b.format.ps1xml", "<?xml version=\"1.0\"?><Configuration><ViewDefinitions/></Configuration>"));
        try
        {
            var (code, output) = RunGate(dir);
            Assert.True(code == 0, output);
            Assert.Contains("1 PowerShell file(s), 1 .ps1xml file(s), 0 problem(s)", output);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void TheRepositoryPassesTheGate()
    {
        var (code, output) = RunGate(RepoPaths.Root);
        Assert.True(code == 0, output);
    }
}
