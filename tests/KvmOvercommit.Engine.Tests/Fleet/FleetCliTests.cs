using System.Text.Json;
using KvmOvercommit.Cli;
using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Fleet;

public class FleetCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static string Leases => Fixture.PathOf("fleet/dnsmasq.leases");
    static string Status => Fixture.PathOf("fleet/virbr0.status");

    [Fact]
    public void LeasesJsonHasThePowerShellPropertyNamesAndDeserializes()
    {
        var (code, stdout, stderr) = Run("leases", "--path", Leases, "--path", Status, "--json");
        Assert.Equal(0, code);
        var leases = JsonSerializer.Deserialize<List<DnsmasqLease>>(stdout, CliOutput.JsonOptions)!;
        Assert.Equal(10, leases.Count);
        Assert.Contains(leases, l => l.HostName == "win7-01" && l.IPAddress == "192.168.122.10" && l.MacAddress == "52:54:00:6b:3c:58");
        Assert.Contains("\"HostName\": null", stdout);
        Assert.Contains("dnsmasq.leases:5:", stderr); // corrupt lines are warnings, not failures
    }

    [Fact]
    public void LeasesTableShowsTheColumns()
    {
        var (code, stdout, _) = Run("leases", "--path", Leases);
        Assert.Equal(0, code);
        Assert.StartsWith("HostName", stdout);
        Assert.Contains("win7-10", stdout);
    }

    [Fact]
    public void InventoryPrintsIniAndJson()
    {
        var (code, ini, _) = Run("inventory", "--lease-file", Leases, "--format", "ini", "--group-by", @"^(\w+)-\d+$", "--user", "admin");
        Assert.Equal(0, code);
        Assert.Contains("[win7]\nwin7-01 ansible_host=192.168.122.10 ansible_user=admin mac_address=52:54:00:6b:3c:58\n", ini);
        (code, var json, _) = Run("inventory", "--lease-file", Leases, "--format", "json", "--group-map", "win7-*=windows", "--group-map", "deb-*=linux");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(3, doc.RootElement.GetProperty("windows").GetProperty("hosts").GetArrayLength());
        Assert.Equal("deb-01", doc.RootElement.GetProperty("linux").GetProperty("hosts")[0].GetString());
    }

    [Fact]
    public void BadArgumentsAndMissingFilesHaveExitCodes()
    {
        var (code, _, err) = Run("inventory", "--lease-file", Leases, "--group-map", "nogroup");
        Assert.Equal(2, code);
        Assert.StartsWith("InvalidGroupMap:", err);
        (code, _, err) = Run("inventory", "--lease-file", Leases, "--group-by", "(");
        Assert.Equal(2, code);
        Assert.Contains("\nInvalidGroupPattern:", "\n" + err);
        (code, _, err) = Run("leases", "--path", "/nonexistent/none.leases");
        Assert.Equal(3, code);
        Assert.StartsWith("LeaseFileNotFound:", err);
    }
}
