using System.Text.Json;
using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Qcow;

/// <summary>`kvmoc qcow info` and `kvmoc qcow overlay`: JSON with the PowerShell property names, many paths, error ids on stderr, exit codes.</summary>
public class QcowCliTests
{
    static (int Code, string Out, string Err) Kvmoc(params string[] args) => Infrastructure.Kvmoc.Run(args);

    static string RawBase(TempDir dir, string name = "base.raw", long size = 1 << 30)
    {
        var p = dir.File(name);
        using var f = File.Create(p);
        f.SetLength(size);
        return p;
    }

    [Fact]
    public void OverlayWithManyPathsThenInfoAsJson()
    {
        using var dir = new TempDir("kvmoc-qcow cli");
        var basePath = RawBase(dir, "win7 base.raw");
        var names = Enumerable.Range(1, 30).Select(i => dir.File($"win7-{i}, ü.qcow2")).ToArray();
        var (code, output, err) = Kvmoc(new[] { "qcow", "overlay", "--backing-path", basePath, "--json" }.Concat(names).ToArray());
        Assert.True(code == 0, err);
        var made = JsonDocument.Parse(output).RootElement;
        Assert.Equal(30, made.GetArrayLength());
        Assert.Equal(names, made.EnumerateArray().Select(m => m.GetProperty("Path").GetString()));
        Assert.Contains(", ü.qcow2\"", output); // UTF-8 as it is, not \u00FC (ConvertTo-Json does the same)
        Assert.All(made.EnumerateArray(), m =>
        {
            Assert.Equal("raw", m.GetProperty("BackingFormat").GetString());
            Assert.Equal(basePath, m.GetProperty("BackingFile").GetString());
            Assert.Equal(1L << 30, m.GetProperty("VirtualSize").GetInt64());
        });

        var info = Kvmoc("qcow", "info", "--json", names[0]);
        Assert.True(info.Code == 0, info.Err);
        var one = JsonDocument.Parse(info.Out).RootElement;
        foreach (var prop in typeof(QcowImage).GetProperties())
            Assert.True(one.TryGetProperty(prop.Name, out _), $"--json lacks {prop.Name}");
        Assert.Equal(3, one.GetProperty("Version").GetInt32());
        Assert.Equal(new[] { basePath }, one.GetProperty("BackingChain").EnumerateArray().Select(x => x.GetString()));
        Assert.False(one.GetProperty("InUse").GetBoolean());

        // a quoted wildcard is expanded by kvmoc itself; the table names the files
        var all = Kvmoc("qcow", "info", "--json", dir.File("win7-*.qcow2"));
        Assert.True(all.Code == 0, all.Err);
        Assert.Equal(30, JsonDocument.Parse(all.Out).RootElement.GetArrayLength());
        var table = Kvmoc("qcow", "info", names[1], basePath);
        Assert.Equal(0, table.Code);
        Assert.Contains("VirtualSize", table.Out);
        Assert.Contains(names[1], table.Out);
        Assert.Contains("raw", table.Out);
    }

    [Fact]
    public void ErrorsGoToStderrWithTheirIdAndANonZeroExitCode()
    {
        using var dir = new TempDir("kvmoc-qcow cli");
        var basePath = RawBase(dir);
        var existing = dir.Write("taken.qcow2", "keep me");

        var exists = Kvmoc("qcow", "overlay", "-b", basePath, existing, dir.File("new.qcow2"));
        Assert.Equal(5, exists.Code); // ResourceExists; the other path was still created
        Assert.StartsWith("QcowOverlayExists: ", exists.Err);
        Assert.True(File.Exists(dir.File("new.qcow2")));
        Assert.Equal("keep me", File.ReadAllText(existing));

        var missing = Kvmoc("qcow", "overlay", "-b", dir.File("nope.raw"), dir.File("x.qcow2"));
        Assert.Equal(3, missing.Code);
        Assert.StartsWith("QcowBackingNotFound: ", missing.Err);

        var self = Kvmoc("qcow", "overlay", "-b", basePath, "--force", basePath);
        Assert.Equal(2, self.Code);
        Assert.StartsWith("QcowOverlayIsOwnBacking: ", self.Err);

        var cluster = Kvmoc("qcow", "overlay", "-b", basePath, "--cluster-size", "1000", dir.File("y.qcow2"));
        Assert.Equal(2, cluster.Code);
        Assert.Contains("QcowBadClusterSize", cluster.Err);

        var corrupt = dir.File("corrupt.qcow2");
        var bytes = File.ReadAllBytes(dir.File("new.qcow2"));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(20), 40); // cluster_bits
        File.WriteAllBytes(corrupt, bytes);
        var bad = Kvmoc("qcow", "info", corrupt);
        Assert.Equal(7, bad.Code); // InvalidData
        Assert.StartsWith("QcowInvalidHeader: ", bad.Err);
        Assert.Contains(corrupt, bad.Err);
        Assert.Contains("cluster_bits", bad.Err);
        Assert.DoesNotContain("   at ", bad.Err); // never a stack trace

        var none = Kvmoc("qcow", "info", dir.File("*.nothing"));
        Assert.Equal(3, none.Code);
        Assert.StartsWith("PathNotFound: ", none.Err);
        var gone = Kvmoc("qcow", "info", dir.File("gone.qcow2"));
        Assert.Equal(3, gone.Code);
        Assert.StartsWith("QcowOpenFailed: ", gone.Err);
    }

    [Fact]
    public void WhatIfWritesNothingAndRelativePathsAreStoredRelative()
    {
        using var dir = new TempDir("kvmoc-qcow cli");
        var basePath = RawBase(dir);
        Directory.CreateDirectory(dir.File("guests"));
        var target = dir.File("guests/g1.qcow2");
        var whatIf = Kvmoc("qcow", "overlay", "-b", basePath, "--what-if", target, dir.File("guests/g2.qcow2"));
        Assert.Equal(0, whatIf.Code);
        Assert.Contains($"What if: Create qcow2 overlay (1073741824 bytes, cluster 65536) backed by '{basePath}' (raw): {target}", whatIf.Out);
        Assert.Empty(Directory.GetFileSystemEntries(dir.File("guests")));

        var rel = Kvmoc("qcow", "overlay", "-b", basePath, "-F", "raw", "--relative-backing-path", "--size-bytes", "1048576", "--cluster-size", "4096", "--json", target);
        Assert.True(rel.Code == 0, rel.Err);
        var o = JsonDocument.Parse(rel.Out).RootElement;
        Assert.Equal("../base.raw", o.GetProperty("BackingFile").GetString());
        Assert.Equal(1048576, o.GetProperty("VirtualSize").GetInt64());
        Assert.Equal(4096, o.GetProperty("ClusterSize").GetInt32());
        Assert.Contains("smaller than the backing image", rel.Err); // the warning
    }
}
