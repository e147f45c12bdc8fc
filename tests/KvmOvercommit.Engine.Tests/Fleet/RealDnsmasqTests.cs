using System.Diagnostics;
using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Fleet;

/// <summary>
/// The lease reader against a lease file the real dnsmasq writes while it runs: dnsmasq on one end of a veth pair,
/// busybox udhcpc in a network namespace on the other, three clients (named, unnamed without client id, a static
/// infinite lease). The file must parse without a warning and become the expected inventory. (A capture of such a
/// file is Fixtures/fleet/real-dnsmasq-2.90.leases, tested in DnsmasqLeaseReaderTests without root.)
/// </summary>
[Collection(HostSerialCollection.Name)]
public class RealDnsmasqTests
{
    [SkippableFact]
    public void LiveDnsmasqLeaseFileParses()
    {
        Prereq.RequireRoot();
        var ip = Prereq.RequireTool("ip");
        var dnsmasq = Prereq.RequireTool("dnsmasq");
        var busybox = Prereq.RequireTool("busybox");
        var tag = Guid.NewGuid().ToString("N")[..6];
        string ns = $"kvmoc-{tag}", host = $"kvo{tag}a", peer = $"kvo{tag}b";
        using var t = new TempDir("kvmoc-dnsmasq");
        var leaseFile = t.File("dnsmasq.leases");
        Process? server = null;
        try
        {
            Run(ip, "netns", "add", ns);
            Run(ip, "link", "add", host, "type", "veth", "peer", "name", peer);
            Run(ip, "link", "set", peer, "netns", ns);
            Run(ip, "addr", "add", "10.231.77.1/24", "dev", host);
            Run(ip, "link", "set", host, "up");
            Run(ip, "netns", "exec", ns, ip, "link", "set", peer, "up");
            var psi = new ProcessStartInfo(dnsmasq) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { "--no-daemon", "--conf-file=/dev/null", "--port=0", $"--interface={host}", "--bind-interfaces",
                         "--dhcp-range=10.231.77.10,10.231.77.50,12h", "--dhcp-host=52:54:00:77:00:03,10.231.77.40,infinite",
                         $"--dhcp-leasefile={leaseFile}", $"--pid-file={t.File("pid")}", "--user=root", "--group=root" })
                psi.ArgumentList.Add(a);
            server = Process.Start(psi)!;
            server.ErrorDataReceived += (_, _) => { };
            server.BeginErrorReadLine();
            server.BeginOutputReadLine();
            var clients = new (string Mac, string[] Args)[]
            {
                ("52:54:00:77:00:01", new[] { "-x", "hostname:win7-01" }),
                ("52:54:00:77:00:02", new[] { "-C" }),
                ("52:54:00:77:00:03", new[] { "-x", "hostname:deb-01" }),
            };
            foreach (var (mac, extra) in clients)
            {
                Run(ip, "netns", "exec", ns, ip, "link", "set", peer, "address", mac);
                Run(new[] { ip, "netns", "exec", ns, busybox, "udhcpc", "-i", peer, "-n", "-q", "-t", "8", "-T", "1", "-s", "/bin/true" }.Concat(extra).ToArray());
            }
            var obs = new RecordingObserver();
            var leases = DnsmasqLeaseReader.ReadFile(leaseFile, obs);
            Assert.Empty(obs.Warnings);
            Assert.Equal(3, leases.Count);
            var w = leases.Single(l => l.MacAddress == "52:54:00:77:00:01");
            Assert.Equal("win7-01", w.HostName);
            Assert.StartsWith("10.231.77.", w.IPAddress);
            Assert.Equal("01:52:54:00:77:00:01", w.ClientId);
            Assert.InRange(w.Expiry!.Value, DateTimeOffset.UtcNow.AddHours(11), DateTimeOffset.UtcNow.AddHours(13));
            var anon = leases.Single(l => l.MacAddress == "52:54:00:77:00:02");
            Assert.Null(anon.HostName);
            Assert.Null(anon.ClientId);
            var d = leases.Single(l => l.MacAddress == "52:54:00:77:00:03");
            Assert.Equal(("deb-01", "10.231.77.40"), (d.HostName, d.IPAddress));
            Assert.Null(d.Expiry);

            var ini = AnsibleInventoryWriter.Write(leases.Select(InventoryEntry.FromLease), new InventoryOptions { GroupBy = @"^(\w+)-\d+$" }, new RecordingObserver());
            Assert.Contains("[win7]\nwin7-01 ansible_host=" + w.IPAddress + " mac_address=52:54:00:77:00:01\n", ini);
            Assert.Contains($"\n{anon.IPAddress} ansible_host={anon.IPAddress} mac_address=52:54:00:77:00:02\n", ini);
        }
        finally
        {
            if (server is not null)
            {
                try { server.Kill(); server.WaitForExit(5000); } catch (InvalidOperationException) { }
                server.Dispose();
            }
            TryRun(ip, "netns", "del", ns);   // removes the peer and with it the veth pair
            TryRun(ip, "link", "del", host);
        }
    }

    static void Run(params string[] argv)
    {
        var (code, output) = Exec(argv);
        Assert.True(code == 0, $"{string.Join(' ', argv)} exited {code}: {output}");
    }

    static void TryRun(params string[] argv) => Exec(argv);

    static (int Code, string Output) Exec(string[] argv)
    {
        var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000)) { p.Kill(entireProcessTree: true); return (-1, "timed out"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
