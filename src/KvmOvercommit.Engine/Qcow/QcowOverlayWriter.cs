using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace KvmOvercommit.Engine.Qcow;

/// <summary>Options of New-QcowOverlay / `kvmoc qcow overlay` that apply to every overlay of a batch.</summary>
public sealed class QcowOverlayOptions
{
    /// <summary>Backing format (qcow2, raw…); probed from the backing file's magic when null.</summary>
    public string? BackingFormat { get; set; }

    /// <summary>Virtual size in bytes; the backing image's virtual size when null. Rounded up to 512 bytes as qemu-img does.</summary>
    public long? SizeBytes { get; set; }

    /// <summary>Store the backing name relative to the overlay's folder instead of absolute.</summary>
    public bool RelativeBackingPath { get; set; }

    /// <summary>Cluster size in bytes (power of two, 4 KiB … 2 MiB); 64 KiB when null.</summary>
    public int? ClusterSize { get; set; }

    /// <summary>Replace an existing file (never one a running QEMU holds).</summary>
    public bool Force { get; set; }
}

/// <summary>The backing image of a batch of overlays, read once: its header, its chain and the identities of every link.</summary>
public sealed class QcowBacking
{
    internal QcowBacking(QcowImage image, HashSet<(ulong, ulong)> chainKeys)
    {
        Image = image;
        ChainKeys = chainKeys;
    }

    /// <summary>The backing image as Get-QcowImage reports it (full path, format, chain).</summary>
    public QcowImage Image { get; }

    /// <summary>(device, inode) of the backing file and every image below it, to refuse loops.</summary>
    internal HashSet<(ulong, ulong)> ChainKeys { get; }
}

/// <summary>What New-QcowOverlay will do for one target: the -WhatIf description, and the input of Apply.</summary>
public sealed class QcowOverlayPlan
{
    /// <summary>Full path of the overlay to create.</summary>
    public string Path { get; set; } = "";
    /// <summary>The backing name as it will be stored in the header.</summary>
    public string BackingFile { get; set; } = "";
    /// <summary>The backing file resolved the way QEMU will resolve the stored name.</summary>
    public string BackingPath { get; set; } = "";
    /// <summary>Backing format written into the backing-format extension.</summary>
    public string BackingFormat { get; set; } = "";
    /// <summary>Virtual size of the overlay in bytes.</summary>
    public long VirtualSize { get; set; }
    /// <summary>Cluster size in bytes.</summary>
    public int ClusterSize { get; set; }
    /// <summary>True when an existing file will be replaced (-Force).</summary>
    public bool ReplacesExisting { get; set; }
    /// <summary>One line for -WhatIf / ShouldProcess.</summary>
    public string Action => $"{(ReplacesExisting ? "Replace with" : "Create")} qcow2 overlay ({VirtualSize} bytes, cluster {ClusterSize}) backed by '{BackingFile}' ({BackingFormat})";

    internal QcowBacking Backing { get; set; } = null!;
}

/// <summary>
/// Writes empty qcow2 v3 overlays natively, byte for byte what `qemu-img create -f qcow2 -b B -F fmt` writes (QEMU 7.2):
/// header cluster (header, backing-format extension, feature-name table, backing name), refcount table, refcount
/// block, L1 table. Written under a temporary name, fsynced, renamed; the backing file is only ever opened read-only.
/// </summary>
public static class QcowOverlayWriter
{
    internal const int HeaderLength = 112;
    internal const int DefaultClusterSize = 65536;
    internal const int MinClusterSize = 4096, MaxClusterSize = 2 * 1024 * 1024;

