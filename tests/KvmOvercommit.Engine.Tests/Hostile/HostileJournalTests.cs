using System.Diagnostics;
using System.Text.Json;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Hostile;

/// <summary>
/// Fault tests on real QEMU and KSM (issue 12, findings 4 and 5): kill -9 of a running `kvmoc experiment` (two tiny
/// guests) and of `kvmoc ksm autotune`, then --recover: KSM back exactly, guests and files gone, journal gone; a dead
/// run's journal refuses the next start. And a bad -ReportPath fails before anything starts.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class HostileJournalTests
{
    static Process StartKvmoc(params string[] args)
    {
        Prereq.Require(File.Exists(KsmWorkloads.KvmocDll), "kvmoc.dll next to the tests");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(KsmWorkloads.KvmocDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    static HostJournal? JournalOf(int pid) => HostJournal.ReadAll().FirstOrDefault(j => j.Pid == pid);

    static async Task<HostJournal> WaitForJournalAsync(Process p, Func<HostJournal, bool> ready, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            if (p.HasExited) throw new Xunit.Sdk.XunitException($"kvmoc exited ({p.ExitCode}) before {what}");
            if (JournalOf(p.Id) is { } j && ready(j)) return j;
            await Task.Delay(200);
        }
        throw new Xunit.Sdk.XunitException($"no journal with {what} within {timeout.TotalSeconds:0} s");
    }

    static void AssertNoDeadJournal()
    {
        var dead = HostJournal.FindDead();
        Assert.True(dead.Count == 0, "a dead run's journal is already there: " + string.Join(", ", dead.Select(j => j.JournalPath)));
    }

    [SkippableFact]
    public async Task KillNineOfAnExperimentIsRecoveredExactly()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        using var f = await GuestFixture.CreateAsync(); // the tiny guest is built and cached; kills any guest it named
        AssertNoDeadJournal();
        var ksmBefore = KsmSettingsSnapshot.Capture();
        var work = f.Dir.File("work");
        using var p = StartKvmoc("experiment", "--guest-count", "2", "--ksm-profile", "Aggressive", "--duration", "120", "--interval-seconds", "1",
            "--work-directory", work, "--run-directory", f.RunRoot, "--accelerator", "Tcg", "--fill-mib", "16");
        HostJournal j;
        try
        {
            // Mid-run: both guests started (pids recorded) and KSM changed by the Aggressive profile.
            j = await WaitForJournalAsync(p, x => x.Guests.Count == 2 && x.Guests.All(g => g.Id > 0), TimeSpan.FromSeconds(120), "two running guests");
            var sw = Stopwatch.StartNew();
            while (KsmStatReader.Read().PagesToScan != 20000 && sw.Elapsed < TimeSpan.FromSeconds(90)) await Task.Delay(200);
            Assert.Equal(20000, KsmStatReader.Read().PagesToScan);
        }
        finally
        {
            p.Kill(); // SIGKILL: no finally, no cleanup
            p.WaitForExit();
        }
        j = HostJournal.ReadAll().Single(x => x.Pid == p.Id);
        Assert.Equal(HostJournal.ExperimentKind, j.Kind);
        Assert.Equal(ksmBefore.Settings.PagesToScan, j.KsmSettings!.PagesToScan);
        Assert.Contains(work, j.Folders);
        Assert.Equal(3, j.Files.Count); // base image and two overlays
        var guests = j.Guests.Select(g => g.Id).ToArray();
        Assert.All(guests, id => Assert.True(ProcessLiveness.IsAlive(HostRoots.Default, id, null), $"guest {id} is not running after the kill"));
        Assert.All(j.Files, file => Assert.True(File.Exists(file), file));

        // The next experiment (even -WhatIf) refuses instead of adopting the leftovers as the original state.
        var (code, _, err) = Kvmoc.Run("experiment", "--what-if", "--guest-count", "1");
        Assert.Equal(11, code);
        Assert.Contains("ExperimentJournalFound", err);
        Assert.Contains("--recover", err);

        var (rc, outText, rerr) = Kvmoc.Run("experiment", "--recover", "--json");
        Assert.True(rc == 0, rerr);
        var recovered = outText.TrimStart().StartsWith('[')
            ? JsonSerializer.Deserialize(outText, OutputJson.Default.ListHostJournal)!
            : new List<HostJournal> { JsonSerializer.Deserialize(outText, OutputJson.Default.HostJournal)! };
        Assert.True(Assert.Single(recovered).Recovered, rerr);
        Assert.Empty(ksmBefore.Compare()); // every KSM setting exactly as found
        var wait = Stopwatch.StartNew();
        while (guests.Any(id => ProcessLiveness.IsAlive(HostRoots.Default, id, null)) && wait.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(100);
        Assert.All(guests, id => Assert.False(ProcessLiveness.IsAlive(HostRoots.Default, id, null), $"guest {id} still runs"));
        Assert.All(j.Files, file => Assert.False(File.Exists(file), file));
        Assert.False(Directory.Exists(work));
        Assert.All(j.Guests, g => Assert.False(Directory.Exists(g.RunDirectory), g.RunDirectory));
        Assert.False(File.Exists(j.JournalPath));
        Assert.Equal(0, Kvmoc.Run("experiment", "--recover").Code); // nothing left: a no-op
    }

    [SkippableFact]
    public async Task KillNineOfAnExperimentOnTheIsolatedNetworkRecoversTheNamespaceToo()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        Prereq.RequireTool("dnsmasq");
        Prereq.RequireTool("ansible");
        using var f = await GuestFixture.CreateAsync();
        AssertNoDeadJournal();
        var ksmBefore = KsmSettingsSnapshot.Capture();
        var work = f.Dir.File("work");
        using var p = StartKvmoc("experiment", "--network", "isolated", "--guest-count", "1", "--ksm-profile", "Aggressive", "--duration", "120",
            "--work-directory", work, "--run-directory", f.RunRoot, "--accelerator", "Tcg");
        HostJournal j;
        try
        {
            j = await WaitForJournalAsync(p, x => x.Networks.Count == 1 && x.Guests.Count == 1 && x.Guests[0].Id > 0, TimeSpan.FromSeconds(120), "a network and a running guest");
        }
        finally
        {
            p.Kill();
            p.WaitForExit();
        }
        var net = Assert.Single(j.Networks);
        Assert.StartsWith("kvmoc-net-", net.Namespace, StringComparison.Ordinal);
        Assert.True(File.Exists("/run/netns/" + net.Namespace), "the namespace should outlive kill -9");
        var pids = await ToolRunner.RunAsync(ToolRunner.Which("ip")!, new[] { "netns", "pids", net.Namespace });
        Assert.Equal(0, pids.ExitCode);
        var inside = pids.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
        Assert.NotEmpty(inside); // dnsmasq and the guest's QEMU

        var (rc, _, rerr) = Kvmoc.Run("experiment", "--recover", "--verbose");
        Assert.True(rc == 0, rerr);
        Assert.Contains("Deleted the network namespace " + net.Namespace, rerr);
        Assert.False(File.Exists("/run/netns/" + net.Namespace));
        Assert.False(Directory.Exists(net.Directory));
        var wait = Stopwatch.StartNew();
        while (inside.Any(id => ProcessLiveness.IsAlive(HostRoots.Default, id, null)) && wait.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(100);
        Assert.All(inside, id => Assert.False(ProcessLiveness.IsAlive(HostRoots.Default, id, null), $"pid {id} of the namespace still runs"));
        Assert.Empty(ksmBefore.Compare());
        Assert.False(Directory.Exists(work));
        Assert.False(File.Exists(j.JournalPath));
    }

    [SkippableFact]
    public async Task KillNineOfTheAutoTunerIsRecoveredToItsExitRate()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        AssertNoDeadJournal();
        using var guard = new KsmSettingsGuard();
        new KsmTuner().Set(new KsmTuning { AdvisorMode = KsmStatReader.Read().AdvisorMode is null ? null : "none", PagesToScan = 300, SleepMilliseconds = 50 });
        using var p = StartKvmoc("ksm", "autotune", "--duration", "120", "--quiet");
        HostJournal j;
        try
        {
            j = await WaitForJournalAsync(p, _ => true, TimeSpan.FromSeconds(30), "the autotuner's journal");
            await Task.Delay(1500); // let it change the rate
        }
        finally
        {
            p.Kill();
            p.WaitForExit();
        }
        Assert.Equal(HostJournal.AutoTuneKind, j.Kind);
        Assert.Equal(300, j.KsmSettings!.PagesToScan);
        Assert.Equal((100L, 20L), (j.ExitPagesToScan!.Value, j.ExitSleepMilliseconds!.Value)); // 300/50 ms scans faster than 100/20 ms
        var refused = await Assert.ThrowsAsync<KvmOcException>(() => KvmOvercommit.Engine.Ksm.AutoTune.KsmAutoTuner.RunAsync(new KvmOvercommit.Engine.Ksm.AutoTune.KsmAutoTuneOptions { Duration = TimeSpan.FromSeconds(1) }, null, default));
        Assert.Equal("KsmAutoTuneJournalFound", refused.ErrorId);
        var (rc, _, err) = Kvmoc.Run("ksm", "autotune", "--recover");
        Assert.True(rc == 0, err);
        var now = KsmStatReader.Read();
        Assert.Equal((100L, 20L), (now.PagesToScan!.Value, now.SleepMilliseconds!.Value));
        Assert.Empty(HostJournal.FindDead());
    }

    [SkippableFact]
    public void AReportPathUnderAFileFailsBeforeAnythingStarts()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        Prereq.RequireTool("qemu-system-x86_64");
        using var dir = new TempDir("kvmoc-hostile");
        var file = dir.Write("a-file", "x");
        var before = KsmSettingsSnapshot.Capture();
        foreach (var report in new[] { Path.Combine(file, "report"), file })
        {
            var e = Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(new ExperimentOptions { GuestCount = 1, ReportPath = report, WorkDirectory = dir.File("work") }));
            Assert.Equal("ExperimentReportPathInvalid", e.ErrorId);
            Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        }
        var (code, _, err) = Kvmoc.Run("experiment", "--guest-count", "1", "--report-path", Path.Combine(file, "report"), "--work-directory", dir.File("work"));
        Assert.Equal(2, code);
        Assert.Contains("ExperimentReportPathInvalid", err);
        Assert.False(Directory.Exists(dir.File("work")));
        Assert.Empty(before.Compare());
    }

    [SkippableFact]
    public async Task AReportThatCannotBeWrittenStillReturnsTheResult()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        using var f = await GuestFixture.CreateAsync();
        using var guard = new KsmSettingsGuard();
        var report = f.Dir.File("report");
        Directory.CreateDirectory(Path.Combine(report, ExperimentReportWriter.JsonFile)); // a folder where the report's file goes
        var options = new ExperimentOptions
        {
            TinyGuest = true, GuestCount = 1, MemoryMB = 128, FillMiB = 16, Profiles = new[] { ExperimentProfile.Default },
            Duration = TimeSpan.FromSeconds(2), Interval = TimeSpan.FromSeconds(1), Accelerator = GuestAccelerator.Tcg,
            WorkDirectory = f.Dir.File("work"), RunDirectory = f.RunRoot, NamePrefix = "hostile-r" + Guid.NewGuid().ToString("N")[..4], ReportPath = report,
        };
        var plan = OvercommitExperiment.Plan(options);
        KvmOcException? reportError = null;
        var result = await OvercommitExperiment.RunAsync(plan, NullObserver.Instance, default, e => reportError = e);
        Assert.NotNull(result);
        Assert.Single(result.Profiles);
        Assert.NotNull(reportError);
        Assert.Equal("ExperimentReportFailed", reportError!.ErrorId);
        Assert.True(result.KsmRestored);
        Assert.Empty(HostJournal.ReadAll().Where(j => j.Id == plan.RunId));
    }
}
