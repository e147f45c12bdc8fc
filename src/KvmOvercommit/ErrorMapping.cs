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

    /// <summary>Builds the ErrorRecord for an engine exception: stable id, category, target and the hint as RecommendedAction.</summary>
    public static ErrorRecord ToErrorRecord(KvmOcException e)
    {
        var record = new ErrorRecord(e, e.ErrorId, ToCategory(e.Kind), e.Target);
        record.ErrorDetails = new ErrorDetails(e.Message);
        if (e.Hint is not null) record.ErrorDetails.RecommendedAction = e.Hint;
        return record;
    }

    /// <summary>Wraps an unexpected exception so that the user still sees a one-line error, never a stack trace.</summary>
    public static ErrorRecord ToErrorRecord(Exception e, string errorId, object? target)
    {
        if (e is KvmOcException k) return ToErrorRecord(k);
        var (kind, hint) = KvmOcException.Classify(e);
        var record = new ErrorRecord(e, errorId, ToCategory(kind), target);
        record.ErrorDetails = new ErrorDetails(e.Message);
        if (hint is not null) record.ErrorDetails.RecommendedAction = hint;
        return record;
    }
}
