using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Qcow;

/// <summary>qemu-img and qemu-io as the judges of the images we write and read (argument arrays, never a shell).</summary>
public static class QemuImg
{
    public static string Require() => Prereq.RequireTool("qemu-img");

    public static (int Code, string Out, string Err) Exec(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.Result);
    }

    public static string Run(params string[] args)
    {
        var (code, output, err) = Exec("qemu-img", args);
        Assert.True(code == 0, $"qemu-img {string.Join(' ', args)} exited {code}: {err}");
        return output;
    }

    /// <summary>`qemu-img create -f qcow2 [-o cluster_size=…] -b B -F fmt path [size]`.</summary>
    public static void CreateOverlay(string path, string backing, string format, int? clusterSize = null, long? size = null)
    {
        var args = new List<string> { "create", "-q", "-f", "qcow2" };
        if (clusterSize is { } cs) args.AddRange(new[] { "-o", $"cluster_size={cs}" });
        args.AddRange(new[] { "-b", backing, "-F", format, path });
        if (size is { } s) args.Add(s.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Run(args.ToArray());
    }

    /// <summary>A base image: raw (sparse file), qcow2 v2 (compat=0.10) or qcow2 v3.</summary>
    public static string CreateBase(string path, string kind, long size, int? clusterSize = null)
    {
        switch (kind)
        {
            case "raw":
                using (var f = File.Create(path)) f.SetLength(size);
                return "raw";
            case "qcow2v2":
                Run("create", "-q", "-f", "qcow2", "-o", $"compat=0.10,cluster_size={clusterSize ?? 65536}", path, size.ToString(System.Globalization.CultureInfo.InvariantCulture));
                return "qcow2";
            default:
                Run("create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize ?? 65536}", path, size.ToString(System.Globalization.CultureInfo.InvariantCulture));
                return "qcow2";
        }
    }

    /// <summary>`qemu-img check` must find no errors and no leaks.</summary>
    public static void Check(string path)
    {
        var (code, output, err) = Exec("qemu-img", "check", "--output=json", path);
        Assert.True(code == 0, $"qemu-img check {path} exited {code}: {output} {err}");
        var doc = JsonDocument.Parse(output).RootElement;
        foreach (var field in new[] { "corruptions", "leaks", "check-errors" })
            if (doc.TryGetProperty(field, out var v)) Assert.True(v.GetInt64() == 0, $"{path}: {field} = {v}");
    }

    public static JsonElement Info(string path, bool shared = false)
    {
        var args = new List<string> { "info", "--output=json" };
        if (shared) args.Add("-U");
        args.Add(path);
        return JsonDocument.Parse(Run(args.ToArray())).RootElement;
    }

    /// <summary>Every field qemu-img info reports for a qcow2/raw image, compared with what our reader says.</summary>
    public static void AssertAgrees(JsonElement info, QcowImage image)
    {
        string where = image.Path;
        Assert.True(info.GetProperty("format").GetString() == image.Format, $"{where}: format {info.GetProperty("format")} vs {image.Format}");
        Assert.True(info.GetProperty("virtual-size").GetInt64() == image.VirtualSize, $"{where}: virtual-size {info.GetProperty("virtual-size")} vs {image.VirtualSize}");
        Assert.True(info.GetProperty("actual-size").GetInt64() == image.FileSize, $"{where}: actual-size {info.GetProperty("actual-size")} vs {image.FileSize}");
        Assert.Equal(info.TryGetProperty("dirty-flag", out var dirty) && dirty.GetBoolean(), image.Dirty);
        Assert.Equal(info.TryGetProperty("encrypted", out var enc) && enc.GetBoolean(), image.Encrypted);
        Assert.Equal(info.TryGetProperty("snapshots", out var snaps) ? snaps.GetArrayLength() : 0, image.SnapshotCount);
        Assert.Equal(info.TryGetProperty("backing-filename", out var bf) ? bf.GetString() : null, image.BackingFile);
        Assert.Equal(info.TryGetProperty("backing-filename-format", out var bff) ? bff.GetString() : null, image.BackingFormat);
        if (info.TryGetProperty("full-backing-filename", out var full))
        {
            // qemu-img resolves against the folder of the path it was given; we were given the full path.
            Assert.Equal(full.GetString(), image.BackingPath);
        }
        else Assert.Null(image.BackingPath);
        if (image.Format != "qcow2")
        {
            Assert.Null(image.ClusterSize); // qemu-img reports a cluster size only for formats that have one
            return;
        }
        Assert.Equal(info.GetProperty("cluster-size").GetInt32(), image.ClusterSize);
        var data = info.GetProperty("format-specific").GetProperty("data");
        Assert.Equal(data.GetProperty("compat").GetString(), image.Version == 2 ? "0.10" : "1.1");
        Assert.Equal(data.GetProperty("refcount-bits").GetInt32(), image.RefcountBits);
        if (image.Version == 3)
        {
            Assert.Equal(data.GetProperty("lazy-refcounts").GetBoolean(), image.LazyRefcounts);
            Assert.Equal(data.GetProperty("corrupt").GetBoolean(), image.Corrupt);
            Assert.Equal(data.GetProperty("extended-l2").GetBoolean(), image.IncompatibleFeatureNames.Contains("extended L2 entries"));
        }
    }

    /// <summary>Backing chain as `qemu-img info --backing-chain` lists it, this image excluded.</summary>
    public static string[] Chain(string path)
    {
        var doc = JsonDocument.Parse(Run("info", "--backing-chain", "--output=json", "-U", path)).RootElement;
        return doc.EnumerateArray().Skip(1).Select(e => Path.GetFullPath(e.GetProperty("filename").GetString()!)).ToArray();
    }

    public static string Sha256(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(f));
    }
}
