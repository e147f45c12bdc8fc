using System.Management.Automation;
using KvmOvercommit.Engine;

namespace KvmOvercommit;

/// <summary>The one table that turns an engine error kind into a PowerShell ErrorCategory.</summary>
public static class ErrorMapping
{
    /// <summary>Maps an engine error kind onto the ErrorCategory PowerShell users filter on.</summary>
    public static ErrorCategory ToCategory(ErrorKind kind) => kind switch
    {
        ErrorKind.NotFound => ErrorCategory.ObjectNotFound,
        ErrorKind.PermissionDenied => ErrorCategory.PermissionDenied,
        ErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
        ErrorKind.ResourceExists => ErrorCategory.ResourceExists,
        ErrorKind.ResourceBusy => ErrorCategory.ResourceBusy,
        ErrorKind.InvalidData => ErrorCategory.InvalidData,
        ErrorKind.NotInstalled => ErrorCategory.NotInstalled,
        ErrorKind.InvalidOperation => ErrorCategory.InvalidOperation,
        ErrorKind.Timeout => ErrorCategory.OperationTimeout,
        ErrorKind.ConnectionError => ErrorCategory.ConnectionError,
        _ => ErrorCategory.NotSpecified,
    };

    /// <summary>
    /// What to do about an error of this kind when the engine gave no specific hint: every ErrorRecord the module
    /// writes carries a RecommendedAction.
    /// </summary>
    public static string DefaultHint(ErrorKind kind) => kind switch
    {
        ErrorKind.NotFound => "Check the name or path: it must exist on this host.",
        ErrorKind.PermissionDenied => "Run as root (sudo pwsh), or as a user allowed to change this.",
        ErrorKind.InvalidArgument => "Correct the value the message names; Get-Help <command> -Parameter <name> says what it accepts.",
        ErrorKind.ResourceExists => "Choose another name, or add -Force to replace it.",
        ErrorKind.ResourceBusy => "Stop whatever holds it (the message names it), then retry.",
        ErrorKind.InvalidData => "The file or kernel data the message names is malformed: check it or restore a good copy.",
        ErrorKind.NotInstalled => "Install the missing component (the README lists the prerequisites).",
        ErrorKind.InvalidOperation => "Check the current state (the message says what conflicts) and retry.",
        ErrorKind.Timeout => "Retry, or allow more time (-TimeoutSeconds where the command has it).",
        ErrorKind.ConnectionError => "Check that the guest or service is running and its socket is reachable.",
        _ => "See the message; Get-Help <command> -Full describes the parameters.",
    };

    /// <summary>Builds the ErrorRecord for an engine exception: stable id, category, target and the hint as RecommendedAction.</summary>
    public static ErrorRecord ToErrorRecord(KvmOcException e)
    {
        var record = new ErrorRecord(e, e.ErrorId, ToCategory(e.Kind), e.Target);
        record.ErrorDetails = new ErrorDetails(e.Message) { RecommendedAction = e.Hint ?? DefaultHint(e.Kind) };
        return record;
    }

    /// <summary>Wraps an unexpected exception so that the user still sees a one-line error, never a stack trace.</summary>
    public static ErrorRecord ToErrorRecord(Exception e, string errorId, object? target)
    {
        if (e is KvmOcException k) return ToErrorRecord(k);
        var (kind, hint) = KvmOcException.Classify(e);
        var record = new ErrorRecord(e, errorId, ToCategory(kind), target);
        record.ErrorDetails = new ErrorDetails(e.Message) { RecommendedAction = hint ?? DefaultHint(kind) };
        return record;
    }
}
