using System.Diagnostics;
using System.Globalization;
using System.Text;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Fleet;

/// <summary>
/// A network for an experiment's guests that nothing outside can reach and that reaches nothing outside: a network
/// namespace, a Linux bridge in it with the host end's address, and dnsmasq serving DHCP on that bridge only (no DNS,
/// its own lease file). Guests join it through QEMU running in the namespace (-NetworkNamespace, -Bridge): QEMU
/// creates one tap per guest there, which goes away with QEMU. The namespace has no link to the host's, so it has no
/// route out. Disposing stops dnsmasq and deletes the namespace with everything in it.
/// </summary>
public sealed class IsolatedNetwork : IAsyncDisposable
{
    /// <summary>The bridge's name inside the namespace.</summary>
    public const string BridgeName = "kvbr0";

    /// <summary>Prefix of the namespaces this creates (kvmoc-net-&lt;8 hex&gt;).</summary>
    public const string NamespacePrefix = "kvmoc-net-";

    Process? _dnsmasq;
    bool _disposed;

    IsolatedNetwork(string ns, string directory, string subnetPrefix)
    {
        Namespace = ns;
        Directory = directory;
        SubnetPrefix = subnetPrefix;
    }

    /// <summary>The network namespace.</summary>
    public string Namespace { get; }
    /// <summary>The bridge in it.</summary>
    public string Bridge => BridgeName;
    /// <summary>The folder with dnsmasq's lease, pid and log files.</summary>
    public string Directory { get; }
    /// <summary>The first three octets of the /24, e.g. 10.213.0.</summary>
    public string SubnetPrefix { get; }
    /// <summary>The bridge's address (the DHCP server's), e.g. 10.213.0.1.</summary>
    public string HostAddress => SubnetPrefix + "1";
    /// <summary>The subnet, e.g. 10.213.0.0/24.</summary>
    public string Subnet => SubnetPrefix + "0/24";
    /// <summary>dnsmasq's lease file (Get-DnsmasqLease -Path reads it).</summary>
    public string LeaseFile => Path.Combine(Directory, "dnsmasq.leases");
    /// <summary>dnsmasq's log.</summary>
    public string LogFile => Path.Combine(Directory, "dnsmasq.log");
    /// <summary>dnsmasq's process id, while it runs.</summary>
    public int? DnsmasqId => _dnsmasq is { HasExited: false } p ? p.Id : null;

    /// <summary>What creating it will run (for -WhatIf).</summary>
    public static string[] Describe(string ns, string directory) => new[]
    {
        $"ip netns add {ns}",
        $"ip -n {ns} link add {BridgeName} type bridge; ip -n {ns} addr add 10.213.0.1/24 dev {BridgeName}",
        $"ip netns exec {ns} dnsmasq --port=0 --interface={BridgeName} --dhcp-range=10.213.0.10,10.213.0.250,1h --dhcp-leasefile={Path.Combine(directory, "dnsmasq.leases")}",
        $"(cleanup) stop dnsmasq; ip netns delete {ns}",
    };

    /// <summary>A new namespace name.</summary>
    public static string NewName() => NamespacePrefix + Guid.NewGuid().ToString("N")[..8];

