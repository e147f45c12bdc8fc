using System.Management.Automation;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// Cmdlets that change KSM or start guests, run for real in a runspace (one at a time, under the machine-wide host-test
/// lock): README pipelines, -WhatIf/-Confirm compared on sysfs and processes, views of what only these make, and
/// Ctrl+C on the long-running ones with the host checked afterwards.
/// </summary>
[Collection(HostSerialCollection.Name)]
public sealed class HostTests : IClassFixture<SessionFixture>, IDisposable
{
    const string Ksm = "/sys/kernel/mm/ksm";
    readonly PwshSession S;
    readonly Dictionary<string, string> _ksmBefore;
    readonly string _dir = Path.Combine(Path.GetTempPath(), "kvmoc-runspace-host-" + Guid.NewGuid().ToString("N")[..8]);

    public HostTests(SessionFixture fx)
    {
        Require(File.Exists(Path.Combine(Ksm, "run")), "a kernel with KSM");
        Require(Environment.UserName == "root", "root (the tests write /sys/kernel/mm/ksm)");
        S = fx.Session;
        _ksmBefore = KsmKnobs();
        Directory.CreateDirectory(Path.Combine(_dir, "run"));
        using (var f = File.Create(Path.Combine(_dir, "base.raw"))) f.SetLength(32L << 20);
        S.Run("Set-Location -LiteralPath $args[0]; $run = $args[1]", [_dir, Path.Combine(_dir, "run")]).Ok();
    }

    static void Require(bool ok, string what)
    {
        // No skip: a host without the prerequisite fails, in CI and out of it (these tests are what the module is for).
        Assert.True(ok, $"prerequisite missing: {what}");
    }