    /// <summary>Reads the backing image (header and chain) once for a whole batch of overlays.</summary>
    public static QcowBacking OpenBacking(string backingPath, string? backingFormat, IOperationObserver? observer = null)
    {
        string full = System.IO.Path.GetFullPath(backingPath);
        // Regular files (and block devices) only: a FIFO would block the read, a character device is no image.
        if (FileKind.RequireFile(full, "Backing file", allowBlockDevice: true, directoryId: "QcowBackingIsDirectory", notFileId: "QcowBackingNotRegularFile") == PathKind.Missing)
            throw new KvmOcException(ErrorKind.NotFound, "QcowBackingNotFound", $"Backing file '{full}' does not exist.", full, "Check -BackingPath.");
        if (backingFormat is not null && !IsFormatName(backingFormat))
            throw new KvmOcException(ErrorKind.InvalidArgument, "QcowBadBackingFormat", $"'{backingFormat}' is not a format name.", backingFormat);
        if (backingFormat is not null && !QemuBlockDrivers.Contains(backingFormat))
            throw new KvmOcException(ErrorKind.InvalidArgument, "QcowBadBackingFormat", $"'{backingFormat}' is not a format QEMU knows (qemu-img would say: Unknown driver '{backingFormat}').", backingFormat,
                "Use -BackingFormat qcow2 or raw, or leave it out to probe the file.");
        var image = QcowReader.ReadHeader(full, backingFormat);
        if (backingFormat is null && image.Format is not ("qcow2" or "raw"))
            throw new KvmOcException(ErrorKind.InvalidArgument, "QcowBackingFormatUnsupported",
                $"Backing file '{full}' is a {image.Format} image.", full, $"Pass -BackingFormat {image.Format} if QEMU should read it as such.");
        var key = QcowNative.Stat(full);
        QcowReader.ResolveChain(image, key is { } k ? (k.Dev, k.Ino) : null, observer);
        var keys = new HashSet<(ulong, ulong)>();
        foreach (var p in image.BackingChain.Prepend(image.Path))
            if (QcowNative.Stat(p) is { } s) keys.Add((s.Dev, s.Ino));
        observer?.Verbose($"Backing {image.Path}: {image.Format}, {image.VirtualSize} bytes, chain depth {image.BackingChain.Length + 1}");
        return new QcowBacking(image, keys);
    }

    static KvmOcException InUse(string path) =>
        new(ErrorKind.ResourceBusy, "QcowImageInUse", $"'{path}' is in use by a running QEMU (its image lock is held).", path,
            "Stop the guest that uses it first; -Force never replaces an image in use.");

    static KvmOcException Exists(string path) =>
        new(ErrorKind.ResourceExists, "QcowOverlayExists", $"'{path}' already exists.", path, "Use -Force to replace it.");

    /// <summary>QEMU 7.2's block drivers (`qemu-img --help`, "Supported formats"): a backing format outside these makes QEMU fail with "Unknown driver".</summary>
    internal static readonly HashSet<string> QemuBlockDrivers = new(StringComparer.Ordinal)
    {
        "blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress", "copy-before-write", "copy-on-read", "dmg", "file", "ftp", "ftps",
        "gluster", "host_cdrom", "host_device", "http", "https", "iscsi", "iser", "luks", "nbd", "nfs", "null-aio", "null-co", "nvme", "parallels",
        "preallocate", "qcow", "qcow2", "qed", "quorum", "raw", "rbd", "replication", "snapshot-access", "ssh", "throttle", "vdi", "vhdx", "vmdk",
        "vpc", "vvfat",
    };

    /// <summary>
    /// The largest virtual size a qcow2 image with this cluster size can have: the L1 table (at most
    /// <see cref="QcowReader.MaxL1Bytes"/>, as in QEMU) times what one L2 table maps. Computed without overflow: for
    /// 2 MiB clusters it is 2^61 bytes.
    /// </summary>
    public static long MaxVirtualSize(int clusterSize) => QcowReader.MaxL1Bytes / 8 * ((long)clusterSize * (clusterSize / 8));

    static bool IsFormatName(string s) => s.Length is > 0 and < 16 && s.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_');

