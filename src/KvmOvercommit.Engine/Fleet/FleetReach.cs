using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Fleet;

/// <summary>One guest of the blog's loop: its lease, and whether Ansible reached it over SSH.</summary>
public sealed class FleetGuestReach
{
    /// <summary>The guest name (also its DHCP host name).</summary>
    public string Name { get; set; } = "";
    /// <summary>The NIC's MAC address.</summary>
    public string? MacAddress { get; set; }
    /// <summary>The address dnsmasq leased to it, or null.</summary>
    public string? IPAddress { get; set; }
    /// <summary>The host name the guest sent with DHCP, as the lease file has it.</summary>
    public string? LeaseHostName { get; set; }
    /// <summary>Seconds from the guest's start until its lease was in the lease file (at the poll's resolution, 0.25 s).</summary>
    public double? SecondsToLease { get; set; }
    /// <summary>True when `ansible -m raw` ran a command in the guest over SSH.</summary>
    public bool AnsibleReachable { get; set; }
    /// <summary>Seconds from the guest's start until the first ansible run that reached it ended.</summary>
    public double? SecondsToReachable { get; set; }
    /// <summary>What the command printed in the guest (its host name), or Ansible's last error.</summary>
    public string? AnsibleOutput { get; set; }
}

/// <summary>The blog's loop on an isolated network: leases → inventory → Ansible.</summary>
public sealed class FleetReachResult
{
    /// <summary>The network namespace.</summary>
    public string Namespace { get; set; } = "";
    /// <summary>The bridge in it.</summary>
    public string Bridge { get; set; } = "";
    /// <summary>The subnet dnsmasq serves.</summary>
    public string Subnet { get; set; } = "";
    /// <summary>dnsmasq's lease file.</summary>
    public string LeaseFile { get; set; } = "";
    /// <summary>The Ansible inventory made from the lease file (ConvertTo-AnsibleInventory -Format Ini -User root).</summary>
    public string InventoryFile { get; set; } = "";
    /// <summary>The inventory's text.</summary>
    public string Inventory { get; set; } = "";
    /// <summary>Hosts ansible-inventory --list found in it.</summary>
    public string[] InventoryHosts { get; set; } = Array.Empty<string>();
    /// <summary>The namespace's routes: only the bridge's subnet (no default route, no way out).</summary>
    public string[] Routes { get; set; } = Array.Empty<string>();
    /// <summary>Per guest.</summary>
    public FleetGuestReach[] Guests { get; set; } = Array.Empty<FleetGuestReach>();
    /// <summary>Guests leased / reached.</summary>
    public int Leased { get; set; }
    /// <summary>Guests Ansible reached.</summary>
    public int Reached { get; set; }
}

/// <summary>A guest on the isolated network, as the loop needs it.</summary>
public sealed record FleetMember(string Name, string MacAddress, DateTimeOffset Started);

/// <summary>
/// Waits for the guests' leases in dnsmasq's lease file, writes the inventory from them, checks it with
/// ansible-inventory, and runs `ansible -m raw -a hostname` inside the namespace until every guest answers (or the
/// timeout). SSH: root with the given private key, no host-key checks (the guests' keys are made at their boot).
/// </summary>
public static class FleetReach
{
    /// <summary>Environment for ansible: no host-key checking, no known_hosts, no control master, short timeouts.</summary>
    public static Dictionary<string, string> AnsibleEnvironment(string workDir) => new()
    {
        ["ANSIBLE_HOST_KEY_CHECKING"] = "False",
        ["ANSIBLE_SSH_ARGS"] = "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o ControlMaster=no -o ConnectTimeout=5 -o LogLevel=ERROR",
        ["ANSIBLE_TIMEOUT"] = "10",
        ["ANSIBLE_LOCAL_TEMP"] = Path.Combine(workDir, "ansible-tmp"),
        ["ANSIBLE_NOCOLOR"] = "1",
        ["ANSIBLE_RETRY_FILES_ENABLED"] = "False",
        ["ANSIBLE_DEPRECATION_WARNINGS"] = "False",
    };

