using System.Buffers.Binary;
using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Qcow;

/// <summary>
/// Thousands of mutated and truncated qcow2 headers (seeded, so a failure reproduces): the reader either returns an
/// image or throws KvmOcException(InvalidData) naming the file and the field — never any other exception.
/// </summary>
public class QcowReaderFuzzTests
{
    const int Seed = 20261201;

    /// <summary>Valid images to start from: our own v3 overlays (4 KiB to 2 MiB clusters) and, where qemu-img exists, its v2/v3 variants.</summary>
    static List<(string Name, byte[] Bytes)> Seeds(TempDir dir)
    {
        var seeds = new List<(string, byte[])>();
        var raw = dir.File("base.raw");
        using (var f = File.Create(raw)) f.SetLength(1 << 20);
        var b = QcowOverlayWriter.OpenBacking(raw, null);
        foreach (var cs in new[] { 4096, 65536, 2 * 1024 * 1024 })
        {
            var p = dir.File($"seed-{cs}.qcow2");
            QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(p, b, new QcowOverlayOptions { ClusterSize = cs, SizeBytes = 1L << 34 }));
            seeds.Add(($"overlay-{cs}", File.ReadAllBytes(p)));
        }
        if (Prereq.Which("qemu-img") is not null)
        {
            foreach (var (name, opts) in new[] { ("v2", "compat=0.10"), ("lazy", "lazy_refcounts=on"), ("refcount64", "refcount_bits=64"), ("extl2", "extended_l2=on,cluster_size=32768") })
            {
                var p = dir.File($"seed-{name}.qcow2");
                QemuImg.Run("create", "-q", "-f", "qcow2", "-o", opts, "-b", raw, "-F", "raw", p, "1G");
                seeds.Add((name, File.ReadAllBytes(p)));
            }
            var snap = dir.File("seed-snap.qcow2");
            QemuImg.Run("create", "-q", "-f", "qcow2", snap, "16M");
            QemuImg.Run("snapshot", "-c", "s1", snap);
            seeds.Add(("snapshot", File.ReadAllBytes(snap)));
        }
        return seeds;
    }

    // Offsets of the header fields (and a few bytes of the extensions after them) that mutations aim at.
    static readonly int[] FieldOffsets = { 0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 80, 88, 96, 100, 104, 112, 116, 120, 124, 128, 136 };
    static readonly ulong[] Interesting = { 0, 1, 2, 3, 7, 8, 9, 16, 21, 22, 63, 64, 103, 104, 105, 112, 511, 512, 4095, 4096, 65535, 65536, 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000, long.MaxValue, ulong.MaxValue, 0xE2792ACA, 0x6803F857 };

    static byte[] Mutate(byte[] seed, Random rng)
    {
        var d = (byte[])seed.Clone();
        int n = rng.Next(1, 5);
        for (int i = 0; i < n && d.Length > 0; i++)
        {
            int headerArea = Math.Min(d.Length, 2048);
            switch (rng.Next(6))
            {
                case 0: // flip a bit in the header area
                    d[rng.Next(headerArea)] ^= (byte)(1 << rng.Next(8));
                    break;
                case 1: // a random byte anywhere in the first cluster
                    d[rng.Next(Math.Min(d.Length, 65536))] = (byte)rng.Next(256);
                    break;
                case 2: // an interesting 32-bit value into a field
                    {
                        int o = FieldOffsets[rng.Next(FieldOffsets.Length)];
                        if (o + 4 <= d.Length) BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(o), (uint)Interesting[rng.Next(Interesting.Length)]);
                        break;
                    }
                case 3: // an interesting 64-bit value into a field
                    {
                        int o = FieldOffsets[rng.Next(FieldOffsets.Length)];
                        if (o + 8 <= d.Length) BinaryPrimitives.WriteUInt64BigEndian(d.AsSpan(o), Interesting[rng.Next(Interesting.Length)]);
                        break;
                    }
                case 4: // truncate
                    Array.Resize(ref d, rng.Next(rng.Next(2) == 0 ? Math.Min(d.Length, 300) : d.Length));
                    break;
                default: // a random run of bytes
                    {
                        int o = rng.Next(headerArea), len = rng.Next(1, 64);
                        for (int k = o; k < Math.Min(d.Length, o + len); k++) d[k] = (byte)rng.Next(256);
                        break;
                    }
            }
        }
        return d;
    }

    static void AssertOnlyInvalidData(Func<QcowImage> read, string path, string context)
    {
        try
        {
            var img = read();
            Assert.NotNull(img.Format);
        }
        catch (KvmOcException e)
        {
            Assert.True(e.Kind == ErrorKind.InvalidData, $"{context}: {e.Kind} {e.ErrorId}: {e.Message}");
            Assert.Equal("QcowInvalidHeader", e.ErrorId);
            Assert.Contains(path, e.Message);
            Assert.Matches("field '[^']+'", e.Message);
            Assert.Equal(path, e.Target);
        }
        catch (Exception e)
        {
            throw new Xunit.Sdk.XunitException($"{context}: {e.GetType().Name} escaped: {e}");
        }
    }

    [Fact]
    public void MutatedHeadersInMemoryYieldOnlyInvalidData()
    {
        using var dir = new TempDir("kvmoc-fuzz");
        var rng = new Random(Seed);
        int ok = 0, bad = 0;
        foreach (var (name, bytes) in Seeds(dir).Where(x => x.Bytes.Length <= 1 << 20)) // the 6 MiB 2-MiB-cluster seed only in the file test
        {
            for (int i = 0; i < 3000; i++)
            {
                var d = Mutate(bytes, rng);
                string path = $"/fuzz/{name}-{i}.qcow2";
                foreach (var forced in new[] { null, "qcow2" })
                {
                    AssertOnlyInvalidData(() =>
                    {
                        try { return QcowReader.Parse(d, d.Length, path, forced); }
                        catch (QcowReader.NeedMoreException) { return new QcowImage { Format = "needs-more" }; } // only ever a partial read
                    }, path, $"seed {name} iteration {i} forced {forced ?? "-"}");
                }
                try { QcowReader.Parse(d, d.Length, path); ok++; } catch (KvmOcException) { bad++; }
            }
        }
        Assert.True(ok > 100 && bad > 1000, $"mutations should both pass and fail: {ok} read, {bad} refused");
    }

    [Fact]
    public void NeedMoreIsNeverSignalledForAWholeFile()
    {
        // Parse asks for more bytes only when it was given less than the header cluster; given the whole file it decides.
        using var dir = new TempDir("kvmoc-fuzz");
        var rng = new Random(Seed + 1);
        foreach (var (name, bytes) in Seeds(dir).Where(x => x.Bytes.Length <= 1 << 20))
            for (int i = 0; i < 1000; i++)
            {
                var d = Mutate(bytes, rng);
                try { QcowReader.Parse(d, d.Length, "/fuzz/x"); }
                catch (KvmOcException) { }
                catch (QcowReader.NeedMoreException) { throw new Xunit.Sdk.XunitException($"seed {name} iteration {i}: NeedMore on the whole file"); }
            }
    }

    [Fact]
    public void MutatedAndTruncatedFilesYieldOnlyInvalidData()
    {
        using var dir = new TempDir("kvmoc-fuzz");
        var rng = new Random(Seed + 2);
        var path = dir.File("fuzzed image.qcow2");
        int n = 0;
        foreach (var (name, bytes) in Seeds(dir))
            for (int i = 0; i < 250; i++, n++)
            {
                File.WriteAllBytes(path, Mutate(bytes, rng));
                AssertOnlyInvalidData(() => QcowReader.ReadHeader(path), path, $"file seed {name} iteration {i}");
            }
        Assert.True(n >= 750);
    }

    [Fact]
    public void EveryTruncationOfAValidHeaderIsInvalidDataNamingTheField()
    {
        using var dir = new TempDir("kvmoc-fuzz");
        var path = dir.File("t.qcow2");
        var (_, bytes) = Seeds(dir)[1];
        for (int len = 0; len < 512; len++)
        {
            File.WriteAllBytes(path, bytes.AsSpan(0, len).ToArray());
            var img = Record.Exception(() => QcowReader.ReadHeader(path));
            if (len < 4) { Assert.Null(img); continue; } // fewer than 4 bytes: no magic, so a raw image
            var e = Assert.IsType<KvmOcException>(img);
            Assert.Equal(ErrorKind.InvalidData, e.Kind);
            Assert.Contains(path, e.Message);
        }
    }

    [Fact]
    public void NamedFieldsForTypicalCorruptions()
    {
        using var dir = new TempDir("kvmoc-fuzz");
        var (_, good) = Seeds(dir)[1]; // 64 KiB clusters
        var path = dir.File("c.qcow2");
        void Expect(string field, Action<byte[]> corrupt) => ExpectBytes(field, () => { var d = (byte[])good.Clone(); corrupt(d); return d; });
        void ExpectBytes(string field, Func<byte[]> bytes)
        {
            File.WriteAllBytes(path, bytes());
            var e = Assert.Throws<KvmOcException>(() => QcowReader.ReadHeader(path));
            Assert.Equal(ErrorKind.InvalidData, e.Kind);
            Assert.Contains($"field '{field}'", e.Message);
        }
        Expect("version", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(4), 4));
        Expect("cluster_bits", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(20), 30));
        Expect("size", d => BinaryPrimitives.WriteUInt64BigEndian(d.AsSpan(24), ulong.MaxValue));
        Expect("crypt_method", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(32), 7));
        Expect("l1_size", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(36), 0));
        Expect("l1_table_offset", d => BinaryPrimitives.WriteUInt64BigEndian(d.AsSpan(40), 1 << 40));
        Expect("refcount_table_offset", d => BinaryPrimitives.WriteUInt64BigEndian(d.AsSpan(48), 12345));
        Expect("refcount_table_clusters", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(56), 0));
        Expect("nb_snapshots", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(60), 1_000_000));
        Expect("refcount_order", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(96), 7));
        Expect("header_length", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(100), 50));
        Expect("backing_file_size", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(16), 5000));
        Expect("backing_file", d => d[BinaryPrimitives.ReadInt32BigEndian(d.AsSpan(12))] = 0xff);
        Expect("backing format extension", d => BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(116), 40));
        ExpectBytes("header", () => good.AsSpan(0, 80).ToArray());
        ExpectBytes("header_length", () => good.AsSpan(0, 110).ToArray()); // the v3 header says 112 bytes
        ExpectBytes("l1_table_offset", () => good.AsSpan(0, 65536 + 100).ToArray()); // the tables are cut off
    }
}
