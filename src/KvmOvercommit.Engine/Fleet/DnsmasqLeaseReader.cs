using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace KvmOvercommit.Engine.Fleet;

/// <summary>
/// Reads dnsmasq lease files and libvirt's dnsmasq status files.
/// </summary>
/// <remarks>
/// dnsmasq's lease file (lease.c) has one lease a line:
/// <c>&lt;expiry epoch|0&gt; &lt;mac|hwtype-addr&gt; &lt;ip&gt; &lt;hostname|*&gt; &lt;client-id|*&gt;</c>; after a line
/// <c>duid &lt;server DUID&gt;</c> come the DHCPv6 leases, whose second field is the IAID (T-prefixed for temporary
/// addresses) and whose last field is the client's DUID. Expiry 0 means an infinite lease. libvirt (leaseshelper) keeps
/// its leases as a JSON array in /var/lib/libvirt/dnsmasq/&lt;network&gt;.status:
/// <c>[{"ip-address", "mac-address", "hostname", "client-id", "expiry-time", "iaid", "server-duid"}]</c>.
/// A file whose first non-blank character is '[' is read as such a status file, whatever its name.
/// Lines that cannot be parsed become warnings naming file:line; they never stop the read.
/// </remarks>
public sealed class DnsmasqLeaseReader
{
    /// <summary>Where dnsmasq keeps leases on Debian, other distributions and under libvirt (wildcards in the last segment).</summary>
    public static readonly IReadOnlyList<string> DefaultLocations = new[]
    {
        "/var/lib/misc/dnsmasq.leases",
        "/var/lib/dnsmasq/dnsmasq.leases",
        "/var/lib/libvirt/dnsmasq/*.leases",
        "/var/lib/libvirt/dnsmasq/*.status",
    };

    readonly string _root;

    /// <summary>A reader; <paramref name="root"/> prefixes the default locations (tests point it at a fake tree).</summary>
    public DnsmasqLeaseReader(string root = "/") => _root = root;

    /// <summary>The default locations under this reader's root, as tried.</summary>
    public IReadOnlyList<string> DefaultPaths => DefaultLocations.Select(p => Path.Combine(_root, p.TrimStart('/'))).ToList();

    /// <summary>The existing lease files among the default locations (wildcards expanded, sorted).</summary>
    public IReadOnlyList<string> FindDefaultFiles()
    {
        var found = new List<string>();
        foreach (var p in DefaultPaths)
        {
            var dir = Path.GetDirectoryName(p)!;
            var name = Path.GetFileName(p);
            if (name.Contains('*'))
            {
                if (!Directory.Exists(dir)) continue;
                try
                {
                    found.AddRange(Directory.EnumerateFiles(dir, name).OrderBy(f => f, StringComparer.Ordinal));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw KvmOcException.FromIo(e, "LeaseDirectoryUnreadable", $"Cannot list {dir}", dir);
                }
            }
            else if (File.Exists(p))
            {
                found.Add(p);
            }
        }
        return found;
    }

    /// <summary>Reads every lease file found at the default locations; none found → NotFound naming the paths tried.</summary>
    public IReadOnlyList<DnsmasqLease> ReadDefault(IOperationObserver observer)
    {
        var files = FindDefaultFiles();
        if (files.Count == 0)
            throw new KvmOcException(ErrorKind.NotFound, "LeaseFileNotFound",
                $"No dnsmasq lease file found; tried {string.Join(", ", DefaultPaths)}.", string.Join(", ", DefaultPaths),
                "Pass the lease file with -Path (kvmoc: --path / --lease-file); dnsmasq's --dhcp-leasefile option names it.");
        var all = new List<DnsmasqLease>();
        foreach (var f in files) all.AddRange(ReadFile(f, observer));
        return all;
    }

