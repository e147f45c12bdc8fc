using System.Text.RegularExpressions;

namespace KvmOvercommit.Module.Tests;

/// <summary>Every engine ErrorKind has exactly one ErrorCategory in the module's mapping table.</summary>
public class ErrorMappingSourceTests
{
    [Fact]
    public void EveryErrorKindIsMapped()
    {
        var root = RepoPaths.Root;
        var kinds = Regex.Matches(File.ReadAllText(Path.Combine(root, "src/KvmOvercommit.Engine/KvmOcException.cs")).Split("public enum ErrorKind")[1].Split('}')[0], @"^\s*(\w+)\s*(=\s*\d+)?,", RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value).ToList();
        var mapping = File.ReadAllText(Path.Combine(root, "src/KvmOvercommit/ErrorMapping.cs"));
        Assert.NotEmpty(kinds);
        foreach (var k in kinds.Where(k => k != "Unspecified"))
            Assert.Contains($"ErrorKind.{k} =>", mapping);
    }
}

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
}
