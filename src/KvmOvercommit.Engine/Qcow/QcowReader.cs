using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace KvmOvercommit.Engine.Qcow;

/// <summary>
/// Reads disk image headers natively: qcow2 v2/v3 with the backing-format (0xE2792ACA) and feature-name-table
/// (0x6803F857) extensions, and recognises raw and other formats by magic. Every malformed field is a
/// KvmOcException(InvalidData) naming the file and the field.
/// </summary>
public static class QcowReader
{
    internal const uint QcowMagic = 0x514649FB; // "QFI\xfb"
    internal const uint ExtEnd = 0, ExtBackingFormat = 0xE2792ACA, ExtFeatureTable = 0x6803F857;
    internal const int MinClusterBits = 9, MaxClusterBits = 21;
    internal const long MaxL1Bytes = 32L * 1024 * 1024;       // QCOW_MAX_L1_SIZE
    internal const long MaxRefTableBytes = 8L * 1024 * 1024;  // QCOW_MAX_REFTABLE_SIZE
    internal const int MaxBackingNameBytes = 1023;
    internal const int MaxSnapshots = 65536;
    internal const int MaxChainDepth = 256;
    const int FirstRead = 64 * 1024;

    static readonly UTF8Encoding StrictUtf8 = new(false, true);

    /// <summary>QEMU's names for the feature bits, used when an image has no feature-name table.</summary>
    internal static readonly (int Type, int Bit, string Name)[] DefaultFeatureNames =
    {
        (0, 0, "dirty bit"), (0, 1, "corrupt bit"), (0, 2, "external data file"), (0, 3, "compression type"), (0, 4, "extended L2 entries"),
        (1, 0, "lazy refcounts"),
        (2, 0, "bitmaps"), (2, 1, "raw external data"),
    };

    /// <summary>
    /// Reads an image and resolves its whole backing chain (a loop is InvalidData). A missing link does not hide the
    /// image, as with `qemu-img info`: the image is returned with the missing file as the last entry of BackingChain and
    /// in MissingBackingFile, and a warning names it.
    /// </summary>
    public static QcowImage Read(string path, IOperationObserver? observer = null)
    {
        var image = ReadOne(path, null, out var key);
        ResolveChain(image, key, observer, tolerateMissing: true);
        return image;
    }

    /// <summary>Reads one image's header without following its backing chain.</summary>
    public static QcowImage ReadHeader(string path, string? forcedFormat = null) => ReadOne(path, forcedFormat, out _);

    /// <summary>Fills BackingChain by reading every link below <paramref name="image"/>.</summary>
    internal static void ResolveChain(QcowImage image, (ulong, ulong)? key, IOperationObserver? observer, bool tolerateMissing = false)
    {
        var visited = new HashSet<(ulong, ulong)>();
        if (key is { } k) visited.Add(k);
        var chain = new List<string>();
        var current = image;
        while (current.BackingPath is { } next)
        {
            if (FileKind.Of(next) == PathKind.Missing)
            {
                if (tolerateMissing)
                {
                    observer?.Warning($"'{current.Path}': backing file '{current.BackingFile}' (resolved to '{next}') does not exist; the backing chain of '{image.Path}' is broken there.");
                    chain.Add(next);
                    image.MissingBackingFile = next;
                    break;
                }
                throw new KvmOcException(ErrorKind.NotFound, "QcowBackingFileMissing",
                    $"'{current.Path}': backing file '{current.BackingFile}' (resolved to '{next}') does not exist.", image.Path,
                    "Restore the backing file, or recreate the overlay against the right base.");
            }
            if (chain.Count >= MaxChainDepth)
                throw new KvmOcException(ErrorKind.InvalidData, "QcowBackingChainTooDeep", $"'{image.Path}': backing chain is deeper than {MaxChainDepth} images.", image.Path);
            var link = ReadOne(next, current.BackingFormat, out var linkKey);
            if (linkKey is { } lk && !visited.Add(lk))
                throw new KvmOcException(ErrorKind.InvalidData, "QcowBackingChainLoop",
                    $"'{image.Path}': backing chain loops back to '{next}' (via '{current.Path}').", image.Path,
                    "Point one of the images at a different backing file (qemu-img rebase -u).");
            observer?.Verbose($"{current.Path} → backing {link.Path} ({link.Format})");
            chain.Add(link.Path);
            current = link;
        }
        image.BackingChain = chain.ToArray();
    }

