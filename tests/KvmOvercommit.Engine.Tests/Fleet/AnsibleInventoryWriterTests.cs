using System.Text.Json;
using KvmOvercommit.Engine.Fleet;

namespace KvmOvercommit.Engine.Tests.Fleet;

public class AnsibleInventoryWriterTests
{
    static InventoryEntry E(string? name, string ip, long? expiry = 1000, string? mac = null) => new()
    {
        HostName = name,
        IPAddress = new[] { ip },
        MacAddress = mac,
        Expiry = expiry is null ? null : DateTimeOffset.FromUnixTimeSeconds(expiry.Value),
    };

    static IReadOnlyList<AnsibleInventoryWriter.Host> Build(InventoryOptions o, params InventoryEntry[] entries) => AnsibleInventoryWriter.BuildHosts(entries, o, new RecordingObserver());

    [Fact]
    public void RegexCaptureGroupNamesTheGroup()
    {
        var hosts = Build(new InventoryOptions { GroupBy = @"^(\w+)-\d+$" }, E("win7-12", "10.0.0.12"), E("deb-1", "10.0.0.1"), E("router", "10.0.0.254"));
        Assert.Equal(new[] { "win7" }, hosts.Single(h => h.Name == "win7-12").Groups);
        Assert.Equal(new[] { "deb" }, hosts.Single(h => h.Name == "deb-1").Groups);
        Assert.Empty(hosts.Single(h => h.Name == "router").Groups);
    }

    [Fact]
    public void NamedGroupWinsOverFirstCaptureAndWholeMatchIsTheFallback()
    {
        Assert.Equal(new[] { "x" }, Build(new InventoryOptions { GroupBy = @"^(a)-(?<group>x)" }, E("a-x-1", "10.0.0.1"))[0].Groups);
        Assert.Equal(new[] { "web" }, Build(new InventoryOptions { GroupBy = @"^web" }, E("web-1", "10.0.0.1"))[0].Groups);
        Assert.Equal(new[] { "WIN7" }, Build(new InventoryOptions { GroupBy = @"^(?<group>[a-z0-9]+)-" }, E("WIN7-1", "10.0.0.1"))[0].Groups); // case-insensitive match
    }

    [Fact]
    public void WildcardMapPutsHostsIntoEveryMatchingGroup()
    {
        var map = new[] { KeyValuePair.Create("win7-*", "windows"), KeyValuePair.Create("*-1?", "teens"), KeyValuePair.Create("deb*", "linux") };
        var hosts = Build(new InventoryOptions { GroupMap = map }, E("win7-12", "10.0.0.12"), E("deb-1", "10.0.0.1"));
        Assert.Equal(new[] { "teens", "windows" }, hosts.Single(h => h.Name == "win7-12").Groups);
        Assert.Equal(new[] { "linux" }, hosts.Single(h => h.Name == "deb-1").Groups);
    }

    [Theory]
    [InlineData("win7.x", "win7_x")]
    [InlineData("7zip", "_7zip")]
    [InlineData("all", "all_")]
    [InlineData("ungrouped", "ungrouped_")]
    [InlineData("ok_name", "ok_name")]
    public void GroupNamesAreMadeValidForAnsible(string input, string expected) => Assert.Equal(expected, AnsibleInventoryWriter.SafeGroupName(input, new RecordingObserver()));

    [Fact]
    public void HostsWithoutNameAreNamedByAddressAndUnsafeNamesAreFixed()
    {
        var hosts = Build(new InventoryOptions(), E(null, "10.0.0.9"), E("  ", "10.0.0.8"), E("my guest[1]", "10.0.0.7"));
        Assert.Equal(new[] { "10.0.0.8", "10.0.0.9", "my_guest_1_" }, hosts.Select(h => h.Name));
    }

    [Fact]
    public void DuplicateNamesLatestLeaseWinsAndVerboseSaysSo()
    {
        var obs = new RecordingObserver();
        var hosts = AnsibleInventoryWriter.BuildHosts(new[] { E("a", "10.0.0.1", 3000), E("A", "10.0.0.2", 2000), E("b", "10.0.0.3", 1000), E("b", "10.0.0.4", null), E("c", "10.0.0.5", 5), E("c", "10.0.0.6", 5) }, new InventoryOptions(), obs);
        Assert.Equal("10.0.0.1", hosts.Single(h => h.Name == "a").Address);
        Assert.Equal("10.0.0.4", hosts.Single(h => h.Name == "b").Address); // infinite lease is the latest
        Assert.Equal("10.0.0.6", hosts.Single(h => h.Name == "c").Address); // tie: the later entry
        Assert.Equal(3, hosts.Count);
        Assert.Contains(obs.Verbose, v => v.Contains("'a'") && v.Contains("latest wins: 10.0.0.1") && v.Contains("10.0.0.2"));
    }