    /// <summary>Runs the loop.</summary>
    public static async Task<FleetReachResult> RunAsync(IsolatedNetwork net, IReadOnlyList<FleetMember> guests, string privateKey, string inventoryPath, TimeSpan timeout, IOperationObserver observer, CancellationToken ct)
    {
        var ansible = ToolRunner.Which("ansible") ?? throw new KvmOcException(ErrorKind.NotInstalled, "AnsibleNotInstalled", "ansible is not installed.", "ansible", "Install it: apt-get install ansible-core");
        var result = new FleetReachResult { Namespace = net.Namespace, Bridge = net.Bridge, Subnet = net.Subnet, LeaseFile = net.LeaseFile, InventoryFile = Path.GetFullPath(inventoryPath) };
        var reach = guests.Select(g => new FleetGuestReach { Name = g.Name, MacAddress = DnsmasqLeaseReader.NormalizeMacAddress(g.MacAddress) }).ToList();
        var deadline = DateTimeOffset.UtcNow + timeout;
        result.Routes = await net.RoutesAsync(ct).ConfigureAwait(false);

        // 1. Leases.
        List<DnsmasqLease> leases = new();
        while (true)
        {
            leases = DnsmasqLeaseReader.ReadFile(net.LeaseFile, NullObserver.Instance).ToList();
            foreach (var r in reach.Where(r => r.IPAddress is null))
            {
                var l = leases.LastOrDefault(x => !x.IsIPv6 && string.Equals(x.MacAddress, r.MacAddress, StringComparison.OrdinalIgnoreCase));
                if (l is null) continue;
                r.IPAddress = l.IPAddress;
                r.LeaseHostName = l.HostName;
                r.SecondsToLease = Math.Round((DateTimeOffset.UtcNow - guests.First(g => g.Name == r.Name).Started).TotalSeconds, 2);
                observer.Verbose($"Lease: {r.Name} {r.MacAddress} → {r.IPAddress} (host name {r.LeaseHostName ?? "none"})");
            }
            int leased = reach.Count(r => r.IPAddress is not null);
            observer.Progress(new ProgressInfo("Fleet", $"{leased} of {reach.Count} guest(s) leased"));
            if (leased == reach.Count || DateTimeOffset.UtcNow > deadline) break;
            await Task.Delay(250, ct).ConfigureAwait(false);
        }
        result.Leased = reach.Count(r => r.IPAddress is not null);

        // 2. Inventory from the real lease file (only this experiment's guests).
        var macs = reach.Where(r => r.IPAddress is not null).Select(r => r.MacAddress).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var entries = leases.Where(l => !l.IsIPv6 && macs.Contains(l.MacAddress ?? "")).Select(InventoryEntry.FromLease).ToList();
        result.Inventory = AnsibleInventoryWriter.Write(entries, new InventoryOptions { Format = InventoryFormat.Ini, User = "root", GroupBy = "^(?<group>.+?)-?\\d+$" }, observer);
        File.WriteAllText(result.InventoryFile, result.Inventory);
        var env = AnsibleEnvironment(net.Directory);
        Directory.CreateDirectory(env["ANSIBLE_LOCAL_TEMP"]);
        var inventoryTool = ToolRunner.Which("ansible-inventory");
        if (inventoryTool is not null)
        {
            var inv = await ToolRunner.RunAsync(inventoryTool, new[] { "-i", result.InventoryFile, "--list" }, net.Directory, ct, env).ConfigureAwait(false);
            if (inv.ExitCode == 0) result.InventoryHosts = HostsOf(inv.StdOut);
            else observer.Warning($"ansible-inventory refused {result.InventoryFile}: {inv.Message}");
        }

        // 3. Ansible over SSH inside the namespace, until every leased guest answers.
        while (reach.Any(r => r.IPAddress is not null && !r.AnsibleReachable) && DateTimeOffset.UtcNow < deadline)
        {
            var pending = reach.Where(r => r.IPAddress is not null && !r.AnsibleReachable).Select(r => r.Name).ToList();
            var args = new List<string> { "-i", result.InventoryFile, string.Join(':', pending), "-m", "raw", "-a", "hostname", "--private-key", privateKey, "-o", "-f", "16" };
            var (_, stdout, stderr) = await net.RunAsync(ansible, args, ct, env).ConfigureAwait(false);
            var now = DateTimeOffset.UtcNow;
            foreach (var line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = line.Split(" | ", 4, StringSplitOptions.None);
                if (parts.Length < 2) continue;
                var r = reach.FirstOrDefault(x => x.Name == parts[0].Trim());
                if (r is null) continue;
                if (parts[1].StartsWith("CHANGED", StringComparison.Ordinal) || parts[1].StartsWith("SUCCESS", StringComparison.Ordinal))
                {
                    r.AnsibleReachable = true;
                    r.SecondsToReachable = Math.Round((now - guests.First(g => g.Name == r.Name).Started).TotalSeconds, 2);
                    r.AnsibleOutput = parts.Length == 4 ? parts[3].Replace("(stdout)", "", StringComparison.Ordinal).Replace("\\r", "", StringComparison.Ordinal).Replace("\\n", "\n", StringComparison.Ordinal).Trim() : null; // -o writes the output's \r\n escaped
                    observer.Verbose($"Ansible reached {r.Name} ({r.IPAddress}) after {r.SecondsToReachable} s: {r.AnsibleOutput}");
                }
                else r.AnsibleOutput = line.Trim();
            }
            observer.Progress(new ProgressInfo("Fleet", $"Ansible reached {reach.Count(r => r.AnsibleReachable)} of {reach.Count}"));
            if (reach.Any(r => r.IPAddress is not null && !r.AnsibleReachable)) await Task.Delay(1000, ct).ConfigureAwait(false);
            if (stdout.Length == 0 && stderr.Length > 0) observer.Verbose("ansible: " + stderr.Trim());
        }
        observer.Progress(new ProgressInfo("Fleet", "done", Completed: true));
        result.Reached = reach.Count(r => r.AnsibleReachable);
        result.Guests = reach.ToArray();
        return result;
    }