    static QcowImage ReadOne(string path, string? forcedFormat, out (ulong, ulong)? key)
    {
        string full = System.IO.Path.GetFullPath(path);
        // Never blocks: a FIFO, socket or character device is refused before and after the (O_NONBLOCK) open.
        SafeFileHandle handle = FileKind.OpenRead(full, "Image", "QcowOpenFailed", allowBlockDevice: true, directoryId: "QcowPathIsDirectory", notFileId: "QcowPathNotRegularFile");
        using (handle)
        {
            QcowImage image;
            try
            {
                long length = RandomAccess.GetLength(handle);
                var buf = new byte[(int)Math.Min(length, FirstRead)];
                int n = ReadFully(handle, buf, 0);
                try
                {
                    image = Parse(buf.AsSpan(0, n), length, full, forcedFormat);
                }
                catch (NeedMoreException more)
                {
                    buf = new byte[(int)Math.Min(length, more.Bytes)];
                    n = ReadFully(handle, buf, 0);
                    try
                    {
                        image = Parse(buf.AsSpan(0, n), length, full, forcedFormat);
                    }
                    catch (NeedMoreException)
                    {
                        // only when the file shrank between the two reads
                        throw Bad(full, "header", $"the file ended at {n} bytes while its header area was read");
                    }
                }
                image.InUse = QcowNative.IsLocked(handle);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw KvmOcException.FromIo(e, "QcowReadFailed", $"Cannot read '{full}'", full);
            }
            var st = QcowNative.Stat(full);
            image.FileSize = st?.Allocated ?? 0;
            key = st is { } s ? (s.Dev, s.Ino) : null;
            return image;
        }
    }

    static int ReadFully(SafeFileHandle h, byte[] buf, long offset)
    {
        int total = 0;
        while (total < buf.Length)
        {
            int n = RandomAccess.Read(h, buf.AsSpan(total), offset + total);
            if (n <= 0) break;
            total += n;
        }
        return total;
    }

    /// <summary>Signals that the header area continues past what was read; the caller reads this many bytes and parses again.</summary>
    internal sealed class NeedMoreException(int bytes) : Exception
    {
        public int Bytes { get; } = bytes;
    }

