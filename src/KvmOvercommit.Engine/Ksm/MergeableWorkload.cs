using System.Runtime.InteropServices;

namespace KvmOvercommit.Engine.Ksm;

/// <summary>
/// A real KSM workload: anonymous memory filled with a deterministic pattern and marked MADV_MERGEABLE. Equal seeds
/// give identical pages across processes; pages within one process are all different (each derives from the seed
/// and its index), so merging is not capped by max_page_sharing. Used by tests, benchmarks and the autotuner.
/// </summary>
public sealed class MergeableWorkload : IDisposable
{
    const int PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MADV_MERGEABLE = 12, MADV_UNMERGEABLE = 13;
    IntPtr _addr;

    MergeableWorkload(IntPtr addr, long size, int seed)
    {
        _addr = addr;
        SizeBytes = size;
        Seed = seed;
    }

    /// <summary>Bytes mapped.</summary>
    public long SizeBytes { get; }

    /// <summary>The pattern seed.</summary>
    public int Seed { get; }

    /// <summary>Pages mapped.</summary>
    public long Pages => SizeBytes / Environment.SystemPageSize;

    /// <summary>The line printed when the memory is filled and mergeable (tests wait for it).</summary>
    public string ReadyLine => $"READY pid={Environment.ProcessId} bytes={SizeBytes} pages={Pages} seed={Seed}";

    /// <summary>Maps <paramref name="sizeBytes"/> (rounded up to whole pages), fills it, and marks it mergeable.</summary>
    public static MergeableWorkload Create(long sizeBytes, int seed)
    {
        if (sizeBytes <= 0) throw new KvmOcException(ErrorKind.InvalidArgument, "WorkloadInvalidSize", $"Size must be positive, not {sizeBytes}.", sizeBytes);
        // More than the host's memory would only end in the OOM killer (or an mmap failure): refuse it up front.
        if (sizeBytes > Math.Min(long.MaxValue / 2, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes))
            throw new KvmOcException(ErrorKind.InvalidArgument, "WorkloadInvalidSize", $"Size {sizeBytes} bytes is more than this host's memory.", sizeBytes, "Give a smaller --size-mb.");
        long page = Environment.SystemPageSize;
        long size = (sizeBytes + page - 1) / page * page;
        var p = mmap(IntPtr.Zero, (nuint)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == new IntPtr(-1))
            throw new KvmOcException(ErrorKind.Unspecified, "WorkloadMmapFailed", $"mmap of {size} bytes failed (errno {Marshal.GetLastPInvokeError()}).", size);
        var w = new MergeableWorkload(p, size, seed);
        w.Fill();
        if (madvise(p, (nuint)size, MADV_MERGEABLE) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            w.Dispose();
            throw new KvmOcException(errno == Errno.EINVAL ? ErrorKind.NotInstalled : ErrorKind.Unspecified, "WorkloadMadviseFailed",
                $"madvise(MADV_MERGEABLE) failed (errno {errno}).", size, "The kernel needs CONFIG_KSM.");
        }
        return w;
    }

    unsafe void Fill()
    {
        long page = Environment.SystemPageSize;
        int words = (int)(page / sizeof(ulong));
        for (long i = 0; i < Pages; i++)
        {
            ulong x = SplitMix((ulong)(uint)Seed << 32 ^ (ulong)i ^ 0x9E3779B97F4A7C15UL);
            var dst = (ulong*)((byte*)_addr + i * page);
            for (int j = 0; j < words; j++)
            {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                dst[j] = x;
            }
        }
    }

    /// <summary>The expected first 8 bytes of page <paramref name="index"/> for a seed (lets tests check the pattern).</summary>
    public static ulong FirstWord(int seed, long index)
    {
        ulong x = SplitMix((ulong)(uint)seed << 32 ^ (ulong)index ^ 0x9E3779B97F4A7C15UL);
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        return x;
    }

    /// <summary>Reads the first 8 bytes of a page of this workload's memory.</summary>
    public unsafe ulong ReadFirstWord(long index) => *(ulong*)((byte*)_addr + index * Environment.SystemPageSize);

    static ulong SplitMix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return z == 0 ? 1 : z;
    }

    /// <summary>
    /// `kvmoc ksm workload`: creates the workload, reports the ready line, and holds the memory until cancelled or
    /// until <paramref name="hold"/> has passed (forever when null).
    /// </summary>
    public static async Task RunAsync(long sizeBytes, int seed, TimeSpan? hold, Action<string> ready, CancellationToken ct)
    {
        using var w = Create(sizeBytes, seed);
        ready(w.ReadyLine);
        try
        {
            await Task.Delay(hold ?? Timeout.InfiniteTimeSpan, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>Unmaps the memory.</summary>
    public void Dispose()
    {
        if (_addr == IntPtr.Zero) return;
        munmap(_addr, (nuint)SizeBytes);
        _addr = IntPtr.Zero;
    }

    [DllImport("libc", SetLastError = true)] static extern IntPtr mmap(IntPtr addr, nuint length, int prot, int flags, int fd, long offset);
    [DllImport("libc", SetLastError = true)] static extern int madvise(IntPtr addr, nuint length, int advice);
    [DllImport("libc", SetLastError = true)] static extern int munmap(IntPtr addr, nuint length);
}
