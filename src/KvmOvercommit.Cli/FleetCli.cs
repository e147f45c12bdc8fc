using System.CommandLine;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Fleet;

namespace KvmOvercommit.Cli;

/// <summary>`kvmoc leases` (Get-DnsmasqLease) and `kvmoc inventory` (Get-DnsmasqLease | ConvertTo-AnsibleInventory).</summary>
public sealed class FleetCli : ICliCommandProvider
{
    public IEnumerable<Command> Commands(CliContext ctx)
    {
        yield return Leases(ctx);
        yield return Inventory(ctx);
    }

    static Command Leases(CliContext ctx)
    {
        var path = new Option<string[]>("--path") { Description = "Lease files to read (dnsmasq lease files or libvirt *.status files); repeatable. Default: the usual locations.", AllowMultipleArgumentsPerToken = true };
        var cmd = new Command("leases", "List the DHCP leases of dnsmasq / libvirt (Get-DnsmasqLease).");
        cmd.Options.Add(path);
        ctx.SetAction(cmd, (parse, run, ct) =>
        {
            var leases = Read(parse.GetValue(path), run);
            run.WriteResults(leases, "HostName", "IPAddress", "MacAddress", "Expiry", "ClientId");
            return Task.CompletedTask;
        });
        return cmd;
    }

    static Command Inventory(CliContext ctx)
    {
        var leaseFile = new Option<string[]>("--lease-file") { Description = "Lease files to read; repeatable. Default: the usual locations.", AllowMultipleArgumentsPerToken = true };
        var format = new Option<InventoryFormat>("--format") { Description = "ini (inventory file) or json (dynamic-inventory --list output).", DefaultValueFactory = _ => InventoryFormat.Ini };
        var groupBy = new Option<string?>("--group-by") { Description = "Regular expression on the host name; its capture group ('group', else the first) names the group, e.g. '^(\\w+)-\\d+$'." };
        var groupMap = new Option<string[]>("--group-map") { Description = "WILDCARD=GROUP (repeatable): hosts whose name matches the wildcard join the group, e.g. 'win7-*=windows'." };
        var user = new Option<string?>("--user") { Description = "ansible_user for every host." };
        var cmd = new Command("inventory", "Write an Ansible inventory from the dnsmasq leases (Get-DnsmasqLease | ConvertTo-AnsibleInventory). Prints the inventory itself, also with --json.");
        foreach (var o in new Option[] { leaseFile, format, groupBy, groupMap, user }) cmd.Options.Add(o);
        ctx.SetAction(cmd, (parse, run, ct) =>
        {
            var map = new List<KeyValuePair<string, string>>();
            foreach (var m in parse.GetValue(groupMap) ?? Array.Empty<string>())
            {
                int eq = m.LastIndexOf('=');
                if (eq <= 0 || eq == m.Length - 1)
                    throw new KvmOcException(ErrorKind.InvalidArgument, "InvalidGroupMap", $"--group-map '{m}' is not WILDCARD=GROUP.", m, "Write it like 'win7-*=windows'.");
                map.Add(KeyValuePair.Create(m[..eq], m[(eq + 1)..]));
            }
            var leases = Read(parse.GetValue(leaseFile), run);
            var text = AnsibleInventoryWriter.Write(leases.Select(InventoryEntry.FromLease), new InventoryOptions
            {
                Format = parse.GetValue(format),
                GroupBy = parse.GetValue(groupBy),
                GroupMap = map,
                User = parse.GetValue(user),
            }, run);
            run.Out.Write(text);
            return Task.CompletedTask;
        });
        return cmd;
    }

    static List<DnsmasqLease> Read(string[]? paths, CliRun run)
    {
        if (paths is null || paths.Length == 0) return new DnsmasqLeaseReader().ReadDefault(run).ToList();
        var all = new List<DnsmasqLease>();
        foreach (var p in paths)
        {
            try { all.AddRange(DnsmasqLeaseReader.ReadFile(p, run)); }
            catch (KvmOcException e) { run.Error(e); }
        }
        return all;
    }
}