    public void Dispose()
    {
        // Whatever a failed test left: guests of this run, then KSM exactly as it was.
        S.Run("Get-KvmGuest -ErrorAction SilentlyContinue | Where-Object Name -like 'runspace-*' | Stop-KvmGuest -TurnOff -ErrorAction SilentlyContinue");
        RestoreKsm();
        S.Run("Set-Location -LiteralPath $args[0]", [RepoPaths.Root]);
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>Every writable KSM file (the settings, not the counters).</summary>
    static Dictionary<string, string> KsmKnobs() => Directory.GetFiles(Ksm)
        .Where(f => (File.GetUnixFileMode(f) & UnixFileMode.UserWrite) != 0)
        .ToDictionary(Path.GetFileName, f => File.ReadAllText(f).Trim())!;

    void RestoreKsm()
    {
        if (KsmKnobs().OrderBy(k => k.Key).SequenceEqual(_ksmBefore.OrderBy(k => k.Key))) return;
        // advisor_mode first (pages_to_scan is refused under the advisor), run last.
        foreach (var (k, v) in _ksmBefore.OrderBy(k => k.Key == "advisor_mode" ? 0 : k.Key == "run" ? 2 : 1))
        {
            var path = Path.Combine(Ksm, k);
            if (File.ReadAllText(path).Trim() == v) continue;
            var value = k == "advisor_mode" ? v.Split(' ').First(x => x.StartsWith('[')).Trim('[', ']') : v;
            try { File.WriteAllText(path, value); } catch (IOException) { }
        }
    }

    static void SameKsm(Dictionary<string, string> before, string what) =>
        Assert.True(before.OrderBy(k => k.Key).SequenceEqual(KsmKnobs().OrderBy(k => k.Key)),
            $"{what} changed KSM: " + string.Join(", ", KsmKnobs().Where(k => before[k.Key] != k.Value).Select(k => $"{k.Key} {before[k.Key]} → {k.Value}")));

    static bool Gone(int pid)
    {
        // A daemonized QEMU that exited can linger as a zombie of PID 1: that counts as gone.
        var status = $"/proc/{pid}/status";
        try { return !File.Exists(status) || File.ReadAllLines(status).Any(l => l.StartsWith("State:") && l.Contains('Z')); }
        catch (IOException) { return true; }
    }

    [Fact]
    public void KsmWhatIfChangesNothingAndConfirmAsksAndAnsweringNoChangesNothing()
    {
        var before = KsmKnobs();
        var qemus = Qemus();
        var files = Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Length;
        S.Run("Get-KsmStat | Set-KsmTuning -WhatIf; Set-KsmTuning -Profile Aggressive -Run Merge -WhatIf; Set-KsmTuning -MaxPageSharing 1024 -Force -WhatIf; Invoke-KsmAutoTune -Duration 5 -WhatIf; Invoke-KvmMemoryBalancer -Duration 1 -WhatIf | Out-Null").Ok();
        S.Run($"$tiny = Get-KvmTinyGuest; Invoke-OvercommitExperiment -TinyGuest -GuestCount 2 -Duration 00:01:00 -WorkDirectory . -WhatIf | Out-Null; New-QcowOverlay runspace-w.qcow2 -BackingPath base.raw -WhatIf | Start-KvmGuest {Guest} -WhatIf").Ok();
        SameKsm(before, "-WhatIf");
        NoQemuLeft(qemus, "-WhatIf/-Confirm");
        Assert.Equal(files, Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Length);

        var host = new AnswerNoHost();
        using var confirm = new PwshSession(host);
        var r = confirm.Run("Set-Location -LiteralPath $args[0]; $run = $args[1]; Set-KsmTuning -PagesToScan 1234 -Confirm; Set-KsmTuning -Profile Aggressive -Confirm; Invoke-KsmAutoTune -Duration 5 -Confirm", [_dir, Path.Combine(_dir, "run")]);
        r.Ok();
        Assert.Equal(3, host.Prompts);
        confirm.Run($"$tiny = Get-KvmTinyGuest; New-QcowOverlay runspace-c.qcow2 -BackingPath base.raw -Confirm; Start-KvmGuest -DiskPath base.raw -Name runspace-c {Guest} -Confirm; Invoke-OvercommitExperiment -TinyGuest -GuestCount 1 -Duration 00:01:00 -WorkDirectory . -Confirm; Invoke-KvmMemoryBalancer -Duration 1 -Confirm").Ok();
        Assert.True(host.Prompts >= 7, $"{host.Prompts} prompts");
        SameKsm(before, "-Confirm answered No");
        NoQemuLeft(qemus, "-WhatIf/-Confirm");
        Assert.Equal(files, Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Length);
    }

    /// <summary>The cmdlets whose -WhatIf and -Confirm the tests above exercise: a new ShouldProcess cmdlet must join them.</summary>
    static readonly HashSet<string> ShouldProcessCovered = ["Invoke-KsmAutoTune", "Invoke-KvmMemoryBalancer", "Set-KvmGuestIoLimit", "Invoke-OvercommitExperiment", "New-QcowOverlay", "Set-KsmTuning", "Set-KvmGuestMemory", "Start-KvmGuest", "Stop-KvmGuest"];

    [Fact]
    public void EveryShouldProcessCmdletHasItsWhatIfAndConfirmTested()
    {
        var names = S.Run("(Get-Command -Module KvmOvercommit | Where-Object { $_.Parameters.ContainsKey('WhatIf') }).Name").Ok().Output.Select(o => o.ToString()).ToList();
        Assert.Empty(names.Where(n => !ShouldProcessCovered.Contains(n)));
    }

    [Fact]
    public void SetKsmTuningRoundTripsAndRestores()
    {
        var before = KsmKnobs();
        try
        {
            var old = S.Run("$saved = Get-KsmStat; $old = Set-KsmTuning -PagesToScan 5000 -PassThru; $old").Ok().Output.Single();
            Assert.Equal("KvmOvercommit.Engine.Ksm.KsmTuning", old.TypeNames[0]);
            Assert.Equal("5000", File.ReadAllText(Path.Combine(Ksm, "pages_to_scan")).Trim());
            ViewTests.CheckViews(S, "$old");
            S.Run("Get-KsmStat | Set-KsmTuning -WhatIf").Ok();
            Assert.Equal("5000", File.ReadAllText(Path.Combine(Ksm, "pages_to_scan")).Trim());
            S.Run("$saved | Set-KsmTuning -Force").Ok();
            SameKsm(before, "$saved | Set-KsmTuning -Force (a restore)");
            // The README's round trip: a null property from the pipeline leaves that setting alone.
            S.Run("$old = Set-KsmTuning -PagesToScan 5000 -PassThru; $old | Set-KsmTuning").Ok();
            SameKsm(before, "$old | Set-KsmTuning (a restore)");
        }
        finally { RestoreKsm(); }
    }

    [Fact]
    public void AutoTuneRunsForSecondsAndCtrlCLeavesKsmAtTheLowRate()
    {
        try
        {
            var result = S.Run("$t = Invoke-KsmAutoTune -Duration 2; $t").Ok().Output.Single();
            Assert.InRange(((TimeSpan)result.Properties["Duration"].Value).TotalSeconds, 1.5, 10);
            ViewTests.CheckViews(S, "$t");
            ViewTests.CheckViews(S, "$t.Decisions");

            var (took, _, state, errors) = CtrlC.StopWhen(S, "Invoke-KsmAutoTune", outputs: 0, ready: After(TimeSpan.FromSeconds(1.5)));
            Assert.True(took < TimeSpan.FromSeconds(2), $"Stop() took {took}");
            Assert.Equal(PSInvocationState.Stopped, state);
            Assert.Empty(errors);
            // "leaves KSM merging at the kernel default 100 pages / 20 ms (or the slower rate it found), never at a burst rate"
            Assert.InRange(int.Parse(File.ReadAllText(Path.Combine(Ksm, "pages_to_scan"))), 1, 100);
            Assert.True(int.Parse(File.ReadAllText(Path.Combine(Ksm, "sleep_millisecs"))) >= 20);
        }
        finally { RestoreKsm(); }
    }

    static Func<bool> After(TimeSpan t)
    {
        var until = DateTime.UtcNow + t;
        return () => DateTime.UtcNow > until;
    }

    const string Guest = "-Kernel $tiny.Kernel -Initrd $tiny.Initrd -MemoryMB 128 -Accelerator Tcg -Network None -RunDirectory $run -KernelArguments quiet";

    [Fact]
    public void GuestPipelineFromOverlayToStop()
    {
        var r = S.Run($"$tiny = Get-KvmTinyGuest; 'runspace-g1.qcow2' | New-QcowOverlay -BackingPath base.raw -BackingFormat raw | Start-KvmGuest {Guest} -PassThru", timeout: TimeSpan.FromMinutes(3)).Ok();
        var guest = r.Output.Single();
        Assert.Equal("runspace-g1", guest.Properties["Name"].Value);
        var pid = Convert.ToInt32(guest.Properties["Id"].Value);
        try
        {
            ViewTests.CheckViews(S, "Get-QcowImage runspace-g1.qcow2");
            ViewTests.CheckViews(S, "Get-KvmGuest -Name runspace-g1");
            ViewTests.CheckViews(S, "Get-KvmGuest -Name runspace-g1 | Get-KvmGuestMemory");
            var iops = S.Run("Get-KvmGuest -Name runspace-g1 | Measure-KvmGuestIops -Count 1 -IntervalSeconds 0.3").Ok().Output;
            Assert.NotEmpty(iops);
            ViewTests.CheckViews(S, "Get-KvmGuest -Name runspace-g1 | Measure-KvmGuestIops -Count 1 -IntervalSeconds 0.3");
            var io = S.Run("Get-KvmGuest -Name runspace-g1 | Measure-ProcessIops -Count 1 -IntervalSeconds 0.3").Ok().Output;
            Assert.Equal(pid, Convert.ToInt32(io.Single().Properties["Id"].Value));
            Assert.True(Convert.ToBoolean(S.Run("(Get-QcowImage runspace-g1.qcow2).InUse").Ok().Output.Single().BaseObject), "the running guest's disk is not InUse");

            var (took, samples, state, errors) = CtrlC.StopWhen(S, "Get-KvmGuest -Name runspace-g1 | Measure-KvmGuestIops -Continuous -IntervalSeconds 0.2", outputs: 2);
            Assert.True(took < TimeSpan.FromSeconds(2), $"Stop() took {took}");
            Assert.Equal(PSInvocationState.Stopped, state);
            Assert.Empty(errors);

            // -WhatIf and -Confirm (answered No) leave the guest running with its memory.
            var memory = S.Run("(Get-KvmGuestMemory -Name runspace-g1).ActualMB").Ok().Output.Single().ToString();
            S.Run("Get-KvmGuest -Name runspace-g1 | Stop-KvmGuest -WhatIf; Get-KvmGuest -Name runspace-g1 | Set-KvmGuestMemory -TargetMB 64 -WhatIf; Stop-KvmGuest -Name runspace-g1 -TurnOff -WhatIf; Set-KvmGuestIoLimit -Name runspace-g1 -Iops 100 -WhatIf").Ok();
            var host = new AnswerNoHost();
            using (var confirm = new PwshSession(host))
                confirm.Run("Stop-KvmGuest -Name runspace-g1 -Confirm; Set-KvmGuestMemory -Name runspace-g1 -TargetMB 64 -Confirm; Get-KvmGuest -Name runspace-g1 | Stop-KvmGuest -TurnOff -Confirm; Set-KvmGuestIoLimit -Name runspace-g1 -Iops 100 -Confirm").Ok();
            Assert.Equal(4, host.Prompts);
            Assert.Empty(S.Run("Get-KvmGuestIoLimit -Name runspace-g1 | Where-Object Iops -gt 0").Ok().Output);
            Assert.False(Gone(pid), "-WhatIf/-Confirm stopped the guest");
            Assert.Equal(memory, S.Run("(Get-KvmGuestMemory -Name runspace-g1).ActualMB").Ok().Output.Single().ToString());

            var ballooned = S.Run("Get-KvmGuest 'runspace-g*' | Set-KvmGuestMemory -TargetMB 96 -Wait -TimeoutSeconds 30 -PassThru", timeout: TimeSpan.FromMinutes(1)).Ok().Output.Single();
            Assert.InRange(Convert.ToDouble(ballooned.Properties["ActualMB"].Value), 90, 100);

            var stopped = S.Run("Get-KvmGuest -Name runspace-g1 | Stop-KvmGuest -TurnOff -PassThru", timeout: TimeSpan.FromMinutes(1)).Ok().Output;
            Assert.Single(stopped);
            Assert.True(SpinWait.SpinUntil(() => Gone(pid), TimeSpan.FromSeconds(10)), $"QEMU {pid} is still running after Stop-KvmGuest");
            Assert.Empty(S.Run("Get-KvmGuest -ErrorAction SilentlyContinue | Where-Object Name -eq 'runspace-g1'").Output);
        }
        finally
        {
            if (!Gone(pid)) System.Diagnostics.Process.GetProcessById(pid).Kill();
        }
    }

    [Fact]
    public void StartKvmGuestStaggerStopsWithinTwoSecondsAndStartsNoMore()
    {
        var pids = new List<int>();
        try
        {
            S.Run("$tiny = Get-KvmTinyGuest; New-QcowOverlay runspace-s1.qcow2, runspace-s2.qcow2 -BackingPath base.raw -BackingFormat raw | Out-Null").Ok();
            var (took, output, state, errors) = CtrlC.StopWhen(S,
                $"Get-ChildItem runspace-s?.qcow2 | Start-KvmGuest {Guest} -StaggerSeconds 60 -PassThru", outputs: 1, within: TimeSpan.FromMinutes(2));
            pids.AddRange(output.Select(o => Convert.ToInt32(o.Properties["Id"].Value)));
            Assert.True(took < TimeSpan.FromSeconds(2), $"Stop() took {took}");
            Assert.Equal(PSInvocationState.Stopped, state);
            Assert.Empty(errors);
            Assert.Single(output);
            var running = S.Run("Get-KvmGuest -ErrorAction SilentlyContinue | Where-Object Name -like 'runspace-s*'").Ok().Output;
            Assert.Equal(["runspace-s1"], running.Select(g => (string)g.Properties["Name"].Value));
            S.Run("Get-KvmGuest -Name runspace-s1 | Stop-KvmGuest -TurnOff").Ok();
            Assert.True(SpinWait.SpinUntil(() => pids.All(Gone), TimeSpan.FromSeconds(10)));
        }
        finally
        {
            foreach (var p in pids.Where(p => !Gone(p))) System.Diagnostics.Process.GetProcessById(p).Kill();
        }
    }

    /// <summary>Running QEMUs of this test (their disks and run folders are under its temporary folder; other
    /// helpers' or users' guests on the machine are not counted).</summary>
    HashSet<int> Qemus() => Directory.GetDirectories("/proc").Select(Path.GetFileName)
        .Where(n => int.TryParse(n, out _)).Select(int.Parse)
        .Where(p =>
        {
            try { var c = File.ReadAllText($"/proc/{p}/cmdline"); return c.Contains("qemu-system") && c.Contains(_dir) && !Gone(p); }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        })
        .ToHashSet();

    void NoQemuLeft(HashSet<int> before, string what)
    {
        // A QEMU told to quit takes a moment to exit.
        SpinWait.SpinUntil(() => !Qemus().Except(before).Any(), TimeSpan.FromSeconds(5));
        var left = Qemus().Except(before).Select(p => $"{p}: {File.ReadAllText($"/proc/{p}/cmdline").Replace('\0', ' ')}").ToList();
        Assert.True(left.Count == 0, $"{what} left QEMU running:\n" + string.Join("\n", left));
    }

    [Fact]
    public void ExperimentRunsAndCtrlCCleansUp()
    {
        var work = Path.Combine(_dir, "exp");
        Directory.CreateDirectory(work);
        var before = KsmKnobs();
        var qemusBefore = Qemus();
        try
        {
            var args = $"-TinyGuest -GuestCount 1 -MemoryMB 128 -Accelerator Tcg -KsmProfile Aggressive -IntervalSeconds 1 -WorkDirectory '{work}' -RunDirectory '{Path.Combine(_dir, "run")}'";
            S.Run($"$x = Invoke-OvercommitExperiment {args} -Duration 00:00:03", timeout: TimeSpan.FromMinutes(4)).Ok();
            ViewTests.CheckViews(S, "$x");
            ViewTests.CheckViews(S, "$x.Profiles");
            ViewTests.CheckViews(S, "$x.Profiles.Guests");
            ViewTests.CheckViews(S, "$x.Profiles.Samples");
            SameKsm(before, "the experiment");
            NoQemuLeft(qemusBefore, "the experiment");
            Assert.Empty(Directory.GetFiles(work, "*", SearchOption.AllDirectories));

            // Ctrl+C once the guest runs: Stop() returns once the cleanup is done, and the host is as before.
            var (took, _, state, _) = CtrlC.StopWhen(S, $"Invoke-OvercommitExperiment {args} -Duration 00:01:00", outputs: 0,
                ready: () => Qemus().Except(qemusBefore).Any(), within: TimeSpan.FromMinutes(2));
            Assert.True(took < TimeSpan.FromSeconds(30), $"Stop() took {took}");
            Assert.Equal(PSInvocationState.Stopped, state);
            SameKsm(before, "the stopped experiment");
            NoQemuLeft(qemusBefore, "the stopped experiment");
            Assert.Empty(Directory.GetFiles(work, "*", SearchOption.AllDirectories));
        }
        finally
        {
            foreach (var p in Qemus().Except(qemusBefore)) try { System.Diagnostics.Process.GetProcessById(p).Kill(); } catch (ArgumentException) { }
            RestoreKsm();
        }
    }
}