    /// <summary>Decides everything for one overlay without touching the disk (the -WhatIf half).</summary>
    public static QcowOverlayPlan Plan(string path, QcowBacking backing, QcowOverlayOptions options, IOperationObserver? observer = null)
    {
        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full) ?? "/";
        var b = backing.Image;
        int cs = options.ClusterSize ?? DefaultClusterSize;
        if (cs < MinClusterSize || cs > MaxClusterSize || (cs & (cs - 1)) != 0)
            throw new KvmOcException(ErrorKind.InvalidArgument, "QcowBadClusterSize", $"Cluster size {cs} is not a power of two from {MinClusterSize} to {MaxClusterSize}.", cs);
        if (b.VirtualSize is null && options.SizeBytes is null)
            throw new KvmOcException(ErrorKind.InvalidArgument, "QcowBackingSizeUnknown", $"Cannot tell the virtual size of '{b.Path}' as {options.BackingFormat ?? b.Format}.", b.Path, "Give the overlay's size (-SizeBytes, kvmoc: --size-bytes).");
        if (!Directory.Exists(dir))
            throw new KvmOcException(ErrorKind.NotFound, "QcowTargetFolderNotFound", $"Folder '{dir}' does not exist.", full,
                "Create the folder first (New-Item -ItemType Directory, mkdir -p), or name a path in an existing folder.");
        // Only a regular file is ever replaced: a device node, FIFO or socket is refused even with -Force (and -WhatIf
        // never offers to replace one).
        var targetKind = FileKind.RequireFile(full, "Overlay target", directoryId: "QcowTargetIsDirectory", notFileId: "QcowTargetNotRegularFile");
        bool exists = targetKind == PathKind.Regular;
        if (string.Equals(full, b.Path, StringComparison.Ordinal) || exists && QcowNative.Stat(full) is { } ts && backing.ChainKeys.Contains((ts.Dev, ts.Ino)))
        {
            bool self = string.Equals(full, b.Path, StringComparison.Ordinal) || QcowNative.Stat(b.Path) is { } bs && QcowNative.Stat(full) is { } t2 && bs.Dev == t2.Dev && bs.Ino == t2.Ino;
            throw new KvmOcException(ErrorKind.InvalidArgument, self ? "QcowOverlayIsOwnBacking" : "QcowBackingChainLoop",
                self ? $"'{full}' cannot be its own backing file." : $"'{full}' is in the backing chain of '{b.Path}'; replacing it would close a loop.", full,
                "Choose another overlay name.");
        }
        if (exists)
        {
            if (QcowNative.IsLocked(full))
                throw InUse(full);
            if (!options.Force)
                throw Exists(full);
        }

        string stored = b.Path;
        if (options.RelativeBackingPath)
        {
            stored = System.IO.Path.GetRelativePath(dir, b.Path);
            int colon = stored.IndexOf(':'), slash = stored.IndexOf('/');
            if (colon >= 0 && (slash < 0 || colon < slash)) stored = "./" + stored; // QEMU would take "a:b" for a protocol
        }
        string format = options.BackingFormat ?? b.Format;
        int nameBytes = Encoding.UTF8.GetByteCount(stored);
        int nameOffset = BackingNameOffset(format, cs);
        if (nameBytes > QcowReader.MaxBackingNameBytes || nameOffset + nameBytes > cs)
            throw new KvmOcException(ErrorKind.InvalidArgument, "QcowBackingNameTooLong",
                $"Backing name '{stored}' is {nameBytes} bytes; qcow2 allows at most {Math.Min(QcowReader.MaxBackingNameBytes, cs - nameOffset)}.", full,
                "Use -RelativeBackingPath or a shorter path.");

