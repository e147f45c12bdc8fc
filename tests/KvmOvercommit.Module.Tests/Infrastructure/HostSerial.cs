using System.Runtime.InteropServices;

namespace KvmOvercommit.Module.Tests.Infrastructure;

/// <summary>
/// Tests that change host state (KSM settings, running QEMU guests, fio load, benchmarks) belong to this collection:
/// xunit runs them one at a time, and <see cref="HostLock"/> also serializes them against other test processes
/// (the engine tests, another worktree's run, a benchmark) on the same machine.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HostSerialCollection : ICollectionFixture<HostLock>
{
    public const string Name = "HostSerial";
}

/// <summary>A machine-wide exclusive lock (flock on /tmp/kvmoc-host-tests.lock) held while the HostSerial collection runs.</summary>
public sealed class HostLock : IDisposable
{
    public const string LockPath = "/tmp/kvmoc-host-tests.lock";
    readonly int _fd;

    public HostLock()
    {
        // O_CLOEXEC: QEMU guests the tests start (they daemonize) must not inherit the lock and hold it after the run.
        _fd = Native.open(LockPath, 0x40 /* O_CREAT */ | 0x2 /* O_RDWR */ | 0x80000 /* O_CLOEXEC */, 0x1B6);
        if (_fd < 0) throw new InvalidOperationException($"cannot open {LockPath}: errno {Marshal.GetLastPInvokeError()}");
        if (Native.flock(_fd, 2 /* LOCK_EX */) != 0) throw new InvalidOperationException($"flock failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public void Dispose()
    {
        Native.flock(_fd, 8 /* LOCK_UN */);
        Native.close(_fd);
    }

    static class Native
    {
        [DllImport("libc", SetLastError = true)] public static extern int open(string path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] public static extern int flock(int fd, int op);
        [DllImport("libc", SetLastError = true)] public static extern int close(int fd);
    }
}
