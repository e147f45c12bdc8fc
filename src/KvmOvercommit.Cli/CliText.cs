using System.CommandLine;
using System.Text;
using System.Text.RegularExpressions;

namespace KvmOvercommit.Cli;

/// <summary>
/// The engine's messages name PowerShell's cmdlets and parameters ("Pass -SizeBytes", "Stop-KvmGuest -Force"); kvmoc
/// says its own: "Pass --size-bytes", "kvmoc guest stop --force". A parameter is rewritten only when some kvmoc command
/// has an option of that name (so QEMU's own "-device" stays), and nothing inside single quotes (paths, names) is touched.
/// </summary>
public sealed class CliText
{
    readonly Dictionary<string, string> _options;

    CliText(Dictionary<string, string> options) => _options = options;

    /// <summary>The map "sizebytes" → "--size-bytes" over every long option of the command tree.</summary>
    public static CliText For(Command root)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        void Walk(Command c)
        {
            foreach (var o in c.Options)
                foreach (var n in o.Aliases.Prepend(o.Name).Where(n => n.StartsWith("--", StringComparison.Ordinal)))
                    map.TryAdd(n[2..].Replace("-", "").ToLowerInvariant(), n);
            foreach (var s in c.Subcommands) Walk(s);
        }
        Walk(root);
        map.TryAdd("verbose", "--verbose");
        map.TryAdd("whatif", "--what-if");
        return new CliText(map);
    }

    /// <summary>Cmdlets and the kvmoc commands that run the same engine operation.</summary>
    static readonly (string Cmdlet, string Kvmoc)[] Commands =
    {
        ("Get-KvmTinyGuest | Start-KvmGuest", "kvmoc guest start --tiny"),
        ("Get-KsmStat", "kvmoc ksm stat"), ("Set-KsmTuning", "kvmoc ksm tune"), ("Watch-KsmStat", "kvmoc ksm watch"),
        ("Get-KsmProcess", "kvmoc ksm ps"), ("Invoke-KsmAutoTune", "kvmoc ksm autotune"),
        ("Get-QcowImage", "kvmoc qcow info"), ("New-QcowOverlay", "kvmoc qcow overlay"),
        ("Get-KvmGuestMemory", "kvmoc guest memory"), ("Set-KvmGuestMemory", "kvmoc guest memory"), ("Measure-KvmGuestIops", "kvmoc guest iops"),
        ("Get-KvmGuest", "kvmoc guest list"), ("Start-KvmGuest", "kvmoc guest start"), ("Stop-KvmGuest", "kvmoc guest stop"),
        ("Get-KvmTinyGuest", "kvmoc tiny-guest"), ("Measure-DeviceIops", "kvmoc iops"), ("Measure-ProcessIops", "kvmoc process-iops"),
        ("Get-HostMemory", "kvmoc host memory"), ("Get-HostCpu", "kvmoc host cpu"), ("Get-MdRaid", "kvmoc host mdstat"),
        ("Get-OvercommitReport", "kvmoc report"), ("Get-DnsmasqLease", "kvmoc leases"), ("ConvertTo-AnsibleInventory", "kvmoc inventory"),
        ("Invoke-OvercommitExperiment", "kvmoc experiment"),
    };

    static readonly Regex Param = new(@"(?<=^|[\s(/,])-([A-Z][A-Za-z0-9]*)(?![A-Za-z0-9-])", RegexOptions.CultureInvariant);
    static readonly Regex BothNames = new(@"-[A-Z][A-Za-z0-9]*\s*\(kvmoc:\s*([^)]*)\)", RegexOptions.CultureInvariant);

    /// <summary>The text with kvmoc's names. Text that already names kvmoc's way is left as it is.</summary>
    public string Rewrite(string? text)
    {
        if (string.IsNullOrEmpty(text)) return text ?? "";
        // "-Path (kvmoc: --path / --lease-file)": the engine gave both names; keep kvmoc's.
        text = BothNames.Replace(text, m => m.Groups[1].Value.Trim());
        if (text.Contains("kvmoc", StringComparison.Ordinal)) return text;
        var parts = text.Split('\'');
        var sb = new StringBuilder();
        for (int i = 0; i < parts.Length; i++)
        {
            if (i > 0) sb.Append('\'');
            sb.Append(i % 2 == 1 ? parts[i] : RewritePart(parts[i]));
        }
        return sb.ToString();
    }

    string RewritePart(string s)
    {
        foreach (var (cmdlet, kvmoc) in Commands)
            s = s.Replace(cmdlet, kvmoc, StringComparison.Ordinal);
        return Param.Replace(s, m => _options.TryGetValue(m.Groups[1].Value.ToLowerInvariant(), out var o) ? o : m.Value);
    }
}
