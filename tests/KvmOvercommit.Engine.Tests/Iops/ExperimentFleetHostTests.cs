using System.Diagnostics;
using System.Text.Json;
using System.Xml.Linq;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Iops;

/// <summary>
/// The whole experiment engine as kvmoc experiment runs it, on real parts: 4 fleet tiny guests (TCG, 128 MiB) on the
/// isolated network, -StaggerSeconds Auto with the device's capacity measured by fio, a write load through Ansible on
/// half of them, one short KSM profile and the report; then nothing of it is left on the host.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class ExperimentFleetHostTests
{
    [SkippableFact]
    public async Task TheIsolatedFleetExperimentReportsReachLoadBootStormAndLeavesNothing()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        foreach (var tool in new[] { "dnsmasq", "ip", "ansible", "ansible-inventory", "ssh", "ssh-keygen", "fio" }) Prereq.RequireTool(tool);
        using var fixture = await GuestFixture.CreateAsync();
        using var guard = new KsmSettingsGuard();
        var ksmBefore = KsmTuning.FromStat(KsmStatReader.Read());
        var prefix = "kvmoc-f" + Guid.NewGuid().ToString("N")[..4];
        var report = fixture.Dir.File("report");
        var options = new ExperimentOptions
        {
            GuestCount = 4,
            MemoryMB = 128,
            Profiles = new[] { ExperimentProfile.Default },
            Duration = TimeSpan.FromSeconds(6),
            Interval = TimeSpan.FromSeconds(2),
            Accelerator = GuestAccelerator.Tcg,
            WorkDirectory = fixture.Dir.File("work"),
            RunDirectory = fixture.RunRoot,
            NamePrefix = prefix,
            ReportPath = report,
            Network = ExperimentNetworkMode.Isolated,
            IoLoadPercent = 50,
            IoLoad = ExperimentIoLoad.Write,
            IoLoadSeconds = 5,
            StaggerSeconds = Validation.AutoStagger, // the device's capacity is measured with fio
            ReadyTimeout = TimeSpan.FromSeconds(240),
        };
        List<KvmGuest> Mine() => new QemuProcessScanner().Scan().Where(g => g.Name.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        var sw = Stopwatch.StartNew();
        ExperimentResult result;
        try
        {
            var plan = OvercommitExperiment.Plan(options, NullObserver.Instance);
            result = await OvercommitExperiment.RunAsync(plan, NullObserver.Instance, default);
        }
        finally
        {
            foreach (var g in Mine()) GuestLauncher.kill(g.Id, 9); // a safety net only: the experiment stops its guests itself
        }
        sw.Stop();
        Console.WriteLine($"isolated fleet experiment: {sw.Elapsed.TotalSeconds:0.0} s");

        // Every guest leased and reached by Ansible, with its time to reachable.
        var fleet = result.Fleet!;
        Assert.Equal(4, fleet.Leased);
        Assert.True(fleet.Reached == 4, string.Join("; ", fleet.Guests.Select(g => $"{g.Name}: {g.AnsibleOutput}")));
        Assert.All(fleet.Guests, g => Assert.True(g.AnsibleReachable && g.SecondsToReachable > 0, $"{g.Name}: reachable {g.AnsibleReachable} after {g.SecondsToReachable} s"));

        // The load on half of the fleet: the loaded guests at least 20× their idle, their QEMUs busier, the device above idle.
        var load = result.IoLoad!;
        var what = string.Join("; ", load.Guests.Select(g => $"{g.Name} {g.IopsIdle} → {g.IopsLoaded} (QEMU {g.ProcessIopsIdle} → {g.ProcessIopsLoaded})")) + $"; device {load.DeviceIopsIdle} → {load.DeviceIopsLoaded}";
        var loaded = load.Guests.Where(g => g.IoLoaded).ToList();
        Assert.True(loaded.Count == 2, what);
        Assert.All(loaded, g => Assert.True(g.IopsLoaded >= 20 * Math.Max(g.IopsIdle, 1), what));
        Assert.All(load.Guests.Where(g => !g.IoLoaded), g => Assert.True(g.IopsLoaded < 20, what));
        Assert.All(loaded, g => Assert.True(g.ProcessIopsLoaded > g.ProcessIopsIdle && g.ProcessBytesPerSecLoaded > 0, what));
        Assert.True(load.DeviceIopsLoaded > load.DeviceIopsIdle, what);
        Assert.False(string.IsNullOrEmpty(load.ProcessIopsSource));
        Assert.Equal(5, load.Samples.Length);
        Assert.All(load.Samples, s => Assert.True(s.DeviceIops is not null && s.GuestIops is not null && s.ProcessIops is not null, "a load sample lacks a figure"));
        // The load was stopped through Ansible: the profile after it sees the guests idle again (its loop would run 10 s longer).
        var after = result.Profiles[0].Samples.Skip(1).ToList();
        Assert.NotEmpty(after);
        Assert.All(after, s => Assert.True(s.GuestIops is not null && s.DeviceIops is not null && s.GuestIops < 50, $"guests at {s.GuestIops} IOPS {s.ElapsedSeconds} s into the profile, after the load was stopped"));

        // The boot storm: every guest from launch to its ready line; the capacity measured; the arithmetic holds.
        var boot = result.BootStorm!;
        Assert.Equal(4, boot.Guests.Length);
        Assert.All(boot.Guests, g => Assert.True(g.Ready && g.ReadyBy == "ready line" && g.BootSeconds > 0 && g.BootSeconds < 240 && g.SampledSeconds <= g.BootSeconds && g.Iops >= 0,
            $"{g.Name}: {g.ReadyBy} after {g.BootSeconds} s, {g.Operations} ops, {g.Iops} IOPS"));
        Assert.Equal(Math.Round(boot.Guests.Average(g => g.Iops), 2), boot.BootIopsPerGuest);
        Assert.Equal(Math.Round(boot.Guests.Average(g => g.BootSeconds), 2), boot.BootSeconds);
        Assert.True(boot.DeviceIopsCapacity > 0, boot.Explanation);
        Assert.Contains("fio", boot.CapacitySource);
        Assert.True(boot.StaggerAuto);
        Assert.NotNull(boot.RecommendedStaggerSeconds);
        Assert.InRange(boot.RecommendedStaggerSeconds!.Value, 0, boot.BootSeconds);
        var (m, s, _) = BootStorm.Recommend(boot.BootIopsPerGuest, boot.BootSeconds, boot.DeviceIopsCapacity, 4);
        Assert.Equal(m, boot.MaxOverlappingBoots);
        Assert.Equal(s, boot.RecommendedStaggerSeconds);
        if (boot.BootIopsPerGuest > 0) Assert.Equal((long)Math.Floor(boot.DeviceIopsCapacity!.Value / boot.BootIopsPerGuest), boot.MaxOverlappingBoots);
        Assert.StartsWith("-StaggerSeconds Auto, from the boot of the first guest alone: BootIopsPerGuest", boot.Explanation);
        Console.WriteLine("boot storm: " + boot.Explanation);

        // The report: inventory.ini (ansible-inventory accepts it), samples.csv with the IOPS columns, the SVG's IOPS chart.
        var inventory = Path.Combine(report, ExperimentReportWriter.InventoryFile);
        Assert.Contains(inventory, result.ReportFiles);
        var (rc, json, err) = await RunAsync("ansible-inventory", "-i", inventory, "--list");
        Assert.True(rc == 0, err);
        var hosts = JsonDocument.Parse(json).RootElement.GetProperty("_meta").GetProperty("hostvars").EnumerateObject().Select(p => p.Name).OrderBy(n => n, StringComparer.Ordinal);
        Assert.Equal(result.Guests.OrderBy(n => n, StringComparer.Ordinal), hosts);
        var csv = File.ReadAllLines(Path.Combine(report, ExperimentReportWriter.CsvFile));
        var header = csv[0].Split(',');
        int device = Array.IndexOf(header, "DeviceIops"), guests = Array.IndexOf(header, "GuestIops");
        Assert.True(device >= 0 && guests >= 0, csv[0]);
        Assert.Contains(csv.Skip(1), l => l.Split(',')[device].Length > 0 && l.Split(',')[guests].Length > 0);
        XNamespace ns = "http://www.w3.org/2000/svg";
        var chart = XDocument.Load(Path.Combine(report, ExperimentReportWriter.SvgFile)).Descendants(ns + "g").Single(g => (string?)g.Attribute("id") == "iops-chart");
        Assert.True(chart.Descendants(ns + "polyline").Count() >= 3); // the disk, the guests, the QEMUs during the load

        // Nothing is left: namespace (with its bridge and taps), dnsmasq, QEMU (a zombie counts as gone), overlays, KSM as found.
        Assert.Empty(result.CleanupProblems);
        Assert.True(result.KsmRestored);
        Assert.Empty(KsmTuning.FromStat(KsmStatReader.Read()).Differences(ksmBefore));
        Assert.False(IsolatedNetwork.NamespaceExists(fleet.Namespace));
        Assert.Empty(LiveProcesses("dnsmasq").Where(p => p.CommandLine.Contains(Path.GetDirectoryName(fleet.LeaseFile)!, StringComparison.Ordinal)));
        Assert.Empty(Directory.EnumerateFileSystemEntries("/sys/class/net").Select(Path.GetFileName).Where(n => n!.StartsWith("kvt", StringComparison.Ordinal))); // QEMU's taps lived in the namespace, gone with it
        Assert.Empty(Mine());
        Assert.Empty(LiveProcesses("qemu-system-x86").Where(p => p.CommandLine.Contains(prefix, StringComparison.Ordinal)));
        Assert.All(result.Overlays, o => Assert.False(File.Exists(o), $"{o} was not deleted"));
        Assert.False(Directory.Exists(result.WorkDirectory));
        Assert.False(Directory.Exists(Path.GetDirectoryName(fleet.LeaseFile)), "the network's folder is still there");
    }

    /// <summary>Processes whose comm starts with <paramref name="comm"/> and that are not zombies.</summary>
    static List<(int Pid, string CommandLine)> LiveProcesses(string comm)
    {
        var list = new List<(int, string)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                if (!File.ReadAllText(Path.Combine(dir, "comm")).Trim().StartsWith(comm, StringComparison.Ordinal)) continue;
                if (File.ReadAllText(Path.Combine(dir, "status")).Contains("State:\tZ", StringComparison.Ordinal)) continue;
                list.Add((pid, File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ')));
            }
            catch (IOException) { }
        }
        return list;
    }

    static async Task<(int Rc, string Out, string Err)> RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["ANSIBLE_NOCOLOR"] = "1";
        using var p = Process.Start(psi)!;
        p.StandardInput.Close(); // Ansible refuses a non-blocking stdin
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await o, await e);
    }
}