    /// <summary>Detects a format by magic: qcow2/qcow, a few well-known others, else raw.</summary>
    public static string DetectFormat(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 4 && BinaryPrimitives.ReadUInt32BigEndian(head) == QcowMagic)
            return head.Length >= 8 && BinaryPrimitives.ReadUInt32BigEndian(head[4..]) == 1 ? "qcow" : "qcow2";
        if (head.StartsWith("KDMV"u8) || head.StartsWith("# Disk DescriptorFile"u8)) return "vmdk";
        if (head.StartsWith("vhdxfile"u8)) return "vhdx";
        if (head.StartsWith("QED\0"u8)) return "qed";
        if (head.StartsWith("conectix"u8)) return "vpc";
        if (head.StartsWith("LUKS\xba\xbe"u8)) return "luks";
        if (head.Length >= 68 && BinaryPrimitives.ReadUInt32LittleEndian(head[64..]) == 0xBEDA107F) return "vdi";
        return "raw";
    }

    static KvmOcException Bad(string path, string field, string detail) =>
        new(ErrorKind.InvalidData, "QcowInvalidHeader", $"'{path}': invalid qcow2 header field '{field}': {detail}.", path,
            "The file is truncated or corrupt; check it with 'qemu-img check'.");

    /// <summary>
    /// Parses an image header from the first bytes of a file (at least its first cluster, or the whole file if shorter).
    /// <paramref name="forcedFormat"/> (from a backing-format extension) overrides the magic, as QEMU does.
    /// </summary>
    internal static QcowImage Parse(ReadOnlySpan<byte> d, long fileLength, string path, string? forcedFormat = null)
    {
        string format = forcedFormat ?? DetectFormat(d);
        var img = new QcowImage { Path = path, Format = format };
        if (format == "raw")
        {
            img.VirtualSize = fileLength;
            return img;
        }
        if (format is not ("qcow2" or "qcow")) return img;
        if (d.Length < 8 || BinaryPrimitives.ReadUInt32BigEndian(d) != QcowMagic)
            throw Bad(path, "magic", $"not a {format} image");
        uint version = BinaryPrimitives.ReadUInt32BigEndian(d[4..]);
        if (version == 1)
        {
            if (d.Length < 48) throw Bad(path, "header", $"truncated at {d.Length} bytes, a qcow v1 header has 48");
            img.Format = "qcow";
            img.Version = 1;
            img.VirtualSize = CheckedSize(path, BinaryPrimitives.ReadUInt64BigEndian(d[24..]));
            return img;
        }
        if (version is not (2 or 3)) throw Bad(path, "version", $"{version} (supported: 2 and 3)");
        img.Format = "qcow2";
        img.Version = (int)version;
        int fixedLength = version == 2 ? 72 : 104;
        if (d.Length < fixedLength) throw Bad(path, "header", $"truncated at {d.Length} bytes, a v{version} header has {fixedLength}");

        ulong backingOffset = BinaryPrimitives.ReadUInt64BigEndian(d[8..]);
        uint backingSize = BinaryPrimitives.ReadUInt32BigEndian(d[16..]);
        uint clusterBits = BinaryPrimitives.ReadUInt32BigEndian(d[20..]);
        ulong size = BinaryPrimitives.ReadUInt64BigEndian(d[24..]);
        uint cryptMethod = BinaryPrimitives.ReadUInt32BigEndian(d[32..]);
        uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(d[36..]);
        ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(d[40..]);
        ulong refTableOffset = BinaryPrimitives.ReadUInt64BigEndian(d[48..]);
        uint refTableClusters = BinaryPrimitives.ReadUInt32BigEndian(d[56..]);
        uint snapshots = BinaryPrimitives.ReadUInt32BigEndian(d[60..]);
        ulong snapshotsOffset = BinaryPrimitives.ReadUInt64BigEndian(d[64..]);
        ulong incompat = 0, compat = 0, autoclear = 0;
        uint refcountOrder = 4, headerLength = 72;
        if (version == 3)
        {
            incompat = BinaryPrimitives.ReadUInt64BigEndian(d[72..]);
            compat = BinaryPrimitives.ReadUInt64BigEndian(d[80..]);
            autoclear = BinaryPrimitives.ReadUInt64BigEndian(d[88..]);
            refcountOrder = BinaryPrimitives.ReadUInt32BigEndian(d[96..]);
            headerLength = BinaryPrimitives.ReadUInt32BigEndian(d[100..]);
        }

        if (clusterBits is < MinClusterBits or > MaxClusterBits)
            throw Bad(path, "cluster_bits", $"{clusterBits} (must be {MinClusterBits}..{MaxClusterBits})");
        long cs = 1L << (int)clusterBits;
        if (version == 3)
        {
            if (headerLength < 104) throw Bad(path, "header_length", $"{headerLength} (at least 104 for version 3)");
            if (headerLength > cs) throw Bad(path, "header_length", $"{headerLength} is larger than the cluster size {cs}");
            if (headerLength > fileLength) throw Bad(path, "header_length", $"{headerLength} is beyond the end of the {fileLength}-byte file");
            if (refcountOrder > 6) throw Bad(path, "refcount_order", $"{refcountOrder} (at most 6)");
        }
        long virtualSize = CheckedSize(path, size);
        if (cryptMethod > 2) throw Bad(path, "crypt_method", $"{cryptMethod} (0 none, 1 AES, 2 LUKS)");

        if (l1Size > MaxL1Bytes / 8) throw Bad(path, "l1_size", $"{l1Size} entries exceed QEMU's limit of {MaxL1Bytes / 8}");
        long l2Coverage = cs * (cs / 8);
        long neededL1 = (virtualSize + l2Coverage - 1) / l2Coverage;
        if (l1Size < neededL1) throw Bad(path, "l1_size", $"{l1Size} entries cannot map {virtualSize} bytes (needs {neededL1})");
        if (l1Size > 0)
        {
            if (l1Offset % (ulong)cs != 0) throw Bad(path, "l1_table_offset", $"0x{l1Offset:x} is not cluster-aligned");
            if (l1Offset == 0 || l1Offset > (ulong)fileLength || (ulong)fileLength - l1Offset < (ulong)l1Size * 8)
                throw Bad(path, "l1_table_offset", $"L1 table at 0x{l1Offset:x} ({l1Size} entries) lies outside the {fileLength}-byte file");
        }
        if (refTableOffset == 0 || refTableOffset % (ulong)cs != 0) throw Bad(path, "refcount_table_offset", $"0x{refTableOffset:x} is zero or not cluster-aligned");
        if (refTableClusters == 0 || refTableClusters > MaxRefTableBytes / cs)
            throw Bad(path, "refcount_table_clusters", $"{refTableClusters} (must be 1..{MaxRefTableBytes / cs})");
        if (refTableOffset > (ulong)fileLength || (ulong)fileLength - refTableOffset < (ulong)refTableClusters * (ulong)cs)
            throw Bad(path, "refcount_table_offset", $"refcount table at 0x{refTableOffset:x} ({refTableClusters} clusters) lies outside the {fileLength}-byte file");
        if (snapshots > MaxSnapshots) throw Bad(path, "nb_snapshots", $"{snapshots} (at most {MaxSnapshots})");
        if (snapshots > 0 && (snapshotsOffset % (ulong)cs != 0 || snapshotsOffset == 0 || snapshotsOffset >= (ulong)fileLength))
            throw Bad(path, "snapshots_offset", $"0x{snapshotsOffset:x} is not a cluster-aligned offset inside the file");
        if (version == 3 && headerLength > 104)
        {
            byte compression = d[104];
            bool hasType = (incompat & (1UL << 3)) != 0;
            if (hasType ? compression > 1 : compression != 0)
                throw Bad(path, "compression_type", $"{compression} with the compression-type feature bit {(hasType ? "set" : "clear")}");
        }

        // The header area is cluster 0 (or the whole file if it is shorter). The caller reads 64 KiB first; only when the
        // extensions or the backing name reach past that does it read the whole cluster.
        long area = Math.Min(cs, fileLength);
        bool partial = d.Length < area;

        string? backingFile = null;
        if (backingOffset != 0 && backingSize != 0)
        {
            if (backingOffset >= (ulong)cs || backingSize > MaxBackingNameBytes || backingSize > (ulong)cs - backingOffset)
                throw Bad(path, "backing_file_size", $"backing name of {backingSize} bytes at 0x{backingOffset:x} does not fit in the first cluster (at most {MaxBackingNameBytes} bytes)");
            if (backingOffset + backingSize > (ulong)d.Length)
            {
                if (partial) throw new NeedMoreException((int)area);
                throw Bad(path, "backing_file_offset", $"backing name at 0x{backingOffset:x} lies beyond the end of the {fileLength}-byte file");
            }
            backingFile = DecodeName(path, "backing_file", d.Slice((int)backingOffset, (int)backingSize));
        }

        // Header extensions (v2 images may carry them too, after the 72-byte header).
        string? backingFormat = null;
        var featureNames = new List<(int, int, string)>();
        bool haveTable = false;
        long end = backingOffset != 0 && backingOffset < (ulong)cs ? (long)backingOffset : cs;
        if (!partial && end > d.Length) end = d.Length; // the file ends inside cluster 0
        long off = headerLength;
        while (off < end)
        {
            if (off > end - 8) throw Bad(path, "header extension", $"extension header at 0x{off:x} overflows the header area");
            if (off + 8 > d.Length) throw new NeedMoreException((int)area);
            uint type = BinaryPrimitives.ReadUInt32BigEndian(d[(int)off..]);
            uint len = BinaryPrimitives.ReadUInt32BigEndian(d[(int)(off + 4)..]);
            off += 8;
            if (type == ExtEnd) break;
            if (len > end - off) throw Bad(path, "header extension", $"extension 0x{type:x8} at 0x{off - 8:x} claims {len} bytes, past the header area");
            if (off + len > d.Length) throw new NeedMoreException((int)area);
            var data = d.Slice((int)off, (int)len);
            switch (type)
            {
                case ExtBackingFormat:
                    if (len >= 16) throw Bad(path, "backing format extension", $"length {len} (at most 15)");
                    backingFormat = DecodeName(path, "backing format extension", data);
                    break;
                case ExtFeatureTable:
                    haveTable = true;
                    for (int i = 0; i + 48 <= data.Length; i += 48)
                    {
                        var nameBytes = data.Slice(i + 2, 46);
                        int z = nameBytes.IndexOf((byte)0);
                        featureNames.Add((data[i], data[i + 1], Encoding.UTF8.GetString(z < 0 ? nameBytes : nameBytes[..z])));
                    }
                    break;
            }
            off += (len + 7L) & ~7L;
        }

        img.VirtualSize = virtualSize;
        img.ClusterSize = (int)cs;
        img.BackingFile = backingFile;
        img.BackingFormat = backingFormat;
        img.BackingPath = backingFile is null ? null : ResolveBacking(path, backingFile);
        img.Encrypted = cryptMethod != 0;
        img.IncompatibleFeatures = incompat;
        img.CompatibleFeatures = compat;
        img.AutoclearFeatures = autoclear;
        img.Dirty = (incompat & 1) != 0;
        img.Corrupt = (incompat & 2) != 0;
        img.LazyRefcounts = (compat & 1) != 0;
        var names = haveTable ? featureNames : DefaultFeatureNames.ToList();
        img.IncompatibleFeatureNames = Names(incompat, 0, names);
        img.CompatibleFeatureNames = Names(compat, 1, names);
        img.AutoclearFeatureNames = Names(autoclear, 2, names);
        img.RefcountBits = 1 << (int)refcountOrder;
        img.SnapshotCount = (int)snapshots;
        return img;
    }

    static long CheckedSize(string path, ulong size) =>
        size > long.MaxValue / 2 ? throw Bad(path, "size", $"{size} bytes is not a valid virtual size") : (long)size;

    static string DecodeName(string path, string field, ReadOnlySpan<byte> bytes)
    {
        string s;
        try { s = StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException) { throw Bad(path, field, "not valid UTF-8"); }
        if (s.Contains('\0')) throw Bad(path, field, "contains a NUL character");
        return s;
    }

    static string[] Names(ulong bits, int type, List<(int Type, int Bit, string Name)> table)
    {
        var list = new List<string>();
        for (int bit = 0; bit < 64; bit++)
        {
            if ((bits & (1UL << bit)) == 0) continue;
            string? name = null;
            foreach (var f in table) if (f.Type == type && f.Bit == bit) { name = f.Name; break; }
            list.Add(name ?? $"bit {bit}");
        }
        return list.ToArray();
    }

    /// <summary>
    /// Resolves a stored backing name the way QEMU does: absolute names as they are, relative names against the folder of
    /// the image that names them (not the current directory). Protocol names (json:, nbd:…) are returned as stored.
    /// </summary>
    public static string ResolveBacking(string imagePath, string backingFile)
    {
        if (System.IO.Path.IsPathRooted(backingFile)) return backingFile;
        int colon = backingFile.IndexOf(':');
        if (colon > 0 && backingFile.IndexOf('/') is var slash && (slash < 0 || slash > colon)) return backingFile;
        var dir = System.IO.Path.GetDirectoryName(imagePath) ?? "/";
        return System.IO.Path.Combine(dir, backingFile);
    }
}
