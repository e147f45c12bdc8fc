namespace KvmOvercommit.Engine;

/// <summary>
/// Marks a type as something the module writes to the pipeline (and kvmoc prints with --json). Marked types must be
/// plain data — strings, numbers, enums, UTC DateTimeOffset, TimeSpan, arrays and lists of plain data,
/// Dictionary&lt;string,string&gt; and other marked types — and must round-trip through System.Text.Json with nothing
/// lost. JsonRoundTripTests (tests/KvmOvercommit.Engine.Tests/Fleet) checks every marked type.
/// </summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Struct, Inherited = false, AllowMultiple = false)]
public sealed class OutputObjectAttribute : Attribute
{
}
