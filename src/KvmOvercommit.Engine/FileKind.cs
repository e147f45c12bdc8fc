using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace KvmOvercommit.Engine;

/// <summary>What a path names, as stat(2) (following symbolic links) sees it.</summary>
public enum PathKind
{
    /// <summary>Nothing (ENOENT, or a dangling symbolic link).</summary>
    Missing,
    /// <summary>A regular file.</summary>
    Regular,
    /// <summary>A directory.</summary>
    Directory,
    /// <summary>A character device (/dev/null, a tty).</summary>
    CharacterDevice,
    /// <summary>A block device (a disk, an LVM volume).</summary>
    BlockDevice,
    /// <summary>A FIFO (named pipe): opening it for reading blocks until a writer comes.</summary>
    Fifo,
    /// <summary>A unix socket.</summary>
    Socket,
    /// <summary>A loop of symbolic links (ELOOP).</summary>
    SymlinkLoop,
    /// <summary>stat failed for another reason (EACCES on a folder on the way, ENOTDIR…).</summary>
    Inaccessible,
}

/// <summary>
/// The rule every path the user gives as a file goes through: only regular files (and, where a disk is meant, block
/// devices) are read or replaced. A FIFO, socket, character device, directory or symlink loop is refused before anything
/// opens it (a FIFO's open would block forever), and what opens a file opens it with O_NONBLOCK and checks the opened
/// descriptor again, so a file swapped for a FIFO between the check and the open does not hang either.
/// </summary>
public static class FileKind
{
    const int O_RDONLY = 0, O_NOCTTY = 0x100, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    const uint S_IFMT = 0xF000, S_IFSOCK = 0xC000, S_IFLNK = 0xA000, S_IFREG = 0x8000, S_IFBLK = 0x6000, S_IFDIR = 0x4000, S_IFCHR = 0x2000, S_IFIFO = 0x1000;
    const int ELOOP = 40;

    [DllImport("libc", SetLastError = true, EntryPoint = "stat")] static extern unsafe int stat_(string path, byte* buf);
    [DllImport("libc", SetLastError = true, EntryPoint = "fstat")] static extern unsafe int fstat_(int fd, byte* buf);
    [DllImport("libc", SetLastError = true, EntryPoint = "open")] static extern int open_(string path, int flags);
    [DllImport("libc", SetLastError = true, EntryPoint = "close")] static extern int close_(int fd);

    // x86_64: st_dev 8, st_ino 8, st_nlink 8, then st_mode; aarch64 (the generic layout): st_dev 8, st_ino 8, st_mode.
    static int ModeOffset => RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;

    static PathKind FromMode(uint mode) => (mode & S_IFMT) switch
    {
        S_IFREG => PathKind.Regular,
        S_IFDIR => PathKind.Directory,
        S_IFCHR => PathKind.CharacterDevice,
        S_IFBLK => PathKind.BlockDevice,
        S_IFIFO => PathKind.Fifo,
        S_IFSOCK => PathKind.Socket,
        S_IFLNK => PathKind.SymlinkLoop,
        _ => PathKind.Inaccessible,
    };

    /// <summary>What <paramref name="path"/> names, following symbolic links; never opens it.</summary>
    public static unsafe PathKind Of(string path)
    {
        byte* buf = stackalloc byte[256];
        if (stat_(path, buf) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return errno switch
            {
                Errno.ENOENT => PathKind.Missing,
                ELOOP => PathKind.SymlinkLoop,
                20 /* ENOTDIR */ => PathKind.Missing,
                _ => PathKind.Inaccessible,
            };
        }
        return FromMode(*(uint*)(buf + ModeOffset));
    }

    /// <summary>"a FIFO (named pipe)", "a directory", …: the kind in words, for messages.</summary>
    public static string Describe(PathKind kind) => kind switch
    {
        PathKind.Regular => "a regular file",
        PathKind.Directory => "a directory",
        PathKind.CharacterDevice => "a character device",
        PathKind.BlockDevice => "a block device",
        PathKind.Fifo => "a FIFO (named pipe)",
        PathKind.Socket => "a unix socket",
        PathKind.SymlinkLoop => "a loop of symbolic links",
        PathKind.Missing => "missing",
        _ => "not accessible",
    };

