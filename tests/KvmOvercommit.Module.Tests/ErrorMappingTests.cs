using System.Text.RegularExpressions;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// The one table from engine ErrorKind to PowerShell ErrorCategory (ErrorMapping.ToCategory): every kind is mapped, to
/// the category DESIGN.md names, and every category exists in PowerShell's ErrorCategory enum.
/// </summary>
public class ErrorMappingTests
{
    static readonly Dictionary<string, string> Expected = new()
    {
        ["NotFound"] = "ObjectNotFound",
        ["PermissionDenied"] = "PermissionDenied",
        ["InvalidArgument"] = "InvalidArgument",
        ["ResourceExists"] = "ResourceExists",
        ["ResourceBusy"] = "ResourceBusy",
        ["InvalidData"] = "InvalidData",
        ["NotInstalled"] = "NotInstalled",
        ["InvalidOperation"] = "InvalidOperation",
        ["Timeout"] = "OperationTimeout",
        ["ConnectionError"] = "ConnectionError",
    };

    [Fact]
    public void EveryErrorKindMapsToTheDesignedCategory()
    {
        var m = ModuleUnderTest.Real;
        var kinds = m.Inspector.FindType("KvmOvercommit.Engine.ErrorKind")!.GetEnumNames();
        var categories = m.Inspector.SmaType("System.Management.Automation.ErrorCategory").GetEnumNames().ToHashSet();
        var source = File.ReadAllText(Path.Combine(RepoPaths.Root, "src/KvmOvercommit/ErrorMapping.cs"));
        var table = Regex.Matches(source, @"ErrorKind\.(\w+)\s*=>\s*ErrorCategory\.(\w+)")
            .ToDictionary(x => x.Groups[1].Value, x => x.Groups[2].Value);
        var problems = new List<string>();
        foreach (var kind in kinds.Where(k => k != "Unspecified"))
        {
            if (!table.TryGetValue(kind, out var category)) problems.Add($"ErrorKind.{kind} is not mapped");
            else if (!categories.Contains(category)) problems.Add($"ErrorKind.{kind} → ErrorCategory.{category}, which does not exist");
            else if (Expected.TryGetValue(kind, out var want) && want != category) problems.Add($"ErrorKind.{kind} → {category}, DESIGN.md says {want}");
            else if (!Expected.ContainsKey(kind)) problems.Add($"ErrorKind.{kind} is new: add its designed category to this test");
        }
        Assert.Contains("_ => ErrorCategory.NotSpecified", source);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }
}
