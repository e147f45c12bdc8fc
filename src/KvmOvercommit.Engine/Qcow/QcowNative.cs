using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace KvmOvercommit.Engine.Qcow;

/// <summary>The few libc calls .NET does not expose: OFD lock probe, st_blocks/st_ino, fsync of a directory.</summary>
internal static class QcowNative
{
    const int F_OFD_GETLK = 36;
    const short F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2;

    /// <summary>QEMU (file-posix) locks bytes from 100 (permission bytes) and 200 (shared bytes) with OFD locks.</summary>
    public const long QemuLockBase = 100;

    [StructLayout(LayoutKind.Sequential)]
    struct Flock
    {
        public short l_type;
        public short l_whence;
        public long l_start;
        public long l_len;
        public int l_pid;
    }

    [DllImport("libc", SetLastError = true)] static extern int fcntl(int fd, int cmd, ref Flock lk);
    [DllImport("libc", SetLastError = true)] static extern int fsync(int fd);
    [DllImport("libc", SetLastError = true)] static extern int fdatasync(int fd);
    [DllImport("libc", SetLastError = true)] static extern int sync_file_range(int fd, long offset, long nbytes, uint flags);
    [DllImport("libc", SetLastError = true, EntryPoint = "open")] static extern int open_(string path, int flags);
    [DllImport("libc", SetLastError = true)] static extern int close(int fd);
    [DllImport("libc", SetLastError = true, EntryPoint = "stat")] static extern unsafe int stat_(string path, byte* buf);
    [DllImport("libc", SetLastError = true)] static extern int chown(string path, uint owner, uint group);

    /// <summary>
    /// True when another open file description holds a lock on QEMU's lock bytes (100 and up): a running QEMU, qemu-img
    /// or qemu-io using the image. Probes with F_OFD_GETLK for a write lock, which conflicts with QEMU's shared locks too.
    /// </summary>
    public static bool IsLocked(SafeFileHandle handle)
    {
        var lk = new Flock { l_type = F_WRLCK, l_whence = 0, l_start = QemuLockBase, l_len = 0 };
        int fd = (int)handle.DangerousGetHandle();
        if (fcntl(fd, F_OFD_GETLK, ref lk) != 0) return false; // file system without OFD locks: nobody can hold QEMU's lock
        return lk.l_type != F_UNLCK;
    }

    /// <summary>True when the file at <paramref name="path"/> is locked by QEMU; false when it does not exist.</summary>
    public static bool IsLocked(string path)
    {
        try
        {
            using var h = FileKind.OpenRead(path, "Image", "QcowOpenFailed", allowBlockDevice: true);
            return IsLocked(h);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or KvmOcException)
        {
            return false;
        }
    }

    public static void Fsync(SafeFileHandle handle)
    {
        if (fsync((int)handle.DangerousGetHandle()) != 0)
            throw new System.ComponentModel.Win32Exception(Marshal.GetLastPInvokeError());
    }

    /// <summary>Starts writing the file's dirty pages back without waiting (sync_file_range SYNC_FILE_RANGE_WRITE); a hint, failures ignored.</summary>
    public static void StartWriteback(SafeFileHandle handle) => sync_file_range((int)handle.DangerousGetHandle(), 0, 0, 2);

    /// <summary>fdatasync: the file's data and the metadata needed to read them (size, allocation) are on disk when it returns.</summary>
    public static void Fdatasync(SafeFileHandle handle)
    {
        if (fdatasync((int)handle.DangerousGetHandle()) != 0)
            throw new System.ComponentModel.Win32Exception(Marshal.GetLastPInvokeError());
    }

    /// <summary>Flushes a directory entry change (a rename) to disk.</summary>
    public static void FsyncDirectory(string dir)
    {
        int fd = open_(dir, 0x10000 /* O_DIRECTORY */);
        if (fd < 0) return;
        try { fsync(fd); } finally { close(fd); }
    }

    /// <summary>Allocated bytes (st_blocks × 512), device and inode of a file; null when stat fails.</summary>
    public static unsafe (long Allocated, ulong Dev, ulong Ino)? Stat(string path)
    {
        byte* buf = stackalloc byte[256];
        if (stat_(path, buf) != 0) return null;
        // x86_64 and aarch64 struct stat: st_dev at 0, st_ino at 8, st_blocks at 64.
        return (*(long*)(buf + 64) * 512, *(ulong*)buf, *(ulong*)(buf + 8));
    }

    /// <summary>Owner and group of a file; null when stat fails.</summary>
    public static unsafe (uint Uid, uint Gid)? Owner(string path)
    {
        byte* buf = stackalloc byte[256];
        if (stat_(path, buf) != 0) return null;
        // x86_64: st_nlink is 8 bytes before st_mode, so st_uid is at 28; aarch64 (the generic layout): st_uid at 24.
        int at = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 28 : 24;
        return (*(uint*)(buf + at), *(uint*)(buf + at + 4));
    }

    /// <summary>
    /// Gives <paramref name="to"/> the owner, group and permission bits of <paramref name="from"/> (a file -Force
    /// replaces keeps who may open it: libvirt's qemu user, a group-readable mode). Owner first, since chown clears
    /// set-id bits. A non-root caller cannot give a file away (EPERM): it stays the caller's, as `cp` leaves it.
    /// </summary>
    public static void CopyOwnerAndMode(string from, string to)
    {
        if (Owner(from) is not { } o) return;
        if (chown(to, o.Uid, o.Gid) != 0 && Marshal.GetLastPInvokeError() is var errno && errno != 1 /* EPERM */)
            throw new System.ComponentModel.Win32Exception(errno);
        File.SetUnixFileMode(to, File.GetUnixFileMode(from));
    }
}