        if (options.SizeBytes is null && b.VirtualSize is null)
            throw new KvmOcException(ErrorKind.InvalidArgument, "QcowBackingSizeUnknown", $"Cannot tell the virtual size of '{b.Path}' as {options.BackingFormat ?? b.Format}.", b.Path, "Pass -SizeBytes.");
        long backingSize = b.VirtualSize ?? 0;
        long size = options.SizeBytes ?? backingSize;
        if (size < 0) throw new KvmOcException(ErrorKind.InvalidArgument, "QcowBadSize", $"Size {size} is negative.", size);
        // Checked before rounding, so nothing near long.MaxValue overflows; the limit is a multiple of 512, so rounding stays within it.
        long max = MaxVirtualSize(cs);
        if (size > max)
            throw new KvmOcException(ErrorKind.InvalidArgument, "QcowSizeTooLarge", $"{size} bytes is too large: qcow2 with {cs}-byte clusters holds at most {max} bytes.", size,
                cs < MaxClusterSize && size <= MaxVirtualSize(MaxClusterSize) ? $"Use a larger -ClusterSize ({MaxClusterSize} holds up to {MaxVirtualSize(MaxClusterSize)} bytes)." : $"Give a -SizeBytes of at most {MaxVirtualSize(MaxClusterSize)} bytes (with -ClusterSize {MaxClusterSize}).");
        long rounded = (size + 511) / 512 * 512;
        if (rounded != size) observer?.Verbose($"Size {size} rounded up to {rounded} bytes (512-byte sectors).");
        if (options.SizeBytes is not null && rounded < backingSize)
            observer?.Warning($"'{full}': size {rounded} is smaller than the backing image's {backingSize} bytes; the guest will not see the end of the base disk.");

