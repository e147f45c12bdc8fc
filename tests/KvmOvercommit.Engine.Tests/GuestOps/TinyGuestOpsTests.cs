using System.Diagnostics;
using System.Security.Cryptography;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.GuestOps;

/// <summary>
/// Balloon, per-guest IOPS, inventory and per-guest KSM on real tiny guests (Debian cloud kernel + busybox, TCG).
/// Every guest is killed by the fixture, also when an assertion fails; KSM settings are restored exactly.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class TinyGuestOpsTests
{
    [SkippableFact]
    public async Task StartedAndHandStartedGuestsAreListedAndTheBalloonShrinksAGuest()
    {
        using var f = await GuestFixture.CreateAsync();
        var name = f.Name("balloon");
        var started = await f.StartAsync(f.TinyOptions(name));
        using var hand = new HandStartedQemu(Prereq.RequireTool("qemu-system-x86_64"), "-machine", "none", "-name", "guest=" + f.Name("byhand"), "-m", "32");
        await GuestFixture.WaitForSerialAsync(started, TinyGuestInit.ReadyMarker);

        var listed = await new KvmGuestInventory().GetAsync(null, null, true, null, NullObserver.Instance, default);
        var g = Assert.Single(listed, x => x.Name == name);
        Assert.Equal(started.Id, g.Id);
        Assert.Equal(128, g.MemoryMB);
        Assert.Equal("running", g.State);
        Assert.Equal(started.RunDirectory, g.RunDirectory);
        Assert.Equal(started.QmpSocket, g.QmpSocket);
        Assert.Contains(listed, x => x.Id == hand.Pid);

        var before = await KvmGuestBalloon.GetAsync(g, default);
        Assert.Equal(128.0, before.ActualMB);
        var result = await KvmGuestBalloon.ApplyAsync(KvmGuestBalloon.Plan(g, 64), wait: true, TimeSpan.FromSeconds(60), NullObserver.Instance, default);
        Assert.Equal(128.0, result.PreviousActualMB);
        Assert.Equal(64L, result.TargetMB);
        Assert.InRange(result.ActualMB, 63, 65);
        var after = await KvmGuestBalloon.GetAsync(g, default);
        Assert.InRange(after.ActualMB, 63, 65);
        Assert.Equal(64L, after.TargetMB); // remembered in the run directory
    }

    [SkippableFact]
    public async Task AutoFallsBackToTcgWhenQemuCannotStartUnderKvm()
    {
        // A /dev/kvm that opens (a plain file in a fake /dev) makes Auto choose KVM; real QEMU then fails under KVM
        // (no /dev/kvm at all, or — on this kind of VM — one whose `-cpu host` lacks MSRs) and the launcher retries
        // under TCG with a warning. Where KVM works, the guest simply runs under KVM.
        using var f = await GuestFixture.CreateAsync();
        using var dev = new TempDir();
        File.WriteAllText(Path.Combine(dev.Path, "kvm"), "");
        var roots = new HostRoots(Dev: dev.Path);
        var o = f.TinyOptions(f.Name("autofallback"));
        o.Accelerator = GuestAccelerator.Auto;
        var obs = new Guests.RecordingObserver();
        var plan = GuestLauncher.Plan(o, obs, roots);
        Assert.Equal("kvm", plan.Accelerator);
        var g = await f.StartAsync(plan, obs);
        Assert.Equal("running", g.State);
        if (g.Accelerator == "tcg")
        {
            Assert.Contains(obs.Warnings, w => w.Contains("under TCG", StringComparison.Ordinal));
            await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);
            Assert.Contains("tcg", File.ReadAllText(Path.Combine(g.RunDirectory!, "cmdline.json")));
        }
    }

    [SkippableFact]
    public async Task AGuestWritingItsDiskShowsWriteIopsAndTheBaseStaysIdentical()
    {
        using var f = await GuestFixture.CreateAsync();
        var baseImage = f.CreateDisk(f.Dir.File("base.qcow2"), size: "8M");
        var overlay = f.CreateDisk(f.Dir.File("writer, 1.qcow2"), backing: baseImage);
        var baseHash = Sha256(baseImage);
        var name = f.Name("writer");
        var g = await f.StartAsync(f.TinyOptions(name, overlay, "kvmoc.io=write"));
        await GuestFixture.WaitForSerialAsync(g, TinyGuestInit.ReadyMarker);

        var rows = new List<KvmGuestIops>();
        var errors = new List<KvmOcException>();
        await new KvmGuestIopsSampler().RunAsync(new[] { g }, TimeSpan.FromSeconds(2), 1, rows.Add, errors.Add, NullObserver.Instance, default);
        Assert.Empty(errors);
        var vda = Assert.Single(rows);
        Assert.Equal(name, vda.Name);
        Assert.True(vda.WriteOpsPerSec > 0, $"WriteOpsPerSec {vda.WriteOpsPerSec}");
        Assert.True(vda.WriteBytesPerSec >= vda.WriteOpsPerSec * 512, $"{vda.WriteBytesPerSec} B/s for {vda.WriteOpsPerSec} ops/s");
        Assert.NotNull(vda.WriteLatencyMs);
        Assert.InRange(Math.Abs(vda.WriteOpsPerSec + vda.ReadOpsPerSec + vda.FlushOpsPerSec - vda.Iops), 0, 0.02); // each figure is rounded to 2 decimals
        Assert.InRange(vda.IntervalSeconds, 1.5, 6);

        // kvmoc guest iops streams one JSON object per line.
        var (rc, stdout, stderr) = HandStartedGuestTests.Cli("guest", "iops", name, "--interval-seconds", "1", "--json");
        Assert.True(rc == 0, stderr);
        using (var doc = System.Text.Json.JsonDocument.Parse(stdout.Trim().Split('\n')[0]))
            Assert.True(doc.RootElement.GetProperty("WriteOpsPerSec").GetDouble() > 0);

        foreach (var p in f.Running()) GuestLauncher.kill(p.Id, 9);
        var sw = Stopwatch.StartNew();
        while (f.Running().Count > 0 && sw.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(50);
        Assert.Equal(baseHash, Sha256(baseImage));
    }

    [SkippableFact]
    public async Task KsmMergesThePagesOfGuestsFilledWithTheSamePattern()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        using var f = await GuestFixture.CreateAsync();
        using var guard = new KsmSettingsGuard();
        var start = KsmStatReader.Read();
        new KsmTuner().Set(KsmTuning.ForProfile(KsmTuningProfile.Aggressive).With(new KsmTuning { AdvisorMode = start.AdvisorMode is null ? null : "none", Run = KsmRunState.Merging }));
        var a = await f.StartAsync(f.TinyOptions(f.Name("ksm-a"), kernelArgs: "kvmoc.fill=8"));
        var b = await f.StartAsync(f.TinyOptions(f.Name("ksm-b"), kernelArgs: "kvmoc.fill=8"));
        var first = new KvmGuestInventory().Find(new[] { a.Name, b.Name }, null);
        await GuestFixture.WaitForSerialAsync(a, TinyGuestInit.ReadyMarker);
        await GuestFixture.WaitForSerialAsync(b, TinyGuestInit.ReadyMarker);

        List<KvmGuest> now = first;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(60))
        {
            now = new KvmGuestInventory().Find(new[] { a.Name, b.Name }, null);
            if (now.Count == 2 && now.All(g => g.KsmMergingPages > 2048)) break; // 8 MiB each
            await Task.Delay(500);
        }
        Assert.Equal(2, now.Count);
        foreach (var g in now)
        {
            var was = first.Single(x => x.Id == g.Id).KsmMergingPages ?? 0;
            Assert.True(g.KsmMergingPages > was && g.KsmMergingPages > 2048, $"{g.Name}: KsmMergingPages {was} → {g.KsmMergingPages}");
        }
        foreach (var p in f.Running()) GuestLauncher.kill(p.Id, 9);
        guard.Dispose();
        Assert.Empty(guard.RemainingDifferences);
    }

    static string Sha256(string path)
    {
        using var s = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(s));
    }
}