    /// <summary>Reads one lease file (dnsmasq format or libvirt JSON status).</summary>
    public static IReadOnlyList<DnsmasqLease> ReadFile(string path, IOperationObserver observer)
    {
        string text;
        // A folder, FIFO, socket or device is refused before anything opens it (a FIFO would block the read).
        FileKind.RequireFile(path, "Lease file", directoryId: "LeaseFileIsDirectory", notFileId: "LeaseFileNotRegularFile");
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var k = KvmOcException.FromIo(e, "LeaseFileUnreadable", $"Cannot read lease file {path}", path);
            if (k.Kind == ErrorKind.NotFound)
                throw new KvmOcException(ErrorKind.NotFound, "LeaseFileNotFound", $"Lease file {path} does not exist.", path, "Check the path; dnsmasq's --dhcp-leasefile option names it.", e);
            throw k;
        }
        observer.Verbose($"Reading leases from {path}");
        return Parse(text, path, observer);
    }

    /// <summary>Parses the text of a lease file; <paramref name="leaseFile"/> names it in the results and warnings.</summary>
    public static IReadOnlyList<DnsmasqLease> Parse(string text, string leaseFile, IOperationObserver observer)
    {
        var trimmed = text.AsSpan().TrimStart();
        return trimmed.Length > 0 && trimmed[0] == '['
            ? ParseLibvirtStatus(text, leaseFile, observer)
            : ParseLeaseFile(text, leaseFile, observer);
    }

    static IReadOnlyList<DnsmasqLease> ParseLeaseFile(string text, string leaseFile, IOperationObserver observer)
    {
        var leases = new List<DnsmasqLease>();
        int skipped = 0;
        string? serverDuid = null;
        var lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r').Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var f = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            string? problem;
            if (f[0] == "duid")
            {
                if (f.Length == 2 && IsHexColon(f[1])) { serverDuid = f[1].ToLowerInvariant(); continue; }
                problem = "a duid line needs one colon-separated hex DUID";
            }
            else
            {
                var lease = ParseLine(f, serverDuid, out problem);
                if (lease is not null)
                {
                    lease.LeaseFile = leaseFile;
                    lease.LineNumber = i + 1;
                    leases.Add(lease);
                    continue;
                }
            }
            // A binary file or the wrong file would otherwise print a warning for every line: a few, then a count.
            if (++skipped <= MaxLineWarnings)
                observer.Warning($"{leaseFile}:{i + 1}: skipped a line that is not a dnsmasq lease ({problem}): {Shorten(line)}");
        }
        if (skipped > MaxLineWarnings)
            observer.Warning($"{leaseFile}: skipped {skipped - MaxLineWarnings} more line(s) that are not dnsmasq leases ({skipped} in all; is it a lease file?).");
        return leases;
    }

    /// <summary>How many skipped lines of one file are named in warnings before the rest are only counted.</summary>
    public const int MaxLineWarnings = 5;

    static DnsmasqLease? ParseLine(string[] f, string? serverDuid, out string? problem)
    {
        problem = null;
        if (f.Length is < 4 or > 5) { problem = $"{f.Length} fields, expected 5"; return null; }
        if (!TryParseExpiry(f[0], out var expiry)) { problem = $"expiry '{f[0]}' is not a Unix time"; return null; }
        if (!System.Net.IPAddress.TryParse(f[2], out var ip)) { problem = $"'{f[2]}' is not an IP address"; return null; }
        var lease = new DnsmasqLease
        {
            Expiry = expiry,
            IPAddress = ip.ToString(),
            HostName = f[3] == "*" ? null : f[3],
            ClientId = f.Length < 5 || f[4] == "*" ? null : f[4].ToLowerInvariant(),
        };
        if (ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            if (!Regex.IsMatch(f[1], @"^T?\d{1,10}$")) { problem = $"'{f[1]}' is not an IAID"; return null; }
            lease.IsIPv6 = true;
            lease.Iaid = f[1];
            lease.Duid = lease.ClientId;
            lease.ServerDuid = serverDuid;
        }
        else
        {
            if (!TryParseHardwareAddress(f[1], out var mac, out var hwType)) { problem = $"'{f[1]}' is not a hardware address"; return null; }
            lease.MacAddress = mac;
            lease.HardwareType = hwType;
            lease.Duid = DuidFromClientId(lease.ClientId);
        }
        return lease;
    }

    static IReadOnlyList<DnsmasqLease> ParseLibvirtStatus(string text, string leaseFile, IOperationObserver observer)
    {
        var leases = new List<DnsmasqLease>();
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            observer.Warning($"{leaseFile}:{(e.LineNumber ?? 0) + 1}: not a valid libvirt lease status file ({e.Message.Split('.')[0]}); no leases read from it.");
            return leases;
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
            {
                observer.Warning($"{leaseFile}:1: a libvirt lease status file is a JSON array; no leases read from it.");
                return leases;
            }
            int index = 0;
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                index++;
                var lease = ParseStatusEntry(e, out var problem);
                if (lease is null)
                {
                    observer.Warning($"{leaseFile}:{index}: skipped lease entry {index} ({problem}).");
                    continue;
                }
                lease.LeaseFile = leaseFile;
                lease.LineNumber = index;
                leases.Add(lease);
            }
        }
        return leases;
    }

    static DnsmasqLease? ParseStatusEntry(JsonElement e, out string? problem)
    {
        problem = null;
        if (e.ValueKind != JsonValueKind.Object) { problem = "not a JSON object"; return null; }
        var ipText = Str(e, "ip-address");
        if (ipText is null || !System.Net.IPAddress.TryParse(ipText, out var ip)) { problem = $"ip-address '{ipText}' is not an IP address"; return null; }
        DateTimeOffset? expiry = null;
        if (e.TryGetProperty("expiry-time", out var ex))
        {
            string raw = ex.ValueKind == JsonValueKind.Number ? ex.GetRawText() : ex.ValueKind == JsonValueKind.String ? ex.GetString()! : "?";
            if (!TryParseExpiry(raw, out expiry)) { problem = $"expiry-time '{raw}' is not a Unix time"; return null; }
        }
        var lease = new DnsmasqLease
        {
            Expiry = expiry,
            IPAddress = ip.ToString(),
            HostName = Str(e, "hostname") is { Length: > 0 } h && h != "*" ? h : null,
            ClientId = Str(e, "client-id") is { Length: > 0 } c && c != "*" ? c.ToLowerInvariant() : null,
            IsIPv6 = ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6,
        };
        var macText = Str(e, "mac-address");
        if (macText is not null)
        {
            if (!TryParseHardwareAddress(macText, out var mac, out var hw)) { problem = $"mac-address '{macText}' is not a hardware address"; return null; }
            lease.MacAddress = mac;
            lease.HardwareType = hw;
        }
        if (lease.IsIPv6)
        {
            lease.Iaid = Str(e, "iaid");
            lease.ServerDuid = Str(e, "server-duid")?.ToLowerInvariant();
            lease.Duid = lease.ClientId;
        }
        else
        {
            lease.Duid = DuidFromClientId(lease.ClientId);
        }
        return lease;
    }

    static string? Str(JsonElement e, string name) => e.TryGetProperty(name, out var v) ? v.ValueKind switch
    {
        JsonValueKind.String => v.GetString(),
        JsonValueKind.Number => v.GetRawText(),
        _ => null,
    } : null;

    static bool TryParseExpiry(string s, out DateTimeOffset? expiry)
    {
        expiry = null;
        if (!long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var secs)) return false;
        if (secs == 0) return true;
        if (secs > 253402300799L) return false; // beyond 9999-12-31
        expiry = DateTimeOffset.FromUnixTimeSeconds(secs);
        return true;
    }

    /// <summary>
    /// Parses dnsmasq's hardware address field: a MAC, or <c>&lt;hwtype hex&gt;-&lt;address&gt;</c> for non-Ethernet
    /// hardware (e.g. <c>20-…</c> for InfiniBand). Hardware type 1 (Ethernet) when there is no prefix.
    /// </summary>
    public static bool TryParseHardwareAddress(string field, out string? address, out int? hardwareType)
    {
        address = null;
        hardwareType = null;
        var m = Regex.Match(field, @"^([0-9A-Fa-f]{1,2})-((?:[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2})*)?)$");
        if (m.Success)
        {
            hardwareType = int.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            address = m.Groups[2].Value.Length == 0 ? null : NormalizeMacAddress(m.Groups[2].Value);
            return m.Groups[2].Value.Length == 0 || address is not null;
        }
        address = NormalizeMacAddress(field);
        hardwareType = address is null ? null : 1;
        return address is not null;
    }

    /// <summary>
    /// A hardware address in lower-case colon form (52:54:00:0a:0b:0c): accepts colons, dashes, Cisco dots or bare hex
    /// digits; single-digit octets are padded. Null when <paramref name="value"/> is not a hardware address.
    /// </summary>
    public static string? NormalizeMacAddress(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        var v = value.Trim();
        string[] octets;
        if (Regex.IsMatch(v, @"^[0-9A-Fa-f]{1,2}([:-][0-9A-Fa-f]{1,2})+$"))
            octets = v.Split(':', '-');
        else if (Regex.IsMatch(v, @"^([0-9A-Fa-f]{2})+$") && v.Length >= 12)
            octets = Enumerable.Range(0, v.Length / 2).Select(i => v.Substring(i * 2, 2)).ToArray();
        else if (Regex.IsMatch(v, @"^[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}$"))
            octets = Enumerable.Range(0, 6).Select(i => v.Replace(".", "").Substring(i * 2, 2)).ToArray();
        else
            return null;
        if (v.Contains(':') && v.Contains('-')) return null;
        return string.Join(":", octets.Select(o => o.PadLeft(2, '0').ToLowerInvariant()));
    }

    /// <summary>The DUID inside an RFC 4361 DHCPv4 client identifier (type 255, then a 4-byte IAID, then the DUID).</summary>
    static string? DuidFromClientId(string? clientId)
    {
        if (clientId is null || !IsHexColon(clientId)) return null;
        var bytes = clientId.Split(':');
        return bytes.Length > 7 && bytes[0] == "ff" ? string.Join(":", bytes.Skip(5)) : null;
    }

    static bool IsHexColon(string s) => Regex.IsMatch(s, @"^[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2})*$");

    static string Shorten(string line) => line.Length <= 120 ? line : line[..117] + "...";
}
