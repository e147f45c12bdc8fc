using System.Diagnostics;
using System.Net.Sockets;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Hostile;

/// <summary>QMP without a guest (issue 12, finding 18): a missing socket and a silent one, and the messages they give.</summary>
public class QmpMessageTests
{
    [Fact]
    public async Task AMissingSocketIsQmpSocketMissingAtOnceNotARetryUntilTimeout()
    {
        using var dir = new TempDir("kvmoc-hostile");
        var sock = dir.File("qmp.sock");
        var sw = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<KvmOcException>(() => KvmGuestInventory.ConnectAsync(sock, TimeSpan.FromSeconds(5), default));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(1), $"took {sw.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        Assert.Equal("QmpSocketMissing", e.ErrorId);
        Assert.DoesNotContain("Cannot assign requested address", e.Message);
        Assert.DoesNotContain("Another client", e.Message + e.Hint);
        // A guest being started still waits for its socket to appear.
        var late = Assert.ThrowsAsync<KvmOcException>(() => QmpClient.ConnectAsync(sock, TimeSpan.FromMilliseconds(300)));
        Assert.Equal("QmpSocketMissing", (await late).ErrorId);
    }

    [Fact]
    public async Task ASilentSocketTimesOutWithAGrammaticalMessage()
    {
        using var dir = new TempDir("kvmoc-hostile");
        var sock = dir.File("qmp.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(sock));
        listener.Listen(4); // accepts (the kernel does) but never greets, like a QEMU busy with another client
        var e = await Assert.ThrowsAsync<KvmOcException>(() => QmpClient.ConnectAsync(sock, TimeSpan.FromSeconds(1), default, waitForSocket: false));
        Assert.Equal("QmpTimeout", e.ErrorId);
        Assert.StartsWith("No QMP greeting from", e.Message);
        Assert.DoesNotContain("No the", e.Message);
        Assert.Contains("Another client", e.Hint);
    }

    [Fact]
    public void AdvisorProfileWithPagesToScanIsRefused()
    {
        var e = Assert.Throws<KvmOcException>(() => KsmTuning.ForProfile(KsmTuningProfile.Advisor, new KsmTuning { PagesToScan = 5 }));
        Assert.Equal("KsmAdvisorOwnsPagesToScan", e.ErrorId);
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        // Switching the advisor off again in the same call is fine, and other profiles take -PagesToScan.
        Assert.Equal(5, KsmTuning.ForProfile(KsmTuningProfile.Advisor, new KsmTuning { PagesToScan = 5, AdvisorMode = "none" }).PagesToScan);
        Assert.Equal(5, KsmTuning.ForProfile(KsmTuningProfile.Aggressive, new KsmTuning { PagesToScan = 5 }).PagesToScan);
        var (code, _, err) = Kvmoc.Run("ksm", "tune", "--profile", "Advisor", "--pages-to-scan", "5", "--what-if");
        Assert.Equal(2, code);
        Assert.Contains("KsmAdvisorOwnsPagesToScan", err);
    }
}

/// <summary>
/// Stop on real tiny guests under TCG (issue 12, findings 2, 6, 15, 18): a busy QMP socket, a deleted one, another
/// user, and the run folder. Every guest is killed by the fixture.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class HostileStopTests
{
    [SkippableFact]
    public async Task ABusyQmpSocketFailsTheGracefulStopAndLeavesTheGuestRunning()
    {
        using var f = await GuestFixture.CreateAsync();
        var o = f.TinyOptions(f.Name("hostile-busy"));
        o.NoVnc = true;
        var g = await f.StartAsync(o);
        await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);
        using (var holder = await QmpClient.ConnectAsync(g.QmpSocket!)) // a monitoring script holds the one QMP connection
        {
            var sw = Stopwatch.StartNew();
            var e = await Assert.ThrowsAsync<KvmOcException>(() => GuestStopper.StopAsync(g, new GuestStopOptions { Timeout = TimeSpan.FromSeconds(3) }, NullObserver.Instance));
            Assert.Equal(ErrorKind.ResourceBusy, e.Kind);
            Assert.Equal("GuestQmpBusy", e.ErrorId);
            Assert.InRange(sw.Elapsed.TotalSeconds, 2.9, 15);
            Assert.True(ProcessLiveness.IsAlive(HostRoots.Default, g.Id, null), "the guest was killed");
            Assert.True(Directory.Exists(g.RunDirectory));
            // kvmoc: exit 6 (ResourceBusy), the guest still runs
            var (code, _, err) = Kvmoc.Run("guest", "stop", g.Name, "--run-directory", f.RunRoot, "--timeout-seconds", "2");
            Assert.Equal(6, code);
            Assert.Contains("GuestQmpBusy", err);
            Assert.True(ProcessLiveness.IsAlive(HostRoots.Default, g.Id, null));
            Assert.Equal("running", (await holder.ExecuteAsync("query-status")).GetProperty("status").GetString());
        }
        // Once the other client leaves, the graceful stop works: ACPI power-down.
        var (_, method) = await GuestStopper.StopAsync(g, new GuestStopOptions { Timeout = TimeSpan.FromSeconds(30) }, NullObserver.Instance);
        Assert.Equal(GuestStopMethod.PowerDown, method);
        Assert.Empty(f.Running());
    }

