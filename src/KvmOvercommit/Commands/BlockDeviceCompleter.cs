using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Io;

namespace KvmOvercommit.Commands;

/// <summary>Tab completion of block device names (the entries of /sys/block).</summary>
public sealed class BlockDeviceCompleter : IArgumentCompleter
{
    /// <inheritdoc />
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var names = BlockDevices.ReadWholeDisks(HostRoots.Default) ?? new HashSet<string>();
        var w = new Wildcard((wordToComplete ?? "") + "*");
        foreach (var n in names.Where(w.IsMatch).OrderBy(n => n, StringComparer.Ordinal))
            yield return new CompletionResult(n, n, CompletionResultType.ParameterValue, n);
    }
}