        return new QcowOverlayPlan
        {
            Path = full,
            BackingFile = stored,
            BackingPath = QcowReader.ResolveBacking(full, stored),
            BackingFormat = format,
            VirtualSize = rounded,
            ClusterSize = cs,
            ReplacesExisting = exists,
            Backing = backing,
        };
    }

    /// <summary>QEMU writes the feature-name table only when the cluster is larger than 4 KiB (it would crowd the header).</summary>
    static bool WritesFeatureTable(int clusterSize) => clusterSize > 4096;

    static int BackingNameOffset(string format, int clusterSize) =>
        HeaderLength + 8 + Pad8(Encoding.UTF8.GetByteCount(format)) + (WritesFeatureTable(clusterSize) ? 8 + FeatureTable.Length : 0) + 8;

    static int Pad8(int n) => (n + 7) & ~7;

    static readonly byte[] FeatureTable = BuildFeatureTable();

    static byte[] BuildFeatureTable()
    {
        var t = new byte[QcowReader.DefaultFeatureNames.Length * 48];
        for (int i = 0; i < QcowReader.DefaultFeatureNames.Length; i++)
        {
            var (type, bit, name) = QcowReader.DefaultFeatureNames[i];
            t[i * 48] = (byte)type;
            t[i * 48 + 1] = (byte)bit;
            Encoding.ASCII.GetBytes(name, t.AsSpan(i * 48 + 2));
        }
        return t;
    }

    /// <summary>The bytes of an empty overlay: the pieces to write at their offsets, and the file length.</summary>
    internal static (List<(long Offset, byte[] Data)> Writes, long Length) Layout(QcowOverlayPlan plan)
    {
        int cs = plan.ClusterSize;
        int clusterBits = System.Numerics.BitOperations.Log2((uint)cs);
        long l2Coverage = (long)cs * (cs / 8);
        long l1Entries = (plan.VirtualSize + l2Coverage - 1) / l2Coverage;
        long l1Bytes = l1Entries * 8;
        long l1Clusters = (l1Bytes + cs - 1) / cs;
        long perBlock = cs / 2; // 16-bit refcounts
        long used = 3 + l1Clusters;
        // Refcount block 0 sits at cluster 2. When the L1 table outgrows what it describes (4 KiB clusters, > 1 TiB),
        // QEMU allocates further blocks while it sets the L1 clusters' refcounts in order, each at the next free cluster;
        // a block landing in a range without a block first allocates that range's block. Reproduce that order exactly.
        var blockAt = new List<long> { 2 };
        long next = used;
        void Ensure(long b)
        {
            while (blockAt.Count <= b) blockAt.Add(0);
            if (blockAt[(int)b] != 0) return;
            long f = next++;
            if (f / perBlock != b) Ensure(f / perBlock);
            blockAt[(int)b] = f;
        }
        for (long b = 1; b <= (used - 1) / perBlock; b++) Ensure(b);
        long blocks = blockAt.Count;
        long total = next;

        // Cluster 0: header, extensions, backing name.
        var fmt = Encoding.UTF8.GetBytes(plan.BackingFormat);
        var name = Encoding.UTF8.GetBytes(plan.BackingFile);
        int nameOffset = BackingNameOffset(plan.BackingFormat, cs);
        var h = new byte[nameOffset + name.Length];
        var s = h.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(s, QcowReader.QcowMagic);
        BinaryPrimitives.WriteUInt32BigEndian(s[4..], 3);
        BinaryPrimitives.WriteUInt64BigEndian(s[8..], (ulong)nameOffset);
        BinaryPrimitives.WriteUInt32BigEndian(s[16..], (uint)name.Length);
        BinaryPrimitives.WriteUInt32BigEndian(s[20..], (uint)clusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(s[24..], (ulong)plan.VirtualSize);
        BinaryPrimitives.WriteUInt32BigEndian(s[36..], (uint)l1Entries);
        BinaryPrimitives.WriteUInt64BigEndian(s[40..], l1Entries > 0 ? 3UL * (ulong)cs : 0);
        BinaryPrimitives.WriteUInt64BigEndian(s[48..], (ulong)cs);
        BinaryPrimitives.WriteUInt32BigEndian(s[56..], 1);
        BinaryPrimitives.WriteUInt32BigEndian(s[96..], 4);
        BinaryPrimitives.WriteUInt32BigEndian(s[100..], HeaderLength);
        int o = HeaderLength;
        BinaryPrimitives.WriteUInt32BigEndian(s[o..], QcowReader.ExtBackingFormat);
        BinaryPrimitives.WriteUInt32BigEndian(s[(o + 4)..], (uint)fmt.Length);
        fmt.CopyTo(s[(o + 8)..]);
        o += 8 + Pad8(fmt.Length);
        if (WritesFeatureTable(cs))
        {
            BinaryPrimitives.WriteUInt32BigEndian(s[o..], QcowReader.ExtFeatureTable);
            BinaryPrimitives.WriteUInt32BigEndian(s[(o + 4)..], (uint)FeatureTable.Length);
            FeatureTable.CopyTo(s[(o + 8)..]);
            o += 8 + FeatureTable.Length;
        }
        o += 8; // end-of-extensions marker: eight zero bytes
        name.CopyTo(s[o..]);

        // Refcount table (cluster 1): refcount block 0 at cluster 2, further blocks (only for huge L1 tables) after the L1 table.
        var refTable = new byte[blocks * 8];
        for (long k = 0; k < blocks; k++)
            BinaryPrimitives.WriteUInt64BigEndian(refTable.AsSpan((int)(k * 8)), (ulong)(blockAt[(int)k] * cs));
        if (refTable.Length > cs)
            throw new KvmOcException(ErrorKind.InvalidArgument, "QcowSizeTooLarge", $"{plan.VirtualSize} bytes needs more than one refcount table cluster.", plan.VirtualSize);

        var writes = new List<(long, byte[])> { (0, h), (cs, refTable) };
        for (long k = 0; k < blocks; k++)
        {
            long first = k * perBlock, count = Math.Min(perBlock, total - first);
            var block = new byte[count * 2];
            for (long i = 0; i < count; i++) block[i * 2 + 1] = 1;
            writes.Add((blockAt[(int)k] * cs, block));
        }
        long length = blocks > 1 ? total * cs : l1Entries > 0 ? 3L * cs + l1Bytes : 3L * cs;
        return (writes, length);
    }

    /// <summary>Writes one overlay (temporary name, fsync, rename) and returns it as Get-QcowImage would report it.</summary>
    public static QcowImage Apply(QcowOverlayPlan plan, IOperationObserver? observer = null, bool syncDirectory = true)
    {
        KvmOcException? error = null;
        var made = ApplyMany(new[] { plan }, observer, e => error = e, syncDirectory);
        if (error is not null) throw error;
        return made.Single();
    }

    /// <summary>
    /// Writes a batch of overlays so that a crash never leaves a half-written file under a final name: every overlay is
    /// first written under a temporary name in its target folder; then the data are made durable (fsync for a single
    /// overlay; for a batch, writeback of all files is started first and then each is fdatasynced, so the journal commits
    /// the whole batch at once instead of once per file); only then is each renamed to its final name (never over a file that appeared meanwhile, never over an
    /// image a QEMU has locked since the plan was made); finally each folder is fsynced once. A failure of one overlay is
    /// reported through <paramref name="onError"/>, its temporary file removed, and the others go on.
    /// </summary>
    public static List<QcowImage> ApplyMany(IReadOnlyList<QcowOverlayPlan> plans, IOperationObserver? observer, Action<KvmOcException> onError, bool syncDirectories = true)
    {
        var results = new List<QcowImage>();
        var dirs = new HashSet<string>(StringComparer.Ordinal);
        bool single = plans.Count == 1;
        // In chunks, so that a huge batch never holds more than FlushChunk files open at once.
        foreach (var chunk in plans.Chunk(FlushChunk))
        {
            var written = new List<(QcowOverlayPlan Plan, string Tmp, SafeFileHandle Handle)>();
            var temps = written;
            try
            {
                foreach (var plan in chunk)
                {
                    string tmp = TempName(plan.Path);
                    SafeFileHandle? h = null;
                    if (Attempt(plan, tmp, onError, () => h = WriteTemp(plan, tmp, single))) written.Add((plan, tmp, h!));
                }
                if (!single)
                {
                    // Every file's writeback was started as it was written; now wait for each: the file system commits
                    // the chunk's metadata in one or a few journal commits instead of one per fsync, and only our own
                    // files are flushed.
                    temps = temps.Where(t => Attempt(t.Plan, t.Tmp, onError, () => QcowNative.Fdatasync(t.Handle))).ToList();
                    observer?.Verbose($"Flushed {temps.Count} overlay(s) (sync_file_range, fdatasync)");
                }
            }
            finally
            {
                foreach (var t in written) t.Handle.Dispose();
            }
            foreach (var (plan, tmp, _) in temps)
            {
                if (!Attempt(plan, tmp, onError, () => Publish(plan, tmp))) continue;
                dirs.Add(System.IO.Path.GetDirectoryName(plan.Path) ?? "/");
                observer?.Verbose($"Created {plan.Path}: qcow2 v3, {plan.VirtualSize} bytes, backing '{plan.BackingFile}' ({plan.BackingFormat})");
                results.Add(Describe(plan));
            }
        }
        if (syncDirectories) SyncDirectories(dirs);
        return results;
    }

    const int FlushChunk = 256;

    static string TempName(string path) =>
        System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path) ?? "/", $".{System.IO.Path.GetFileName(path)}.{Guid.NewGuid():N}.kvmoc-tmp");

    /// <summary>Runs one step for one overlay; an I/O failure becomes a KvmOcException for onError and removes the temporary file.</summary>
    static bool Attempt(QcowOverlayPlan plan, string tmp, Action<KvmOcException> onError, Action step)
    {
        KvmOcException failure;
        try
        {
            step();
            return true;
        }
        catch (KvmOcException e)
        {
            failure = e;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception)
        {
            failure = KvmOcException.FromIo(e, "QcowOverlayWriteFailed", $"Cannot write overlay '{plan.Path}'", plan.Path);
        }
        try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        onError(failure);
        return false;
    }

    /// <summary>Writes the overlay's bytes into a new temporary file and returns it open: fsynced when alone, else with its writeback started.</summary>
    static SafeFileHandle WriteTemp(QcowOverlayPlan plan, string tmp, bool alone)
    {
        var (writes, length) = Layout(plan);
        var h = File.OpenHandle(tmp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        try
        {
            foreach (var (offset, data) in writes) RandomAccess.Write(h, data, offset);
            RandomAccess.SetLength(h, length);
            if (plan.ReplacesExisting) QcowNative.CopyOwnerAndMode(plan.Path, tmp);
            if (alone) QcowNative.Fsync(h);
            else QcowNative.StartWriteback(h);
            return h;
        }
        catch
        {
            h.Dispose();
            throw;
        }
    }

    static void Publish(QcowOverlayPlan plan, string tmp)
    {
        if (plan.ReplacesExisting)
        {
            // Re-check right before the rename: a guest may have started since the plan was made.
            if (QcowNative.IsLocked(plan.Path)) throw InUse(plan.Path);
            FileKind.RequireFile(plan.Path, "Overlay target", directoryId: "QcowTargetIsDirectory", notFileId: "QcowTargetNotRegularFile");
            File.Move(tmp, plan.Path, overwrite: true);
        }
        else
        {
            RenameNoReplace(tmp, plan.Path);
        }
    }

    static QcowImage Describe(QcowOverlayPlan plan)
    {
        var b = plan.Backing.Image;
        return new QcowImage
        {
            Path = plan.Path,
            Format = "qcow2",
            Version = 3,
            VirtualSize = plan.VirtualSize,
            ClusterSize = plan.ClusterSize,
            FileSize = QcowNative.Stat(plan.Path)?.Allocated ?? 0,
            BackingFile = plan.BackingFile,
            BackingPath = plan.BackingPath,
            BackingFormat = plan.BackingFormat,
            BackingChain = b.BackingChain.Prepend(b.Path).ToArray(),
            RefcountBits = 16,
        };
    }

    /// <summary>Flushes the directory entries of renamed overlays (once per folder for a batch).</summary>
    public static void SyncDirectories(IEnumerable<string> dirs)
    {
        foreach (var d in dirs) QcowNative.FsyncDirectory(d);
    }

    /// <summary>
    /// Creates many overlays on one backing image: the backing is read once, the batch is flushed together and
    /// each folder synced once (see <see cref="ApplyMany"/>). Errors of single overlays go to <paramref name="onError"/>
    /// (or are thrown, the first one, when it is null, after the others were written).
    /// </summary>
    public static IEnumerable<QcowImage> CreateMany(IEnumerable<string> paths, string backingPath, QcowOverlayOptions options, IOperationObserver? observer = null,
        Action<KvmOcException>? onError = null)
    {
        var backing = OpenBacking(backingPath, options.BackingFormat, observer);
        KvmOcException? first = null;
        Action<KvmOcException> report = onError ?? (e => first ??= e);
        var plans = new List<QcowOverlayPlan>();
        foreach (var p in paths)
        {
            try { plans.Add(Plan(p, backing, options, observer)); }
            catch (KvmOcException e) { report(e); }
        }
        var results = ApplyMany(plans, observer, report);
        if (first is not null) throw first;
        return results;
    }


    [DllImport("libc", SetLastError = true)] static extern int renameat2(int olddirfd, string oldpath, int newdirfd, string newpath, uint flags);

    /// <summary>Atomic rename that fails (EEXIST) if the target appeared meanwhile.</summary>
    static void RenameNoReplace(string from, string to)
    {
        const int AT_FDCWD = -100;
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */) == 0) return;
        int errno = Marshal.GetLastPInvokeError();
        if (errno == Errno.EEXIST)
            throw Exists(to);
        if (errno == Errno.EINVAL || errno == 38 /* ENOSYS */)
        {
            File.Move(from, to, overwrite: false);
            return;
        }
        throw new System.ComponentModel.Win32Exception(errno);
    }
}
