using System.Diagnostics;
using System.Text.Json;
using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Fleet;

/// <summary>
/// The inventories we write, read back by Debian's real ansible-inventory (--list). INI goes through Ansible's ini
/// plugin; the JSON goes through the script plugin (an executable that cats the JSON, as a dynamic-inventory script
/// answers --list), so what is checked is exactly what a dynamic inventory script would hand to Ansible.
/// </summary>
public class AnsibleInventoryCheckTests
{
    // What the fixture's good leases must become with -GroupBy '^(?<group>[a-z0-9]+)-' -User admin.
    static readonly Dictionary<string, string> ExpectedHosts = new()
    {
        ["win7-01"] = "192.168.122.10",
        ["win7-02"] = "192.168.122.11",
        ["win7-10"] = "192.168.122.12",
        ["192.168.122.2"] = "192.168.122.2",
        ["ib-node"] = "10.0.0.5",
        ["deb-01"] = "fd00:122::10",
        ["fd00:122::11"] = "fd00:122::11",
    };

    static readonly Dictionary<string, string[]> ExpectedGroups = new()
    {
        ["win7"] = new[] { "win7-01", "win7-02", "win7-10" },
        ["deb"] = new[] { "deb-01" },
        ["ib"] = new[] { "ib-node" },
        ["ungrouped"] = new[] { "192.168.122.2", "fd00:122::11" },
    };

    static string Inventory(InventoryFormat format)
    {
        var leases = DnsmasqLeaseReader.ReadFile(Fixture.PathOf("fleet/dnsmasq.leases"), new RecordingObserver());
        return AnsibleInventoryWriter.Write(leases.Select(InventoryEntry.FromLease),
            new InventoryOptions { Format = format, GroupBy = "^(?<group>[a-z0-9]+)-", User = "admin" }, new RecordingObserver());
    }

    [SkippableFact]
    public void IniInventoryReadsBackInAnsible()
    {
        var tool = Prereq.RequireTool("ansible-inventory");
        using var t = new TempDir("kvmoc-ansible");
        var file = t.Write("inventory.ini", Inventory(InventoryFormat.Ini));
        AssertAnsibleSees(RunAnsibleInventory(tool, t, file, "ini"));
    }

    [SkippableFact]
    public void JsonInventoryReadsBackInAnsibleAsDynamicInventoryScript()
    {
        var tool = Prereq.RequireTool("ansible-inventory");
        using var t = new TempDir("kvmoc-ansible");
        var json = t.Write("inventory.json", Inventory(InventoryFormat.Json));
        var script = t.Write("inventory.sh", $"#!/bin/sh\n# a dynamic inventory: --list prints everything (with _meta, so --host is never asked)\ncat '{json}'\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        AssertAnsibleSees(RunAnsibleInventory(tool, t, script, "script"));
    }

    static void AssertAnsibleSees(JsonElement list)
    {
        var hostvars = list.GetProperty("_meta").GetProperty("hostvars");
        Assert.Equal(ExpectedHosts.Keys.OrderBy(k => k), hostvars.EnumerateObject().Select(p => p.Name).OrderBy(k => k));
        foreach (var (host, address) in ExpectedHosts)
        {
            var v = hostvars.GetProperty(host);
            Assert.Equal(address, v.GetProperty("ansible_host").GetString());
            Assert.Equal("admin", v.GetProperty("ansible_user").GetString());
        }
        Assert.Equal("52:54:00:6b:3c:58", hostvars.GetProperty("win7-01").GetProperty("mac_address").GetString());
        Assert.False(hostvars.GetProperty("deb-01").TryGetProperty("mac_address", out _));

        var children = list.GetProperty("all").GetProperty("children").EnumerateArray().Select(c => c.GetString()!).OrderBy(c => c);
        Assert.Equal(ExpectedGroups.Keys.OrderBy(k => k), children);
        foreach (var (group, members) in ExpectedGroups)
            Assert.Equal(members.OrderBy(m => m), list.GetProperty(group).GetProperty("hosts").EnumerateArray().Select(h => h.GetString()!).OrderBy(m => m));
    }

    static JsonElement RunAnsibleInventory(string tool, TempDir t, string inventory, string plugin)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-i", inventory, "--list" }) psi.ArgumentList.Add(a);
        psi.Environment["ANSIBLE_INVENTORY_ENABLED"] = plugin;
        psi.Environment["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "true"; // a file Ansible cannot parse fails, not "empty inventory"
        psi.Environment["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] = "true";
        psi.Environment["ANSIBLE_LOCAL_TEMP"] = t.File("tmp");
        psi.Environment["ANSIBLE_HOME"] = t.File("home");
        psi.Environment["ANSIBLE_NOCOLOR"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("ansible-inventory did not finish in 120 s");
        }
        Assert.True(p.ExitCode == 0, $"ansible-inventory exited {p.ExitCode}: {stderr.Result}");
        Assert.DoesNotContain("WARNING", stderr.Result);
        return JsonDocument.Parse(stdout.Result).RootElement.Clone();
    }
}
