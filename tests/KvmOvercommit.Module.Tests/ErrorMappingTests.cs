using System.Reflection;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// The one table from engine ErrorKind to PowerShell ErrorCategory (ErrorMapping.ToCategory): every kind is mapped, to
/// the category DESIGN.md names; read from the compiled method, not from its source.
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

    static Dictionary<string, long> EnumValues(Type t) =>
        t.GetFields(BindingFlags.Public | BindingFlags.Static).ToDictionary(f => f.Name, f => Convert.ToInt64(f.GetRawConstantValue()));

    [Fact]
    public void EveryErrorKindMapsToTheDesignedCategory()
    {
        // The compiled table itself: ToCategory's IL, read with MetadataLoadContext and evaluated for every ErrorKind.
        var m = ModuleUnderTest.Real;
        var kinds = EnumValues(m.Inspector.FindType("KvmOvercommit.Engine.ErrorKind")!);
        var categories = EnumValues(m.Inspector.SmaType("System.Management.Automation.ErrorCategory")).ToDictionary(x => x.Value, x => x.Key);
        var toCategory = m.Inspector.FindType("KvmOvercommit.ErrorMapping")!.GetMethod("ToCategory")!;
        string Map(long kind) => categories.TryGetValue(IlEvaluator.Evaluate(toCategory, kind), out var name) ? name : "(not an ErrorCategory)";

        var actual = kinds.Where(k => k.Key != "Unspecified").ToDictionary(k => k.Key, k => Map(k.Value));
        var problems = new List<string>();
        foreach (var (kind, category) in actual)
        {
            if (!Expected.TryGetValue(kind, out var want)) problems.Add($"ErrorKind.{kind} is new (→ {category}): add its designed category to this test and DESIGN.md");
            else if (want != category) problems.Add($"ErrorKind.{kind} → ErrorCategory.{category}; DESIGN.md says {want}");
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        Assert.Equal("NotSpecified", Map(kinds["Unspecified"]));
        Assert.Equal("NotSpecified", Map(12345));
    }

    [Fact]
    public void TheEvaluatorReadsSwitchTablesFaithfully()
    {
        // Guards the IL evaluator on a compiled switch expression whose answers are known.
        using var f = new FixtureModule("""
            namespace KvmOvercommit
            {
                /// <summary>x</summary>
                public enum K { A, B, C, D, E = 10 }
                /// <summary>x</summary>
                public static class T
                {
                    /// <summary>x</summary>
                    public static int Map(K k) => k switch { K.B => 7, K.C => 300, K.D => -1, K.E => 70000, _ => 0 };
                }
            }
            """, "@{}", "<Configuration/>", "<Types/>", "");
        var map = f.Module.Inspector.FindType("KvmOvercommit.T")!.GetMethod("Map")!;
        Assert.Equal([0L, 7, 300, -1, 0, 70000, 0], new long[] { 0, 1, 2, 3, 4, 10, 11 }.Select(k => IlEvaluator.Evaluate(map, k)));
    }
}
