using System.Diagnostics;
using System.Text.Json;

namespace KvmOvercommit.Engine.HostInfo;

/// <summary>
/// Sizes of a disk image and its backing chain from <c>qemu-img info --backing-chain --output=json -U</c>
/// (-U: images of running guests are locked by QEMU).
/// </summary>
public static class DiskImageProbe
{
    /// <summary>Runs qemu-img on <paramref name="path"/>; null (and a warning) when qemu-img is missing or fails.</summary>
    public static async Task<DiskImageFacts?> ProbeAsync(string path, IOperationObserver observer, CancellationToken ct, string qemuImg = "qemu-img")
    {
        var psi = new ProcessStartInfo(qemuImg) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "info", "--backing-chain", "--output=json", "-U", path }) psi.ArgumentList.Add(a);
        observer.Verbose($"{qemuImg} info --backing-chain --output=json -U {path}");
        Process? p;
        try { p = Process.Start(psi); }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException)
        {
            observer.Warning($"qemu-img is not available ({e.Message}); disk ratios are left out. Install qemu-utils.");
            return null;
        }
        if (p is null) return null;
        using (p)
        {
            var outTask = p.StandardOutput.ReadToEndAsync(ct);
            var errTask = p.StandardError.ReadToEndAsync(ct);
            try { await p.WaitForExitAsync(ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { try { p.Kill(); } catch (InvalidOperationException) { } throw; }
            var stdout = await outTask.ConfigureAwait(false);
            var stderr = await errTask.ConfigureAwait(false);
            if (p.ExitCode != 0)
            {
                observer.Warning($"qemu-img info {path} failed: {stderr.Trim()}");
                return null;
            }
            return Parse(stdout);
        }
    }

    /// <summary>Parses qemu-img's --backing-chain JSON (an array, top image first) or a single object.</summary>
    public static DiskImageFacts? Parse(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var items = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement.EnumerateArray().ToList() : new List<JsonElement> { doc.RootElement };
            if (items.Count == 0) return null;
            var facts = items.Select(One).ToList();
            facts[0].BackingChain = facts.Skip(1).ToArray();
            return facts[0];
        }
        catch (JsonException)
        {
            return null;
        }
    }

    static DiskImageFacts One(JsonElement e) => new()
    {
        Path = e.TryGetProperty("filename", out var f) ? Path.GetFullPath(f.GetString() ?? "") : "",
        VirtualSizeBytes = e.TryGetProperty("virtual-size", out var v) ? v.GetInt64() : 0,
        AllocatedBytes = e.TryGetProperty("actual-size", out var a) ? a.GetInt64() : 0,
    };
}
