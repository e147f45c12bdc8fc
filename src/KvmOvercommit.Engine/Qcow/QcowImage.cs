namespace KvmOvercommit.Engine.Qcow;

/// <summary>
/// A disk image as Get-QcowImage reports it: the qcow2 header (v2 or v3) with its extensions, the backing chain resolved
/// the way QEMU resolves it, and whether a running QEMU holds the image's lock. Raw and other formats are recognised by
/// their magic and reported with the fields that apply.
/// </summary>
public sealed class QcowImage
{
    /// <summary>Full path of the image file (binds to -Path/-DiskPath of the next cmdlet).</summary>
    public string Path { get; set; } = "";

    /// <summary>Image format detected by magic: qcow2, qcow (version 1), raw, or another format's name (vmdk, vdi, vhdx, qed, vpc, luks).</summary>
    public string Format { get; set; } = "";

    /// <summary>qcow2 header version (2 = compat 0.10, 3 = compat 1.1); null for other formats.</summary>
    public int? Version { get; set; }

    /// <summary>Size of the virtual disk in bytes (for raw files, the file length).</summary>
    public long? VirtualSize { get; set; }

    /// <summary>qcow2 cluster size in bytes.</summary>
    public int? ClusterSize { get; set; }

    /// <summary>Bytes allocated on disk for the file (what `du` and qemu-img's actual-size show).</summary>
    public long FileSize { get; set; }

    /// <summary>The backing file name exactly as stored in the header (absolute, or relative to the image's folder).</summary>
    public string? BackingFile { get; set; }

    /// <summary>The backing file resolved the way QEMU resolves it: a relative name is relative to this image's folder.</summary>
    public string? BackingPath { get; set; }

    /// <summary>The backing format from the backing-format header extension (qcow2, raw, …); null when not stored.</summary>
    public string? BackingFormat { get; set; }

    /// <summary>Every image below this one, nearest first, down to the base.</summary>
    public string[] BackingChain { get; set; } = Array.Empty<string>();

    /// <summary>The backing file that does not exist (the last entry of BackingChain, where the chain breaks); null when the chain is whole.</summary>
    public string? MissingBackingFile { get; set; }

    /// <summary>True when the image is encrypted (crypt_method AES or LUKS).</summary>
    public bool Encrypted { get; set; }

    /// <summary>The dirty bit (incompatible feature 0): refcounts must be rebuilt before use.</summary>
    public bool Dirty { get; set; }

    /// <summary>The corrupt bit (incompatible feature 1): QEMU refuses to open the image read-write.</summary>
    public bool Corrupt { get; set; }

    /// <summary>Lazy refcounts (compatible feature 0).</summary>
    public bool LazyRefcounts { get; set; }

    /// <summary>The incompatible feature bits as stored.</summary>
    public ulong IncompatibleFeatures { get; set; }

    /// <summary>The compatible feature bits as stored.</summary>
    public ulong CompatibleFeatures { get; set; }

    /// <summary>The autoclear feature bits as stored.</summary>
    public ulong AutoclearFeatures { get; set; }

    /// <summary>Names of the set incompatible feature bits (from the image's feature-name table, else QEMU's names).</summary>
    public string[] IncompatibleFeatureNames { get; set; } = Array.Empty<string>();

    /// <summary>Names of the set compatible feature bits.</summary>
    public string[] CompatibleFeatureNames { get; set; } = Array.Empty<string>();

    /// <summary>Names of the set autoclear feature bits.</summary>
    public string[] AutoclearFeatureNames { get; set; } = Array.Empty<string>();

    /// <summary>Width of a refcount entry in bits (16 unless created with refcount_bits).</summary>
    public int? RefcountBits { get; set; }

    /// <summary>Number of internal snapshots.</summary>
    public int SnapshotCount { get; set; }

    /// <summary>True when a running QEMU (or qemu-img/qemu-io) holds the image's lock.</summary>
    public bool InUse { get; set; }
}
