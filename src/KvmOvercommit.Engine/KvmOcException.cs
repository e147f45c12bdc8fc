using System.ComponentModel;

namespace KvmOvercommit.Engine;

/// <summary>
/// What went wrong, in the terms PowerShell's ErrorCategory uses. The module maps each kind one-to-one onto an
/// ErrorCategory (ErrorMapping in the module project); the CLI maps it onto an exit code.
/// </summary>
public enum ErrorKind
{
    /// <summary>Something unexpected: a bug or an unclassified OS error.</summary>
    Unspecified = 0,
    NotFound,
    PermissionDenied,
    InvalidArgument,
    ResourceExists,
    ResourceBusy,
    InvalidData,
    NotInstalled,
    InvalidOperation,
    Timeout,
    ConnectionError,
}

/// <summary>
/// The one exception type the engine lets escape. Carries a stable error id, the object the error is about and a
/// hint that tells the user what to do next.
/// </summary>
public class KvmOcException : Exception
{
    public KvmOcException(ErrorKind kind, string errorId, string message, object? target = null, string? hint = null, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        ErrorId = errorId;
        Target = target;
        Hint = hint;
    }

    public ErrorKind Kind { get; }

    /// <summary>Stable identifier, e.g. "KsmNotAvailable"; becomes the ErrorRecord's FullyQualifiedErrorId.</summary>
    public string ErrorId { get; }

    /// <summary>The object (path, device, guest name, value) the error is about.</summary>
    public object? Target { get; }

    /// <summary>What the user can do about it (becomes ErrorDetails.RecommendedAction).</summary>
    public string? Hint { get; }

    /// <summary>
    /// Turns an exception from file or process I/O into a KvmOcException with the kind its errno implies
    /// (ENOENT → NotFound, EACCES/EPERM → PermissionDenied, EBUSY → ResourceBusy, EINVAL → InvalidArgument, EEXIST → ResourceExists).
    /// </summary>
    public static KvmOcException FromIo(Exception e, string errorId, string what, object? target, string? hint = null)
    {
        if (e is KvmOcException k) return k;
        var (kind, defaultHint) = Classify(e);
        return new KvmOcException(kind, errorId, $"{what}: {Describe(e)}", target, hint ?? defaultHint, e);
    }

    static string Describe(Exception e) => e is Win32Exception w ? w.Message : e.Message;

    public static (ErrorKind Kind, string? Hint) Classify(Exception e)
    {
        switch (e)
        {
            case FileNotFoundException:
            case DirectoryNotFoundException:
                return (ErrorKind.NotFound, null);
            case UnauthorizedAccessException:
                return (ErrorKind.PermissionDenied, "Run as root (sudo pwsh, or sudo kvmoc).");
        }
        int errno = e is Win32Exception w ? w.NativeErrorCode : Errno.FromHResult(e.HResult);
        return errno switch
        {
            Errno.ENOENT => (ErrorKind.NotFound, null),
            Errno.EACCES or Errno.EPERM => (ErrorKind.PermissionDenied, "Run as root (sudo pwsh, or sudo kvmoc)."),
            Errno.EBUSY => (ErrorKind.ResourceBusy, null),
            Errno.EINVAL => (ErrorKind.InvalidArgument, null),
            Errno.EEXIST => (ErrorKind.ResourceExists, null),
            _ => (ErrorKind.Unspecified, null),
        };
    }
}

/// <summary>Linux errno values the engine distinguishes.</summary>
public static class Errno
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EIO = 5, EACCES = 13, EBUSY = 16, EEXIST = 17, EINVAL = 22, ENOSPC = 28;

    /// <summary>.NET on Unix reports errno in IOException.HResult's low 16 bits for some errors; use it where present.</summary>
    public static int FromHResult(int hresult) => (hresult & unchecked((int)0xFFFF0000)) == unchecked((int)0x80070000) ? hresult & 0xFFFF : hresult is > 0 and < 200 ? hresult : 0;
}
