using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace KvmOvercommit;

/// <summary>
/// Like [ValidateSet] (case-insensitive), but a null value passes: a property that is null on a piped object (a
/// KsmTuning from -PassThru whose AdvisorMode was not replaced) means "leave this setting alone", where [ValidateSet]
/// would refuse the whole pipeline object.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class ValidateSetOrNullAttribute : ValidateArgumentsAttribute
{
    /// <summary>The values allowed besides null.</summary>
    public IReadOnlyList<string> ValidValues { get; }

    /// <summary>Allows <paramref name="validValues"/> (any case) and null.</summary>
    public ValidateSetOrNullAttribute(params string[] validValues) => ValidValues = validValues;

    /// <inheritdoc />
    protected override void Validate(object arguments, EngineIntrinsics engineIntrinsics)
    {
        var value = arguments is PSObject pso ? pso.BaseObject : arguments;
        if (value is null) return;
        var text = value.ToString();
        if (ValidValues.Any(v => string.Equals(v, text, StringComparison.OrdinalIgnoreCase))) return;
        throw new ValidationMetadataException($"The argument \"{text}\" does not belong to the set \"{string.Join(",", ValidValues)}\". Supply one of them, or leave the parameter out to keep the current value.");
    }
}

/// <summary>Tab completion of KSM advisor modes.</summary>
public sealed class AdvisorModeCompleter : IArgumentCompleter
{
    /// <inheritdoc />
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        foreach (var v in new[] { "none", "scan-time" })
            if (v.StartsWith(wordToComplete ?? "", StringComparison.OrdinalIgnoreCase))
                yield return new CompletionResult(v, v, CompletionResultType.ParameterValue, v);
    }
}
