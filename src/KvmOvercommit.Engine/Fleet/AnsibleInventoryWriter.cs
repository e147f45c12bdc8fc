using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace KvmOvercommit.Engine.Fleet;

/// <summary>The two inventory formats Ansible reads without plugins of ours.</summary>
public enum InventoryFormat
{
    /// <summary>The INI inventory file (`ansible-inventory -i inventory.ini`).</summary>
    Ini = 0,

    /// <summary>The JSON a dynamic-inventory script prints for --list: groups with "hosts", "all.children" and "_meta.hostvars".</summary>
    Json = 1,
}

/// <summary>One host to put in an inventory: a lease, a guest, or anything else with a name and an address.</summary>
public sealed class InventoryEntry
{
    /// <summary>The host's name; hosts without one are named by their address.</summary>
    public string? HostName { get; set; }

    /// <summary>The host's addresses; the first IPv4 address is used, else the first other one that is not link-local.</summary>
    public IReadOnlyList<string>? IPAddress { get; set; }

    /// <summary>The host's MAC address (becomes the host variable mac_address).</summary>
    public string? MacAddress { get; set; }

    /// <summary>When the address lease expires (null: infinite or unknown); with duplicate names the latest lease wins.</summary>
    public DateTimeOffset? Expiry { get; set; }

    /// <summary>An entry from a dnsmasq lease.</summary>
    public static InventoryEntry FromLease(DnsmasqLease lease) => new()
    {
        HostName = lease.HostName,
        IPAddress = new[] { lease.IPAddress },
        MacAddress = lease.MacAddress,
        Expiry = lease.Expiry,
    };
}

/// <summary>How ConvertTo-AnsibleInventory groups and describes hosts.</summary>
public sealed class InventoryOptions
{
    /// <summary>INI or JSON.</summary>
    public InventoryFormat Format { get; set; } = InventoryFormat.Ini;

    /// <summary>
    /// A regular expression matched (case-insensitively) against each host name: the host joins the group named by the
    /// capture group "group", else by the first capture group, else by the whole match. Hosts it does not match stay
    /// ungrouped. Example: '^(\w+)-\d+$' puts win7-12 into group win7.
    /// </summary>
    public string? GroupBy { get; set; }

    /// <summary>Wildcard → group pairs: a host joins every group whose wildcard (PowerShell syntax) matches its name.</summary>
    public IReadOnlyList<KeyValuePair<string, string>>? GroupMap { get; set; }

    /// <summary>Sets ansible_user on every host when not null.</summary>
    public string? User { get; set; }
}

/// <summary>
/// Writes an Ansible inventory (INI, or the JSON of a dynamic-inventory script) from leases or guests: the blog's
/// custom inventory script over dnsmasq leases, as one function.
/// </summary>
/// <remarks>
/// Every host gets ansible_host (its address), ansible_user (with a user) and mac_address (when known). Hosts without
/// a name are named by their address. Host names keep letters, digits, '.', '_' and '-' (anything else becomes '_');
/// group names are made valid Ansible group names (letters, digits, '_', not starting with a digit, not 'all' or
/// 'ungrouped'). When two entries have the same host name (case-insensitive), the latest lease wins (an infinite lease
/// counts as latest; on a tie the later entry), and a verbose message says which addresses were dropped.
/// </remarks>
public static class AnsibleInventoryWriter
{
    /// <summary>One host of the finished inventory.</summary>
    public sealed record Host(string Name, string Address, string? MacAddress, DateTimeOffset? Expiry, IReadOnlyList<string> Groups);

    /// <summary>Builds the inventory text.</summary>
    public static string Write(IEnumerable<InventoryEntry> entries, InventoryOptions options, IOperationObserver observer)
    {
        var hosts = BuildHosts(entries, options, observer);
        return options.Format == InventoryFormat.Json ? RenderJson(hosts, options) : RenderIni(hosts, options);
    }