    /// <summary>Runs a raw command on the named hosts (ansible -m raw, inside the namespace); returns the hosts that succeeded.</summary>
    public static async Task<string[]> RawAsync(IsolatedNetwork net, string inventoryFile, IEnumerable<string> hosts, string command, string privateKey, IOperationObserver observer, CancellationToken ct)
    {
        var ansible = ToolRunner.Which("ansible") ?? throw new KvmOcException(ErrorKind.NotInstalled, "AnsibleNotInstalled", "ansible is not installed.", "ansible", "Install it: apt-get install ansible-core");
        var list = hosts.ToList();
        if (list.Count == 0) return Array.Empty<string>();
        var env = AnsibleEnvironment(net.Directory);
        Directory.CreateDirectory(env["ANSIBLE_LOCAL_TEMP"]);
        observer.Verbose($"ansible {string.Join(':', list)} -m raw -a \"{command}\"");
        var (_, stdout, _) = await net.RunAsync(ansible, new[] { "-i", inventoryFile, string.Join(':', list), "-m", "raw", "-a", command, "--private-key", privateKey, "-o", "-f", "16" }, ct, env).ConfigureAwait(false);
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(" | ", 3))
            .Where(p => p.Length >= 2 && (p[1].StartsWith("CHANGED", StringComparison.Ordinal) || p[1].StartsWith("SUCCESS", StringComparison.Ordinal)))
            .Select(p => p[0].Trim()).ToArray();
    }

    /// <summary>
    /// The shell command (for `ansible -m raw`) that starts an I/O loop on the guest's /dev/vda in the background, detached
    /// from the SSH session (setsid; the sleep lets it start before dropbear closes the session): Write (4 KiB × 256,
    /// O_DIRECT, from /dev/zero), Read (the same, read), RandomWrite (one 4 KiB O_DIRECT write at a random block of the
    /// first 16 MiB per dd). With <paramref name="seconds"/> it stops by itself (busybox timeout).
    /// </summary>
    public static string IoLoadCommand(string kind, int? seconds = null)
    {
        var loop = kind.ToLowerInvariant() switch
        {
            "write" => "while :; do dd if=/dev/zero of=/dev/vda bs=4096 count=256 oflag=direct 2>/dev/null; done",
            "read" => "while :; do dd if=/dev/vda of=/dev/null bs=4096 count=256 iflag=direct 2>/dev/null; done",
            "randomwrite" => "while :; do dd if=/dev/zero of=/dev/vda bs=4096 count=1 seek=$((RANDOM % 4096)) oflag=direct 2>/dev/null; done",
            _ => throw new KvmOcException(ErrorKind.InvalidArgument, "IoLoadInvalid", $"'{kind}' is not an I/O load (Read, Write, RandomWrite).", kind),
        };
        // The detached shell records its pid (= its process group, made by setsid) and execs the loop, so the stop
        // command can end the whole group: this guest's busybox has no pkill.
        var body = $"echo $$ > {IoLoadPidFile}; exec " + (seconds is { } s ? $"timeout {s.ToString(CultureInfo.InvariantCulture)} sh -c '{loop}'" : $"sh -c '{loop}'");
        return $"setsid sh -c \"{body.Replace("\"", "\\\"", StringComparison.Ordinal).Replace("$", "\\$", StringComparison.Ordinal)}\" </dev/null >/dev/null 2>&1 & sleep 1";
    }

    /// <summary>Where the loop IoLoadCommand starts records its process group (in the guest's root file system).</summary>
    public const string IoLoadPidFile = "/kvmoc-io-load.pid";

    /// <summary>
    /// The command that stops the I/O loop IoLoadCommand started: SIGTERM to its process group, then any dd left.
    /// (It used pkill, which Debian's busybox does not have: the loops ran on to their timeout.)
    /// </summary>
    public const string StopIoLoadCommand = "kill -TERM -$(cat " + IoLoadPidFile + ") 2>/dev/null; killall dd 2>/dev/null; rm -f " + IoLoadPidFile + "; true";

    /// <summary>Host names in ansible-inventory --list JSON (_meta.hostvars).</summary>
    public static string[] HostsOf(string listJson)
    {
        using var doc = JsonDocument.Parse(listJson);
        return doc.RootElement.TryGetProperty("_meta", out var meta) && meta.TryGetProperty("hostvars", out var hv)
            ? hv.EnumerateObject().Select(p => p.Name).OrderBy(n => n, StringComparer.Ordinal).ToArray()
            : Array.Empty<string>();
    }

    /// <summary>A new ed25519 key pair (ssh-keygen) in <paramref name="dir"/>: returns the private key path and the public key line.</summary>
    public static async Task<(string PrivateKey, string PublicKey)> NewKeyAsync(string dir, CancellationToken ct)
    {
        var keygen = ToolRunner.Require("ssh-keygen", "openssh-client");
        var key = Path.Combine(dir, "id_ed25519");
        if (File.Exists(key)) File.Delete(key);
        if (File.Exists(key + ".pub")) File.Delete(key + ".pub");
        var r = await ToolRunner.RunAsync(keygen, new[] { "-q", "-t", "ed25519", "-N", "", "-C", "kvmoc-fleet", "-f", key }, dir, ct).ConfigureAwait(false);
        if (r.ExitCode != 0) throw new KvmOcException(ErrorKind.InvalidOperation, "SshKeygenFailed", $"ssh-keygen failed: {r.Message}", key);
        return (key, File.ReadAllText(key + ".pub").Trim());
    }
}