    /// <summary>Creates the namespace, the bridge and dnsmasq. On any failure what was made is removed again.</summary>
    public static async Task<IsolatedNetwork> CreateAsync(string directory, string? name, IOperationObserver observer, CancellationToken ct)
    {
        if (geteuid() != 0)
            throw new KvmOcException(ErrorKind.PermissionDenied, "IsolatedNetworkNeedsRoot", "An isolated network (network namespace, bridge, dnsmasq) needs root.", null, "Run as root, or without -Network Isolated.");
        var dnsmasq = ToolRunner.Which("dnsmasq") ?? throw new KvmOcException(ErrorKind.NotInstalled, "DnsmasqNotInstalled", "dnsmasq is not installed; the isolated network's DHCP server is dnsmasq.", "dnsmasq", "Install it: apt-get install dnsmasq-base");
        ToolRunner.Require("ip", "iproute2");
        var ns = name ?? NewName();
        System.IO.Directory.CreateDirectory(directory);
        var net = new IsolatedNetwork(ns, Path.GetFullPath(directory), "10.213.0.");
        try
        {
            await net.IpAsync(ct, "netns", "add", ns).ConfigureAwait(false);
            await net.IpAsync(ct, "-n", ns, "link", "set", "lo", "up").ConfigureAwait(false);
            await net.IpAsync(ct, "-n", ns, "link", "add", BridgeName, "type", "bridge").ConfigureAwait(false);
            await net.IpAsync(ct, "-n", ns, "addr", "add", net.HostAddress + "/24", "dev", BridgeName).ConfigureAwait(false);
            await net.IpAsync(ct, "-n", ns, "link", "set", BridgeName, "up").ConfigureAwait(false);
            observer.Verbose($"Network namespace {ns}: bridge {BridgeName} {net.HostAddress}/24, no route out.");
            File.WriteAllText(net.LeaseFile, "");
            var args = new[]
            {
                "netns", "exec", ns, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
                "--interface=" + BridgeName, "--bind-interfaces", "--except-interface=lo",
                $"--dhcp-range={net.SubnetPrefix}10,{net.SubnetPrefix}250,255.255.255.0,1h", "--dhcp-authoritative",
                "--dhcp-leasefile=" + net.LeaseFile, "--log-facility=" + net.LogFile, "--log-dhcp",
                "--pid-file=" + Path.Combine(net.Directory, "dnsmasq.pid"),
            };
            observer.Verbose("ip " + string.Join(' ', args));
            var psi = new ProcessStartInfo(ToolRunner.Which("ip")!) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in args) psi.ArgumentList.Add(a);
            net._dnsmasq = Process.Start(psi) ?? throw new KvmOcException(ErrorKind.InvalidOperation, "DnsmasqStartFailed", "dnsmasq did not start.", ns);
            // Ready when it listens on the DHCP port (its log says so), or failed when it exits.
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < TimeSpan.FromSeconds(10))
            {
                if (net._dnsmasq.HasExited)
                    throw new KvmOcException(ErrorKind.InvalidOperation, "DnsmasqStartFailed", $"dnsmasq exited at once: {(await net._dnsmasq.StandardError.ReadToEndAsync(ct).ConfigureAwait(false)).Trim()}", ns);
                if (File.Exists(net.LogFile) && File.ReadAllText(net.LogFile).Contains("DHCP, IP range", StringComparison.Ordinal)) break;
                await Task.Delay(50, ct).ConfigureAwait(false);
            }
            observer.Verbose($"dnsmasq (pid {net._dnsmasq.Id}) serves DHCP on {BridgeName} in {ns}; leases in {net.LeaseFile}");
            return net;
        }
        catch
        {
            await net.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Runs a program inside the namespace (ip netns exec NS …) and returns its exit code and output.</summary>
    public async Task<(int ExitCode, string StdOut, string StdErr)> RunAsync(string program, IEnumerable<string> args, CancellationToken ct, IDictionary<string, string>? env = null)
    {
        var all = new List<string> { "netns", "exec", Namespace, program };
        all.AddRange(args);
        var r = await ToolRunner.RunAsync(ToolRunner.Which("ip")!, all, Directory, ct, env).ConfigureAwait(false);
        return (r.ExitCode, r.StdOut, r.StdErr);
    }

    /// <summary>The namespace's routes (ip route): only the bridge's /24, no default route.</summary>
    public async Task<string[]> RoutesAsync(CancellationToken ct)
    {
        var r = await ToolRunner.RunAsync(ToolRunner.Which("ip")!, new[] { "-n", Namespace, "route", "show", "table", "all" }, null, ct).ConfigureAwait(false);
        return r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !l.StartsWith("local ", StringComparison.Ordinal) && !l.StartsWith("broadcast ", StringComparison.Ordinal) && !l.Contains("fe80::", StringComparison.Ordinal) && !l.StartsWith("multicast ", StringComparison.Ordinal) && !l.StartsWith("anycast ", StringComparison.Ordinal)).ToArray();
    }

    /// <summary>True when a namespace of that name exists (ip netns list).</summary>
    public static bool NamespaceExists(string ns) => File.Exists(Path.Combine("/run/netns", ns));

    async Task IpAsync(CancellationToken ct, params string[] args)
    {
        var r = await ToolRunner.RunAsync(ToolRunner.Which("ip")!, args, null, ct).ConfigureAwait(false);
        if (r.ExitCode != 0)
            throw new KvmOcException(r.Message.Contains("Operation not permitted", StringComparison.Ordinal) ? ErrorKind.PermissionDenied : ErrorKind.InvalidOperation,
                "IsolatedNetworkFailed", $"ip {string.Join(' ', args)} failed: {r.Message}", Namespace);
    }

    /// <summary>Stops dnsmasq and deletes the namespace (with its bridge and any tap left in it). Safe to call twice.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        if (_dnsmasq is { } p)
        {
            try
            {
                if (!p.HasExited)
                {
                    kill(p.Id, 15);
                    if (!p.WaitForExit(3000)) { p.Kill(true); p.WaitForExit(3000); }
                }
            }
            catch (InvalidOperationException) { }
            p.Dispose();
        }
        // dnsmasq runs as a child of `ip netns exec`, which execs it: the pid is dnsmasq's own. Kill any stray left in the namespace.
        await RemoveNamespaceAsync(Namespace).ConfigureAwait(false);
    }

    /// <summary>
    /// Kills whatever still runs in namespace <paramref name="ns"/> (SIGKILL: dnsmasq, a stray QEMU) and deletes it with
    /// its bridge and taps; nothing when it does not exist. Also what -Recover does for a killed run's namespace.
    /// </summary>
    public static async Task RemoveNamespaceAsync(string ns)
    {
        foreach (var pid in await PidsInNamespaceAsync(ns).ConfigureAwait(false)) kill(pid, 9);
        if (NamespaceExists(ns))
        {
            var r = await ToolRunner.RunAsync(ToolRunner.Which("ip") ?? "ip", new[] { "netns", "delete", ns }).ConfigureAwait(false);
            if (r.ExitCode != 0 && NamespaceExists(ns))
                throw new KvmOcException(ErrorKind.ResourceBusy, "IsolatedNetworkCleanupFailed", $"ip netns delete {ns} failed: {r.Message}", ns);
        }
    }

    static async Task<int[]> PidsInNamespaceAsync(string ns)
    {
        if (!NamespaceExists(ns)) return Array.Empty<int>();
        var r = await ToolRunner.RunAsync(ToolRunner.Which("ip") ?? "ip", new[] { "netns", "pids", ns }).ConfigureAwait(false);
        return r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int x) ? x : 0).Where(x => x > 0).ToArray();
    }

    [System.Runtime.InteropServices.DllImport("libc")] static extern uint geteuid();
    [System.Runtime.InteropServices.DllImport("libc")] static extern int kill(int pid, int sig);
}
