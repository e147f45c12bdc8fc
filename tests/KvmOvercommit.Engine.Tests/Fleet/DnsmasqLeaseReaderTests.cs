using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Fleet;

public class DnsmasqLeaseReaderTests
{
    static (IReadOnlyList<DnsmasqLease> Leases, RecordingObserver Obs) Read(string fixture)
    {
        var obs = new RecordingObserver();
        return (DnsmasqLeaseReader.ReadFile(Fixture.PathOf("fleet/" + fixture), obs), obs);
    }

    [Fact]
    public void ReadsIPv4LeasesWithNamesClientIdsAndExpiry()
    {
        var (leases, _) = Read("dnsmasq.leases");
        var w1 = leases.Single(l => l.HostName == "win7-01");
        Assert.Equal("192.168.122.10", w1.IPAddress);
        Assert.Equal("52:54:00:6b:3c:58", w1.MacAddress);
        Assert.Equal(1, w1.HardwareType);
        Assert.Equal("01:52:54:00:6b:3c:58", w1.ClientId);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1732262400), w1.Expiry);
        Assert.Equal(TimeSpan.Zero, w1.Expiry!.Value.Offset);
        Assert.False(w1.IsIPv6);
        Assert.Null(w1.Iaid);
        Assert.Null(w1.Duid);
        Assert.Equal(1, w1.LineNumber);
        Assert.EndsWith("dnsmasq.leases", w1.LeaseFile);

        var w2 = leases.Single(l => l.HostName == "win7-02");
        Assert.Equal("52:54:00:6b:3c:59", w2.MacAddress); // normalised to lower case
        Assert.Null(w2.ClientId);                         // '*'
    }

    // dnsmasq 2.90 on this machine, leases taken by busybox udhcpc from a network namespace (see RealDnsmasqTests).
    [Fact]
    public void CaptureFromRealDnsmasqParsesWithoutWarnings()
    {
        var obs = new RecordingObserver();
        var leases = DnsmasqLeaseReader.ReadFile(Fixture.PathOf("fleet/real-dnsmasq-2.90.leases"), obs);
        Assert.Empty(obs.Warnings);
        Assert.Equal(4, leases.Count);
        var deb = leases.Single(l => l.HostName == "deb-01");
        Assert.Null(deb.Expiry); // dhcp-host=…,infinite
        Assert.Equal("01:52:54:00:31:00:03", deb.ClientId);
        var anon = leases.Single(l => l.MacAddress == "52:54:00:31:00:02");
        Assert.Null(anon.HostName);
        Assert.Null(anon.ClientId);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1795378781), leases.Single(l => l.HostName == "win7-01").Expiry);
    }

    [Fact]
    public void InfiniteLeaseAndStarNameBecomeNull()
    {
        var (leases, _) = Read("dnsmasq.leases");
        var l = leases.Single(x => x.IPAddress == "192.168.122.2");
        Assert.Null(l.Expiry);
        Assert.Null(l.HostName);
        Assert.Null(l.ClientId);
        Assert.Equal("52:54:00:aa:bb:cc", l.MacAddress);
    }

    [Fact]
    public void NonEthernetHardwareTypeAndRfc4361ClientId()
    {
        var (leases, _) = Read("dnsmasq.leases");
        var ib = leases.Single(x => x.HostName == "ib-node");
        Assert.Equal(0x20, ib.HardwareType);
        Assert.Equal(20, ib.MacAddress!.Split(':').Length);
        Assert.StartsWith("80:00:02:08:fe:80", ib.MacAddress);
        Assert.Equal("00:01:00:01:2a:3b:4c:5d:52:54:00:6b:3c:60", ib.Duid);
    }

    [Fact]
    public void IPv6LinesAfterDuidLineCarryIaidAndDuid()
    {
        var (leases, _) = Read("dnsmasq.leases");
        var v6 = leases.Where(l => l.IsIPv6).ToList();
        Assert.Equal(2, v6.Count);
        var d = v6.Single(l => l.HostName == "deb-01");
        Assert.Equal("fd00:122::10", d.IPAddress);
        Assert.Null(d.MacAddress);
        Assert.Null(d.HardwareType);
        Assert.Equal("2818051", d.Iaid);
        Assert.Equal("00:01:00:01:2c:5e:1a:2b:52:54:00:6b:3c:61", d.Duid);
        Assert.Equal(d.Duid, d.ClientId);
        Assert.Equal("00:01:00:01:2c:5e:1a:2b:52:54:00:00:00:01", d.ServerDuid);
        var t = v6.Single(l => l.HostName is null);
        Assert.Equal("T2818052", t.Iaid);
        Assert.Null(t.Expiry);
    }

    [Fact]
    public void CorruptLinesWarnWithFileAndLineAndAreSkipped()
    {
        var (leases, obs) = Read("dnsmasq.leases");
        Assert.Equal(7, leases.Count);
        Assert.Equal(3, obs.Warnings.Count);
        Assert.Contains(obs.Warnings, w => w.Contains("dnsmasq.leases:5:"));
        Assert.Contains(obs.Warnings, w => w.Contains("dnsmasq.leases:6:") && w.Contains("192.168.122.999"));
        Assert.Contains(obs.Warnings, w => w.Contains("dnsmasq.leases:11:") && w.Contains("IAID"));
    }

    [Theory]
    [InlineData("x y z")]
    [InlineData("-5 52:54:00:00:00:01 10.0.0.1 a *")]
    [InlineData("1 52:54:00:00:00:01 10.0.0.1 a * extra")]
    [InlineData("1 zz:54:00:00:00:01 10.0.0.1 a *")]
    [InlineData("99999999999999 52:54:00:00:00:01 10.0.0.1 a *")]
    [InlineData("duid")]
    public void GarbageNeverThrows(string line)
    {
        var obs = new RecordingObserver();
        Assert.Empty(DnsmasqLeaseReader.Parse(line + "\n", "f", obs));
        Assert.Single(obs.Warnings);
        Assert.StartsWith("f:1:", obs.Warnings[0]);
    }

    [Fact]
    public void ReadsLibvirtStatusJson()
    {
        var (leases, obs) = Read("virbr0.status");
        Assert.Equal(3, leases.Count);
        var single = Assert.Single(obs.Warnings);
        Assert.Contains("virbr0.status:3:", single);
        var a = leases[0];
        Assert.Equal(("deb-02", "192.168.122.45", "52:54:00:12:34:56", "01:52:54:00:12:34:56"), (a.HostName, a.IPAddress, a.MacAddress, a.ClientId));
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1732262600), a.Expiry);
        Assert.Null(leases[1].HostName);
        Assert.Null(leases[1].Expiry);
        var v6 = leases[2];
        Assert.True(v6.IsIPv6);
        Assert.Equal("1193046", v6.Iaid);
        Assert.Equal("00:01:00:01:2c:5e:1a:2b:52:54:00:00:00:01", v6.ServerDuid);
        Assert.Equal("00:04:7e:33:25:f5:d1:43:49:52:4b:8a:70:f4:0e:0b:ad:3d", v6.Duid);
        Assert.Equal("52:54:00:12:34:56", v6.MacAddress); // libvirt knows the MAC of IPv6 clients
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("[1, {\"mac-address\": \"x\"}]")]
    public void BrokenStatusFilesWarn(string text)
    {
        var obs = new RecordingObserver();
        Assert.Empty(DnsmasqLeaseReader.Parse(text, "s.status", obs));
        Assert.NotEmpty(obs.Warnings);
        Assert.All(obs.Warnings, w => Assert.StartsWith("s.status:", w));
    }

    [Fact]
    public void DefaultLocationsFoundUnderRoot()
    {
        using var t = new TempDir();
        t.Write("var/lib/misc/dnsmasq.leases", "0 52:54:00:00:00:01 10.0.0.1 a *\n");
        t.Write("var/lib/libvirt/dnsmasq/virbr0.status", "[{\"ip-address\":\"10.0.1.1\",\"mac-address\":\"52:54:00:00:00:02\",\"hostname\":\"b\",\"expiry-time\":1}]");
        t.Write("var/lib/libvirt/dnsmasq/virbr0.conf", "not a lease file");
        var reader = new DnsmasqLeaseReader(t.Path);
        var leases = reader.ReadDefault(new RecordingObserver());
        Assert.Equal(new[] { "a", "b" }, leases.Select(l => l.HostName));
        Assert.Equal(2, reader.FindDefaultFiles().Count);
    }

    [Fact]
    public void NoDefaultFileIsNotFoundNamingThePathsTried()
    {
        using var t = new TempDir();
        var e = Assert.Throws<KvmOcException>(() => new DnsmasqLeaseReader(t.Path).ReadDefault(new RecordingObserver()));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        Assert.Equal("LeaseFileNotFound", e.ErrorId);
        Assert.Contains(Path.Combine(t.Path, "var/lib/misc/dnsmasq.leases"), e.Message);
        Assert.Contains(Path.Combine(t.Path, "var/lib/libvirt/dnsmasq/*.status"), e.Message);
    }

    [Fact]
    public void MissingExplicitFileIsNotFound()
    {
        var e = Assert.Throws<KvmOcException>(() => DnsmasqLeaseReader.ReadFile("/nonexistent/x.leases", new RecordingObserver()));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        Assert.Equal("/nonexistent/x.leases", e.Target);
    }

    [Fact]
    public void RandomLinesNeverThrowAndEveryRejectedLineIsAWarning()
    {
        var rng = new Random(20261122);
        string[] tokens = { "0", "1732262400", "-1", "99999999999999999999", "52:54:00:6b:3c:58", "20-80:00", "00-", "T12", "2818051",
            "192.168.1.1", "fd00::1", "::", "300.1.1.1", "*", "win7-01", "01:52:54", "zz", "duid", "[", "{", "\"", "\t", "ü", "" };
        for (int round = 0; round < 300; round++)
        {
            var lines = Enumerable.Range(0, rng.Next(1, 12)).Select(_ => string.Join(rng.Next(4) == 0 ? "\t" : " ",
                Enumerable.Range(0, rng.Next(0, 7)).Select(_ => tokens[rng.Next(tokens.Length)]))).ToList();
            var text = string.Join(rng.Next(3) == 0 ? "\r\n" : "\n", lines);
            var obs = new RecordingObserver();
            var leases = DnsmasqLeaseReader.Parse(text, "fuzz", obs);
            if (text.TrimStart().StartsWith('[')) continue; // read as a libvirt status file
            int nonBlank = lines.Count(l => l.Trim().Length > 0);
            int duidLines = lines.Count(l => l.Trim().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries) is { Length: 2 } f && f[0] == "duid" && f[1] != "*" && System.Text.RegularExpressions.Regex.IsMatch(f[1], "^[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2})*$"));
            // Every rejected line is a warning, up to MaxLineWarnings; the rest are counted in one last warning.
            int rejected = nonBlank - leases.Count - duidLines;
            int expected = rejected <= DnsmasqLeaseReader.MaxLineWarnings ? rejected : DnsmasqLeaseReader.MaxLineWarnings + 1;
            Assert.Equal(expected, obs.Warnings.Count);
            if (rejected > DnsmasqLeaseReader.MaxLineWarnings) Assert.Contains($"skipped {rejected - DnsmasqLeaseReader.MaxLineWarnings} more", obs.Warnings[^1]);
        }
    }

    [Theory]
    [InlineData("52:54:00:AB:CD:EF", "52:54:00:ab:cd:ef")]
    [InlineData("52-54-00-ab-cd-ef", "52:54:00:ab:cd:ef")]
    [InlineData("525400abcdef", "52:54:00:ab:cd:ef")]
    [InlineData("5254.00ab.cdef", "52:54:00:ab:cd:ef")]
    [InlineData("2:54:0:ab:cd:ef", "02:54:00:ab:cd:ef")]
    [InlineData("52:54-00:ab:cd:ef", null)]
    [InlineData("hello", null)]
    [InlineData("", null)]
    public void NormalisesMacAddresses(string input, string? expected) => Assert.Equal(expected, DnsmasqLeaseReader.NormalizeMacAddress(input));
}