    [Fact]
    public void PrefersIPv4AndSkipsHostsWithoutAddress()
    {
        var obs = new RecordingObserver();
        var hosts = AnsibleInventoryWriter.BuildHosts(new[]
        {
            new InventoryEntry { HostName = "g1", IPAddress = new[] { "fe80::1", "fd00::5", "10.0.0.5" } },
            new InventoryEntry { HostName = "g2", IPAddress = new[] { "fe80::1", "fd00::6" } },
            new InventoryEntry { HostName = "g3", IPAddress = Array.Empty<string>() },
            new InventoryEntry { HostName = "g4" },
        }, new InventoryOptions(), obs);
        Assert.Equal(new[] { ("g1", "10.0.0.5"), ("g2", "fd00::6") }, hosts.Select(h => (h.Name, h.Address)));
        Assert.Equal(2, obs.Warnings.Count);
        Assert.Contains(obs.Warnings, w => w.Contains("'g3'"));
    }

    [Fact]
    public void HostsSortNaturally()
    {
        var hosts = Build(new InventoryOptions(), E("win7-10", "10.0.0.10"), E("win7-2", "10.0.0.2"), E("win7-1", "10.0.0.1"));
        Assert.Equal(new[] { "win7-1", "win7-2", "win7-10" }, hosts.Select(h => h.Name));
    }

    [Fact]
    public void BadRegexAndBadUserAreInvalidArgument()
    {
        var e = Assert.Throws<KvmOcException>(() => Build(new InventoryOptions { GroupBy = "(" }, E("a", "10.0.0.1")));
        Assert.Equal((ErrorKind.InvalidArgument, "InvalidGroupPattern"), (e.Kind, e.ErrorId));
        e = Assert.Throws<KvmOcException>(() => Build(new InventoryOptions { User = "a b" }, E("a", "10.0.0.1")));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
    }

    [Fact]
    public void IniTextHasGroupsAndHostVars()
    {
        var text = AnsibleInventoryWriter.Write(new[] { E("win7-1", "10.0.0.1", mac: "52:54:00:AA:00:01"), E(null, "10.0.0.9") },
            new InventoryOptions { GroupBy = @"^(\w+)-\d+$", User = "admin" }, new RecordingObserver());
        var lines = text.Split('\n');
        Assert.Contains("10.0.0.9 ansible_host=10.0.0.9 ansible_user=admin", lines);
        Assert.Contains("[win7]", lines);
        Assert.Contains("win7-1 ansible_host=10.0.0.1 ansible_user=admin mac_address=52:54:00:aa:00:01", lines);
        Assert.True(Array.IndexOf(lines, "10.0.0.9 ansible_host=10.0.0.9 ansible_user=admin") < Array.IndexOf(lines, "[win7]"), "ungrouped hosts come before the first section");
    }

    [Fact]
    public void JsonTextIsTheDynamicInventoryShape()
    {
        var text = AnsibleInventoryWriter.Write(new[] { E("win7-1", "10.0.0.1", mac: "52:54:00:aa:00:01"), E(null, "10.0.0.9") },
            new InventoryOptions { Format = InventoryFormat.Json, GroupBy = @"^(\w+)-\d+$", User = "admin" }, new RecordingObserver());
        using var doc = JsonDocument.Parse(text);
        var root = doc.RootElement;
        Assert.Equal(new[] { "ungrouped", "win7" }, root.GetProperty("all").GetProperty("children").EnumerateArray().Select(x => x.GetString()));
        Assert.Equal("10.0.0.9", root.GetProperty("ungrouped").GetProperty("hosts")[0].GetString());
        Assert.Equal("win7-1", root.GetProperty("win7").GetProperty("hosts")[0].GetString());
        var hv = root.GetProperty("_meta").GetProperty("hostvars").GetProperty("win7-1");
        Assert.Equal("10.0.0.1", hv.GetProperty("ansible_host").GetString());
        Assert.Equal("admin", hv.GetProperty("ansible_user").GetString());
        Assert.Equal("52:54:00:aa:00:01", hv.GetProperty("mac_address").GetString());
        Assert.False(root.GetProperty("_meta").GetProperty("hostvars").GetProperty("10.0.0.9").TryGetProperty("mac_address", out _));
    }
}