    /// <summary>The hosts the inventory will contain, deduplicated and grouped, sorted by name (numbers in names sort numerically).</summary>
    public static IReadOnlyList<Host> BuildHosts(IEnumerable<InventoryEntry> entries, InventoryOptions options, IOperationObserver observer)
    {
        if (options.User is { } u && (u.Length == 0 || u.Any(c => char.IsWhiteSpace(c) || c is '\'' or '"' || char.IsControl(c))))
            throw new KvmOcException(ErrorKind.InvalidArgument, "InvalidAnsibleUser", $"'{u}' is not a user name Ansible can use.", u, "Give a user name without spaces or quotes.");
        Regex? groupBy = null;
        if (!string.IsNullOrEmpty(options.GroupBy))
        {
            try
            {
                groupBy = new Regex(options.GroupBy, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            }
            catch (ArgumentException e)
            {
                throw new KvmOcException(ErrorKind.InvalidArgument, "InvalidGroupPattern", $"-GroupBy '{options.GroupBy}' is not a regular expression: {e.Message}", options.GroupBy,
                    @"Give a .NET regular expression whose capture group names the group, e.g. '^(\w+)-\d+$' or '^(?<group>[a-z0-9]+)-'.", e);
            }
        }
        var map = (options.GroupMap ?? Array.Empty<KeyValuePair<string, string>>()).Select(kv => (Pattern: new Wildcard(kv.Key), Group: kv.Value)).ToList();

        var byName = new Dictionary<string, (InventoryEntry Entry, string Name, string Address, int Order)>(StringComparer.OrdinalIgnoreCase);
        var dropped = new Dictionary<string, List<string>>(StringComparer.OrdinalIgnoreCase);
        int order = 0;
        foreach (var e in entries)
        {
            order++;
            var address = PickAddress(e.IPAddress);
            if (address is null)
            {
                observer.Warning($"'{e.HostName ?? e.MacAddress ?? "(unnamed)"}' has no usable IP address; it is left out of the inventory.");
                continue;
            }
            var name = string.IsNullOrWhiteSpace(e.HostName) ? address : SafeHostName(e.HostName.Trim(), observer);
            if (byName.TryGetValue(name, out var existing))
            {
                bool newer = Later(e.Expiry, existing.Entry.Expiry);
                var loser = newer ? existing.Address : address;
                if (!dropped.TryGetValue(name, out var list)) dropped[name] = list = new List<string>();
                list.Add(loser);
                if (!newer) continue;
            }
            byName[name] = (e, name, address, order);
        }
        foreach (var (name, lost) in dropped)
            observer.Verbose($"Host '{byName[name].Name}' has {lost.Count + 1} leases; the latest wins: {byName[name].Address} (dropped {string.Join(", ", lost)}).");

        var hosts = new List<Host>();
        foreach (var (entry, name, address, _) in byName.Values)
        {
            var groups = new SortedSet<string>(StringComparer.Ordinal);
            if (groupBy is not null)
            {
                Match m;
                try { m = groupBy.Match(name); }
                catch (RegexMatchTimeoutException)
                {
                    throw new KvmOcException(ErrorKind.InvalidArgument, "GroupPatternTimeout", $"-GroupBy '{options.GroupBy}' took over a second on '{name}'.", options.GroupBy, "Simplify the regular expression.");
                }
                if (m.Success)
                {
                    var g = m.Groups["group"] is { Success: true } named ? named.Value : m.Groups.Count > 1 && m.Groups[1].Success ? m.Groups[1].Value : m.Value;
                    if (g.Length > 0) groups.Add(SafeGroupName(g, observer));
                }
            }
            foreach (var (pattern, group) in map)
                if (pattern.IsMatch(name)) groups.Add(SafeGroupName(group, observer));
            hosts.Add(new Host(name, address, NormalizeMac(entry.MacAddress), entry.Expiry, groups.ToList()));
        }
        hosts.Sort((a, b) => NaturalCompare(a.Name, b.Name));
        return hosts;
    }

    static string? NormalizeMac(string? mac) => mac is null ? null : DnsmasqLeaseReader.NormalizeMacAddress(mac) ?? mac.Trim();

    /// <summary>True when expiry <paramref name="a"/> is at least as late as <paramref name="b"/> (null = never expires).</summary>
    static bool Later(DateTimeOffset? a, DateTimeOffset? b) => a is null || (b is not null && a.Value >= b.Value);

    static string? PickAddress(IReadOnlyList<string>? addresses)
    {
        if (addresses is null) return null;
        var parsed = addresses.Where(a => !string.IsNullOrWhiteSpace(a))
            .Select(a => System.Net.IPAddress.TryParse(a.Trim(), out var ip) ? ip : null)
            .Where(ip => ip is not null).Select(ip => ip!).ToList();
        var pick = parsed.FirstOrDefault(ip => ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
                   ?? parsed.FirstOrDefault(ip => !ip.IsIPv6LinkLocal);
        return pick?.ToString();
    }

    static string SafeHostName(string name, IOperationObserver observer)
    {
        var safe = Regex.Replace(name, @"[^A-Za-z0-9._-]", "_");
        if (safe != name) observer.Verbose($"Host name '{name}' is written as '{safe}' (Ansible host names cannot contain spaces, brackets, ':' or '=').");
        return safe;
    }

    /// <summary>A valid Ansible group name: letters, digits and '_', not starting with a digit, not a reserved group.</summary>
    public static string SafeGroupName(string group, IOperationObserver observer)
    {
        var safe = Regex.Replace(group, @"[^A-Za-z0-9_]", "_");
        if (safe.Length == 0 || char.IsDigit(safe[0])) safe = "_" + safe;
        if (safe is "all" or "ungrouped") safe += "_";
        if (safe != group) observer.Verbose($"Group name '{group}' is written as '{safe}' (Ansible group names are letters, digits and '_', not starting with a digit).");
        return safe;
    }

    static IEnumerable<(string Key, string Value)> HostVars(Host h, InventoryOptions o)
    {
        yield return ("ansible_host", h.Address);
        if (o.User is not null) yield return ("ansible_user", o.User);
        if (h.MacAddress is not null) yield return ("mac_address", h.MacAddress);
    }

    const string Banner = "Ansible inventory written by KvmOvercommit (ConvertTo-AnsibleInventory / kvmoc inventory)";

    static string RenderIni(IReadOnlyList<Host> hosts, InventoryOptions o)
    {
        var sb = new StringBuilder();
        sb.Append("# ").Append(Banner).Append('\n');
        void Line(Host h) => sb.Append(h.Name).Append(string.Concat(HostVars(h, o).Select(kv => $" {kv.Key}={IniValue(kv.Value)}"))).Append('\n');
        foreach (var h in hosts.Where(h => h.Groups.Count == 0)) Line(h);
        foreach (var g in Groups(hosts))
        {
            sb.Append('\n').Append('[').Append(g).Append("]\n");
            foreach (var h in hosts.Where(h => h.Groups.Contains(g))) Line(h);
        }
        return sb.ToString();
    }

    static string IniValue(string v) => Regex.IsMatch(v, @"^[A-Za-z0-9._:@%+/-]+$") ? v : "'" + v + "'";

    static IEnumerable<string> Groups(IReadOnlyList<Host> hosts) => hosts.SelectMany(h => h.Groups).Distinct().OrderBy(g => g, StringComparer.Ordinal);

    static string RenderJson(IReadOnlyList<Host> hosts, InventoryOptions o)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            var groups = Groups(hosts).ToList();
            var ungrouped = hosts.Where(h => h.Groups.Count == 0).ToList();
            w.WriteStartObject("all");
            w.WriteStartArray("children");
            if (ungrouped.Count > 0) w.WriteStringValue("ungrouped");
            foreach (var g in groups) w.WriteStringValue(g);
            w.WriteEndArray();
            w.WriteEndObject();
            void Group(string name, IEnumerable<Host> members)
            {
                w.WriteStartObject(name);
                w.WriteStartArray("hosts");
                foreach (var h in members) w.WriteStringValue(h.Name);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            if (ungrouped.Count > 0) Group("ungrouped", ungrouped);
            foreach (var g in groups) Group(g, hosts.Where(h => h.Groups.Contains(g)));
            w.WriteStartObject("_meta");
            w.WriteStartObject("hostvars");
            foreach (var h in hosts)
            {
                w.WriteStartObject(h.Name);
                foreach (var (k, v) in HostVars(h, o)) w.WriteString(k, v);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray()) + "\n";
    }

    /// <summary>Compares names so that digit runs compare as numbers (win7-2 before win7-10).</summary>
    public static int NaturalCompare(string a, string b)
    {
        int i = 0, j = 0;
        while (i < a.Length && j < b.Length)
        {
            if (char.IsDigit(a[i]) && char.IsDigit(b[j]))
            {
                int si = i, sj = j;
                while (i < a.Length && char.IsDigit(a[i])) i++;
                while (j < b.Length && char.IsDigit(b[j])) j++;
                var na = a[si..i].TrimStart('0');
                var nb = b[sj..j].TrimStart('0');
                int c = na.Length != nb.Length ? na.Length.CompareTo(nb.Length) : string.CompareOrdinal(na, nb);
                if (c != 0) return c;
            }
            else
            {
                int c = char.ToLowerInvariant(a[i]).CompareTo(char.ToLowerInvariant(b[j]));
                if (c != 0) return c;
                i++; j++;
            }
        }
        int rest = (a.Length - i).CompareTo(b.Length - j);
        return rest != 0 ? rest : string.CompareOrdinal(a, b);
    }
}
