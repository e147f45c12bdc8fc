using System.Collections.Concurrent;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// What a QEMU binary's device offers (<c>qemu-system-x86_64 -device virtio-balloon-pci,help</c>), asked once per
/// binary and device in a process: features such as free page reporting are used only where this QEMU has them.
/// </summary>
public static class QemuDeviceProperties
{
    static readonly ConcurrentDictionary<string, HashSet<string>> Cache = new(StringComparer.Ordinal);

    /// <summary>True when <paramref name="qemu"/>'s <paramref name="device"/> lists <paramref name="property"/>.</summary>
    public static bool Has(string qemu, string device, string property) => Get(qemu, device).Contains(property);

    /// <summary>The device's property names (empty when QEMU cannot be asked).</summary>
    public static HashSet<string> Get(string qemu, string device)
    {
        long stamp = 0;
        try { stamp = File.GetLastWriteTimeUtc(qemu).Ticks; } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return Cache.GetOrAdd($"{qemu}|{stamp}|{device}", _ =>
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                var r = ToolRunner.RunAsync(qemu, new[] { "-device", device + ",help" }, null, cts.Token).GetAwaiter().GetResult();
                return Parse(r.StdOut + "\n" + r.StdErr);
            }
            catch (Exception e) when (e is KvmOcException or OperationCanceledException or IOException or System.ComponentModel.Win32Exception)
            {
                return new HashSet<string>(StringComparer.Ordinal);
            }
        });
    }

    /// <summary>Property names from QEMU's device help: lines like <c>  free-page-reporting=&lt;bool&gt; - on/off (default: false)</c>.</summary>
    public static HashSet<string> Parse(string help)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var raw in help.Split('\n'))
        {
            var line = raw.Trim();
            int eq = line.IndexOf('=');
            if (eq <= 0 || line.EndsWith("options:", StringComparison.Ordinal)) continue;
            var name = line[..eq];
            if (name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')) names.Add(name);
        }
        return names;
    }
}