    /// <summary>
    /// Refuses anything but a regular file (or a block device with <paramref name="allowBlockDevice"/>): a directory is
    /// InvalidArgument <paramref name="directoryId"/> (default "PathIsDirectory"), a FIFO, socket, character device or
    /// symlink loop InvalidArgument <paramref name="notFileId"/> (default "PathNotRegularFile"). Returns the kind found
    /// (Missing and Inaccessible pass: the caller reports those in its own terms).
    /// </summary>
    public static PathKind RequireFile(string path, string what, bool allowBlockDevice = false, string? directoryId = null, string? notFileId = null)
    {
        var kind = Of(path);
        switch (kind)
        {
            case PathKind.Regular:
            case PathKind.Missing:
            case PathKind.Inaccessible:
            case PathKind.BlockDevice when allowBlockDevice:
                return kind;
            case PathKind.Directory:
                throw new KvmOcException(ErrorKind.InvalidArgument, directoryId ?? "PathIsDirectory", $"{what} '{path}' is a directory, not a file.", path,
                    "Give the path of a file inside it.");
            default:
                throw new KvmOcException(ErrorKind.InvalidArgument, notFileId ?? "PathNotRegularFile", $"{what} '{path}' is {Describe(kind)}, not a regular file{(allowBlockDevice ? " or block device" : "")}.", path,
                    "Only regular files are read or replaced" + (allowBlockDevice ? " (and block devices used as disks)." : "."));
        }
    }

    /// <summary>
    /// Opens a file for reading without ever blocking: O_RDONLY|O_NONBLOCK|O_NOCTTY, then fstat on the descriptor; anything
    /// but a regular file (or a block device with <paramref name="allowBlockDevice"/>) is closed again and refused as
    /// <see cref="RequireFile"/> does. Open errors become KvmOcException with <paramref name="openFailedId"/>.
    /// </summary>
    public static unsafe SafeFileHandle OpenRead(string path, string what, string openFailedId, bool allowBlockDevice = false, string? directoryId = null, string? notFileId = null)
    {
        RequireFile(path, what, allowBlockDevice, directoryId, notFileId);
        int fd = open_(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == ELOOP) RequireFile(path, what, allowBlockDevice, directoryId, notFileId);
            var w = new System.ComponentModel.Win32Exception(errno);
            var kind = errno switch
            {
                Errno.ENOENT => ErrorKind.NotFound,
                Errno.EACCES or Errno.EPERM => ErrorKind.PermissionDenied,
                Errno.EBUSY => ErrorKind.ResourceBusy,
                Errno.EINVAL => ErrorKind.InvalidArgument,
                _ => ErrorKind.Unspecified,
            };
            throw new KvmOcException(kind, openFailedId, $"Cannot open {what.ToLowerInvariant()} '{path}': {w.Message}", path,
                kind == ErrorKind.PermissionDenied ? "Run as root (sudo pwsh, or sudo kvmoc), or make the file readable." : null, w);
        }
        byte* buf = stackalloc byte[256];
        var found = fstat_(fd, buf) == 0 ? FromMode(*(uint*)(buf + ModeOffset)) : PathKind.Inaccessible;
        if (found == PathKind.Regular || found == PathKind.BlockDevice && allowBlockDevice)
            return new SafeFileHandle((IntPtr)fd, ownsHandle: true);
        close_(fd);
        if (found == PathKind.Directory)
            throw new KvmOcException(ErrorKind.InvalidArgument, directoryId ?? "PathIsDirectory", $"{what} '{path}' is a directory, not a file.", path);
        throw new KvmOcException(ErrorKind.InvalidArgument, notFileId ?? "PathNotRegularFile", $"{what} '{path}' is {Describe(found)}, not a regular file.", path,
            "Only regular files are read or replaced.");
    }
}