    [SkippableFact]
    public async Task StopRemovesTheWholeRunFolderAndADeletedSocketIsNotRetried()
    {
        using var f = await GuestFixture.CreateAsync();
        var o = f.TinyOptions(f.Name("hostile-runfolder"));
        o.NoVnc = true;
        var g = await f.StartAsync(o);
        await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);
        File.WriteAllText(Path.Combine(g.RunDirectory!, KvmGuestBalloon.TargetFile), "100");
        File.WriteAllText(Path.Combine(g.RunDirectory!, "something-else"), "x");
        File.Delete(g.QmpSocket!);
        var sw = Stopwatch.StartNew();
        var missing = await Assert.ThrowsAsync<KvmOcException>(() => KvmGuestBalloon.GetAsync(g, default));
        Assert.Equal("QmpSocketMissing", missing.ErrorId);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"took {sw.Elapsed.TotalSeconds:0.0} s");
        var obs = new RecordingObserver();
        var (_, method) = await GuestStopper.StopAsync(g, new GuestStopOptions(), obs);
        Assert.Equal(GuestStopMethod.Terminate, method); // no QMP socket at all: SIGTERM, said in a warning
        Assert.Contains(obs.Warnings, w => w.Contains("no QMP socket"));
        Assert.DoesNotContain(obs.Warnings, w => w.Contains("Cannot assign requested address"));
        Assert.False(Directory.Exists(g.RunDirectory), "the run folder (balloon-target and all) is gone");
        // The next guest of that name inherits nothing.
        var again = await f.StartAsync(o);
        Assert.False(File.Exists(Path.Combine(again.RunDirectory!, KvmGuestBalloon.TargetFile)));
    }

    [SkippableFact]
    public async Task AnotherUsersGuestIsPermissionDeniedAtOnce()
    {
        Prereq.RequireRoot();
        var setpriv = Prereq.RequireTool("setpriv");
        using var f = await GuestFixture.CreateAsync(runRoot: Path.Combine("/tmp", "kvmoc-hostile-run-" + Guid.NewGuid().ToString("N")[..6]));
        var o = f.TinyOptions(f.Name("hostile-rootguest"));
        o.NoVnc = true;
        var g = await f.StartAsync(o);
        var psi = new ProcessStartInfo(setpriv) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/tmp", "DOTNET_CLI_HOME=/tmp", "DOTNET_NOLOGO=1", "dotnet", KsmWorkloads.KvmocDll, "guest", "stop", g.Name, "--run-directory", f.RunRoot })
            psi.ArgumentList.Add(a);
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var err = await p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(20000));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(8), $"took {sw.Elapsed.TotalSeconds:0.0} s: {err}");
        Assert.True(4 == p.ExitCode, $"exit {p.ExitCode}: {err}");
        Assert.Contains("PermissionDenied", err);
        Assert.DoesNotContain("GuestStopTimeout", err);
        Assert.True(ProcessLiveness.IsAlive(HostRoots.Default, g.Id, null));
    }
}
