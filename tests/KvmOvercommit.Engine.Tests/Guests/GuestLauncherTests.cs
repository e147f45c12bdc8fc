using System.Diagnostics;
using System.Security.Cryptography;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;
using Xunit.Abstractions;

namespace KvmOvercommit.Engine.Tests.Guests;

public class GuestLaunchPlanTests
{
    static GuestStartOptions Opts(TempDir d, string disk) => new() { DiskPath = disk, Accelerator = GuestAccelerator.Tcg, RunDirectory = d.File("run"), MemoryMB = 4048, CpuCount = 2 };

    [SkippableFact]
    public void Plan_Builds_An_Argument_Array_With_Escaped_Values()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        using var d = new TempDir();
        KvmOvercommit.Engine.Tests.Qcow.QemuImg.Require();
        var disk = d.File("win7,1 x.qcow2");
        // A whole qcow2 (the plan reads its header and backing chain): qemu-img takes the comma as part of the name.
        KvmOvercommit.Engine.Tests.Qcow.QemuImg.Run("create", "-q", "-f", "qcow2", disk, "1M");
        var plan = GuestLauncher.Plan(Opts(d, disk), NullObserver.Instance);
        Assert.Equal("win7,1 x", plan.Name);
        var a = plan.Arguments;
        Assert.Equal("guest=win7,,1 x", a[Array.IndexOf(a, "-name") + 1]);
        Assert.Equal($"file={disk.Replace(",", ",,")},format=qcow2,if=virtio", a[Array.IndexOf(a, "-drive") + 1]);
        Assert.Equal("4048", a[Array.IndexOf(a, "-m") + 1]);
        Assert.Equal("2", a[Array.IndexOf(a, "-smp") + 1]);
        Assert.Equal("tcg", a[Array.IndexOf(a, "-accel") + 1]);
        Assert.Contains("-nodefaults", a);
        Assert.Contains("-daemonize", a);
        Assert.Contains(a, x => x.StartsWith("virtio-balloon-pci,id=balloon0", StringComparison.Ordinal));
        Assert.Equal(Path.Combine(d.File("run"), "win7,1 x"), plan.RunDirectory);
        Assert.StartsWith("unix:" + plan.RunDirectory.Replace(",", ",,"), a[Array.IndexOf(a, "-qmp") + 1]);
        Assert.Equal("file:" + plan.SerialLog, a[Array.IndexOf(a, "-serial") + 1]);
        Assert.NotNull(plan.VncDisplay);
        Assert.Equal($"127.0.0.1:{plan.VncDisplay}", a[Array.IndexOf(a, "-vnc") + 1]);
        Assert.Contains("'guest=win7,,1 x'", plan.CommandLine);
        Assert.False(Directory.Exists(plan.RunDirectory)); // planning starts nothing
    }

    [SkippableFact]
    public void Plan_Adds_Console_And_Honours_Options()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        using var d = new TempDir();
        var k = d.Write("vmlinuz", "k");
        var o = new GuestStartOptions { Name = "t", Kernel = k, KernelArguments = "kvmoc.fill=8,1", NoVnc = true, Balloon = false, Network = GuestNetwork.None, Accelerator = GuestAccelerator.Tcg, RunDirectory = d.Path, ExtraArgument = new[] { "-rtc", "base=utc" } };
        var a = GuestLauncher.Plan(o, NullObserver.Instance).Arguments;
        Assert.Equal("console=ttyS0 kvmoc.fill=8,1 no_timer_check", a[Array.IndexOf(a, "-append") + 1]);
        Assert.DoesNotContain("-vnc", a);
        Assert.DoesNotContain("-netdev", a);
        Assert.DoesNotContain(a, x => x.StartsWith("virtio-balloon-pci", StringComparison.Ordinal));
        Assert.Equal("base=utc", a[Array.IndexOf(a, "-rtc") + 1]);
        o.KernelArguments = "console=hvc0";
        a = GuestLauncher.Plan(o, NullObserver.Instance).Arguments;
        Assert.Equal("console=hvc0 no_timer_check", a[Array.IndexOf(a, "-append") + 1]);
        o.KernelArguments = "console=hvc0 no_timer_check";
        a = GuestLauncher.Plan(o, NullObserver.Instance).Arguments;
        Assert.Equal("console=hvc0 no_timer_check", a[Array.IndexOf(a, "-append") + 1]);
        o.KernelArguments = "console=hvc0";
        o.Network = GuestNetwork.Tap; o.Bridge = "br,0"; o.MacAddress = "52:54:00:aa:bb:cc";
        a = GuestLauncher.Plan(o, NullObserver.Instance).Arguments;
        Assert.Equal("bridge,id=net0,br=br,,0", a[Array.IndexOf(a, "-netdev") + 1]);
        Assert.Contains("mac=52:54:00:aa:bb:cc", a[Array.IndexOf(a, "-device") + 1]);
    }

    [SkippableFact]
    public void Plan_Refuses_Bad_Input_Clearly()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        using var d = new TempDir();
        var e = Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(Opts(d, d.File("missing.qcow2")), NullObserver.Instance));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        Assert.Equal("DiskNotFound", e.ErrorId);
        Assert.Contains("missing.qcow2", e.Message);
        var disk = d.Write("a.raw", "x");
        Assert.Equal("GuestNameInvalid", Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(new GuestStartOptions { Name = "a/b", DiskPath = disk, RunDirectory = d.Path }, NullObserver.Instance)).ErrorId);
        Assert.Equal("BridgeNeedsTap", Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(new GuestStartOptions { DiskPath = disk, Bridge = "br0", RunDirectory = d.Path }, NullObserver.Instance)).ErrorId);
        Assert.Equal("MacAddressInvalid", Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(new GuestStartOptions { DiskPath = disk, MacAddress = "nope", RunDirectory = d.Path }, NullObserver.Instance)).ErrorId);
        Assert.Equal("NothingToBoot", Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(new GuestStartOptions { Name = "x", RunDirectory = d.Path }, NullObserver.Instance)).ErrorId);
        Assert.Equal("RunDirectoryTooLong", Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(new GuestStartOptions { Name = new string('n', 120), DiskPath = disk, RunDirectory = d.Path }, NullObserver.Instance)).ErrorId);
        var kvm = Assert.Throws<KvmOcException>(() => GuestLauncher.ResolveAccelerator(GuestAccelerator.Kvm, new HostRoots(Dev: d.Path), NullObserver.Instance));
        Assert.Equal("KvmNotAvailable", kvm.ErrorId);
    }

    [Fact]
    public void Auto_Accelerator_Falls_Back_To_Tcg_With_A_Warning()
    {
        using var d = new TempDir();
        var obs = new RecordingObserver();
        Assert.Equal("tcg", GuestLauncher.ResolveAccelerator(GuestAccelerator.Auto, new HostRoots(Dev: d.Path), obs));
        Assert.Contains(obs.Warnings, w => w.Contains("TCG"));
    }

    [Fact]
    public void Auto_Choosing_Kvm_Plans_A_Tcg_Fallback_And_Explicit_Accelerators_Do_Not()
    {
        using var d = new TempDir();
        File.WriteAllText(Path.Combine(d.Path, "kvm"), ""); // a /dev/kvm that can be opened: Auto picks KVM
        var roots = new HostRoots(Dev: d.Path);
        var kernel = Path.Combine(d.Path, "vmlinuz");
        File.WriteAllText(kernel, "");
        GuestLaunchPlan PlanWith(GuestAccelerator a) => GuestLauncher.Plan(new GuestStartOptions
        {
            Name = "fallback-plan", MemoryMB = 64, Accelerator = a, NoVnc = true, Network = GuestNetwork.None, Kernel = kernel,
            RunDirectory = Path.Combine(d.Path, "run"),
        }, NullObserver.Instance, roots);

        var auto = PlanWith(GuestAccelerator.Auto);
        Assert.Equal("kvm", auto.Accelerator);
        Assert.Contains("host", auto.Arguments);
        var tcg = Assert.IsType<string[]>(auto.TcgFallbackArguments);
        Assert.Equal("tcg", tcg[Array.IndexOf(tcg, "-accel") + 1]);
        Assert.DoesNotContain("-cpu", tcg);
        Assert.Equal(auto.Arguments.Length - 2, tcg.Length);
        Assert.Null(PlanWith(GuestAccelerator.Kvm).TcgFallbackArguments);
        Assert.Null(PlanWith(GuestAccelerator.Tcg).TcgFallbackArguments);
    }

    [Fact]
    public void Mac_Is_Stable_And_Locally_Administered()
    {
        Assert.Equal(GuestLauncher.MacFor("web1"), GuestLauncher.MacFor("web1"));
        Assert.NotEqual(GuestLauncher.MacFor("web1"), GuestLauncher.MacFor("web2"));
        Assert.StartsWith("52:54:00:", GuestLauncher.MacFor("web1"));
    }
}

sealed class RecordingObserver : IOperationObserver
{
    public List<string> Verboses { get; } = new();
    public List<string> Warnings { get; } = new();
    public List<ProgressInfo> Progresses { get; } = new();
    public void Verbose(string message) { lock (this) Verboses.Add(message); }
    public void Warning(string message) { lock (this) Warnings.Add(message); }
    public void Progress(ProgressInfo progress) { lock (this) Progresses.Add(progress); }
}

[Collection(HostSerialCollection.Name)]
public class GuestLifecycleTests(ITestOutputHelper output)
{
    static string Sha(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    [SkippableFact]
    public async Task Guests_From_Overlays_Of_One_Base_Boot_Write_And_Power_Down_While_The_Base_Stays_Identical()
    {
        using var f = await GuestFixture.CreateAsync();
        var baseImg = f.CreateDisk(f.Dir.File("base.qcow2"));
        var before = Sha(baseImg);
        var guests = new List<KvmGuest>();
        var sw = Stopwatch.StartNew();
        for (int i = 1; i <= 3; i++)
        {
            var overlay = f.CreateDisk(f.Dir.File($"vm-{i}.qcow2"), baseImg);
            var o = f.TinyOptions(f.Name($"vm{i}"), overlay, i == 1 ? "kvmoc.io=write" : "kvmoc.fill=8,1");
            o.NoVnc = false;
            guests.Add(await f.StartAsync(o));
        }
        foreach (var g in guests) await GuestFixture.WaitForSerialAsync(g, "KVMOC-READY");
        output.WriteLine($"3 guests started and ready in {sw.Elapsed.TotalSeconds:0.0} s");
        Assert.All(guests, g =>
        {
            Assert.Equal("running", g.State);
            Assert.True(g.Id > 0);
            Assert.Equal("tcg", g.Accelerator);
            Assert.True(Directory.Exists(g.RunDirectory));
            Assert.True(File.Exists(Path.Combine(g.RunDirectory!, "cmdline.json")));
            Assert.Single(g.Disks);
            Assert.InRange(g.StartTime!.Value, DateTimeOffset.UtcNow.AddMinutes(-2), DateTimeOffset.UtcNow.AddSeconds(1));
        });
        Assert.Equal(3, guests.Select(g => g.VncDisplay).Distinct().Count());
        Assert.Equal(3, f.Running().Count);
        Assert.Contains("disk /dev/vda", File.ReadAllText(guests[0].SerialLog!));
        Assert.Contains("filled 8 MiB", File.ReadAllText(guests[1].SerialLog!));

        // the writing guest's overlay grows; QMP counts its writes
        await using (var q = await QmpClient.ConnectAsync(guests[0].QmpSocket!))
        {
            var stats = await q.ExecuteAsync("query-blockstats");
            Assert.True(stats[0].GetProperty("stats").GetProperty("wr_operations").GetInt64() > 0);
        }

        var found = GuestStopper.Find(guests.Select(g => g.Name), f.RunRoot);
        Assert.Equal(guests.Select(g => g.Id).OrderBy(x => x), found.Select(g => g.Id).OrderBy(x => x));
        foreach (var g in guests)
        {
            var (stopped, method) = await GuestStopper.StopAsync(g, new GuestStopOptions { Timeout = TimeSpan.FromSeconds(20) }, NullObserver.Instance);
            Assert.Equal(GuestStopMethod.PowerDown, method);
            Assert.Equal("stopped", stopped.State);
            Assert.False(Directory.Exists(g.RunDirectory));
            Assert.True(File.Exists(g.Disks[0])); // disks are never touched
        }
        Assert.Empty(f.Running());
        Assert.Equal(before, Sha(baseImg));
    }

    [SkippableFact]
    public async Task Names_And_Paths_With_Spaces_Commas_And_Quotes_Start_Find_And_Stop()
    {
        using var f = await GuestFixture.CreateAsync();
        var odd = Path.Combine(f.Dir.Path, "d a,b 'q\"");
        Directory.CreateDirectory(odd);
        var baseImg = f.CreateDisk(Path.Combine(odd, "base, 1.qcow2"));
        var overlay = f.CreateDisk(Path.Combine(odd, "vm \"x\", 'y'.qcow2"), baseImg);
        var o = f.TinyOptions(null!, overlay);
        o.Name = null; // default: the disk's file name
        o.RunDirectory = Path.Combine(f.Dir.Path, "r,1 'x'");
        var plan = GuestLauncher.Plan(o, NullObserver.Instance);
        Assert.Equal("vm \"x\", 'y'", plan.Name);
        f.Name("unused"); // keep the fixture's list non-empty
        var g = await f.StartAsync(new GuestStartOptions
        {
            DiskPath = overlay, MemoryMB = 128, Accelerator = GuestAccelerator.Tcg, Kernel = f.Image.Kernel, Initrd = f.Image.Initrd,
            KernelArguments = "quiet", Network = GuestNetwork.User, RunDirectory = o.RunDirectory, NoVnc = true,
        });
        Assert.Equal(plan.Name, g.Name);
        Assert.Equal(plan.Name, new QemuProcessScanner().Read(g.Id)!.Name);
        await GuestFixture.WaitForSerialAsync(g, "KVMOC-READY");
        var found = Assert.Single(GuestStopper.Find(new[] { "vm `\"x`\", 'y'" }, o.RunDirectory));
        Assert.Equal(g.Id, found.Id);
        Assert.Equal(g.RunDirectory, found.RunDirectory);
        Assert.Equal(g.QmpSocket, found.QmpSocket);
        var (_, method) = await GuestStopper.StopAsync(found, new GuestStopOptions { TurnOff = true }, NullObserver.Instance);
        Assert.Equal(GuestStopMethod.Quit, method);
        Assert.False(ProcessLiveness.IsAlive(HostRoots.Default, g.Id, null));
        Assert.False(Directory.Exists(g.RunDirectory));
        Assert.True(File.Exists(overlay));
    }

    [SkippableFact]
    public async Task Taken_Name_And_Vnc_Display_Are_Refused_And_Qemu_Errors_Leave_Nothing_Running()
    {
        using var f = await GuestFixture.CreateAsync();
        var disk = f.CreateDisk(f.Dir.File("a.qcow2"));
        var name = f.Name("taken");
        // a disk-only guest: SeaBIOS finds nothing to boot and ignores ACPI powerdown
        var g = await f.StartAsync(new GuestStartOptions { Name = name, DiskPath = disk, MemoryMB = 64, Accelerator = GuestAccelerator.Tcg, Network = GuestNetwork.None, RunDirectory = f.RunRoot });
        Assert.NotNull(g.VncDisplay);

        var e = Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(new GuestStartOptions { Name = name, DiskPath = disk, RunDirectory = f.Dir.File("elsewhere") }, NullObserver.Instance));
        Assert.Equal(ErrorKind.ResourceExists, e.Kind);
        Assert.Equal("GuestNameTaken", e.ErrorId);
        var v = Assert.Throws<KvmOcException>(() => GuestLauncher.Plan(new GuestStartOptions { Name = f.Name("other"), DiskPath = disk, VncDisplay = g.VncDisplay, RunDirectory = f.RunRoot }, NullObserver.Instance));
        Assert.Equal("VncDisplayTaken", v.ErrorId);

        // the same disk twice: QEMU's image lock refuses; its own message comes through and nothing stays behind
        var second = f.Name("second");
        var q = await Assert.ThrowsAsync<KvmOcException>(() => f.StartAsync(new GuestStartOptions { Name = second, DiskPath = disk, MemoryMB = 64, Accelerator = GuestAccelerator.Tcg, Network = GuestNetwork.None, NoVnc = true, RunDirectory = f.RunRoot }));
        output.WriteLine(q.Message);
        Assert.Equal("QemuStartFailed", q.ErrorId);
        Assert.Equal(ErrorKind.ResourceBusy, q.Kind);
        Assert.Contains("lock", q.Message);
        Assert.False(Directory.Exists(Path.Combine(f.RunRoot, second)));
        var bad = f.Name("bad");
        var b = await Assert.ThrowsAsync<KvmOcException>(() => f.StartAsync(new GuestStartOptions { Name = bad, Kernel = f.Image.Kernel, MemoryMB = 64, Accelerator = GuestAccelerator.Tcg, Network = GuestNetwork.None, NoVnc = true, RunDirectory = f.RunRoot, ExtraArgument = new[] { "-no-such-option" } }));
        Assert.Contains("no-such-option", b.Message);
        Assert.False(Directory.Exists(Path.Combine(f.RunRoot, bad)));
        Assert.Single(f.Running());

        // graceful stop times out (nothing in the guest handles the power button), then QMP quit
        var sw = Stopwatch.StartNew();
        var (_, method) = await GuestStopper.StopAsync(g, new GuestStopOptions { Timeout = TimeSpan.FromSeconds(2) }, NullObserver.Instance);
        Assert.Equal(GuestStopMethod.Quit, method);
        Assert.True(sw.Elapsed >= TimeSpan.FromSeconds(2));
        Assert.Empty(f.Running());
        Assert.False(Directory.Exists(g.RunDirectory));
        var gone = await Assert.ThrowsAsync<KvmOcException>(() => GuestStopper.StopAsync(g, new GuestStopOptions(), NullObserver.Instance));
        Assert.Equal(ErrorKind.NotFound, gone.Kind);
    }

    [SkippableFact]
    public async Task A_Hand_Started_Qemu_Without_Qmp_Is_Found_And_Terminated()
    {
        using var f = await GuestFixture.CreateAsync();
        var name = f.Name("hand made");
        var psi = new ProcessStartInfo("qemu-system-x86_64") { UseShellExecute = false, RedirectStandardError = true };
        foreach (var a in new[] { "-name", name, "-machine", "none", "-display", "none", "-nodefaults", "-daemonize" }) psi.ArgumentList.Add(a);
        using (var p = Process.Start(psi)!) { p.StandardError.ReadToEnd(); p.WaitForExit(); Assert.Equal(0, p.ExitCode); }
        var g = Assert.Single(GuestStopper.Find(new[] { "hand*" + name[^6..] }, f.RunRoot));
        Assert.Null(g.QmpSocket);
        var obs = new RecordingObserver();
        var (_, method) = await GuestStopper.StopAsync(g, new GuestStopOptions(), obs);
        Assert.Equal(GuestStopMethod.Terminate, method);
        Assert.Contains(obs.Warnings, w => w.Contains("SIGTERM"));
        Assert.Empty(f.Running());
    }

    [SkippableFact]
    public async Task A_Hung_Qemu_Is_Refused_Without_Force_And_Killed_With_It()
    {
        using var f = await GuestFixture.CreateAsync();
        var o = f.TinyOptions(f.Name("hung"));
        o.NoVnc = true;
        var g = await f.StartAsync(o);
        GuestLauncher.kill(g.Id, 19); // SIGSTOP: QMP never greets, SIGTERM stays pending
        try
        {
            var stopOptions = new GuestStopOptions { Timeout = TimeSpan.FromSeconds(1), QuitTimeout = TimeSpan.FromSeconds(1) };
            var e = await Assert.ThrowsAsync<KvmOcException>(() => GuestStopper.StopAsync(g, stopOptions, NullObserver.Instance));
            // A QMP socket that never greets (a hung QEMU, or another client holding it) fails the graceful stop
            // and leaves the guest running; only -Force goes on to SIGTERM/SIGKILL.
            Assert.Equal("GuestQmpBusy", e.ErrorId);
            Assert.Equal(ErrorKind.ResourceBusy, e.Kind);
            Assert.Contains("-Force", e.Hint);
            Assert.True(ProcessLiveness.IsAlive(HostRoots.Default, g.Id, null)); // no SIGKILL without -Force
            Assert.True(Directory.Exists(g.RunDirectory));
            stopOptions.Force = true;
            var (_, method) = await GuestStopper.StopAsync(g, stopOptions, NullObserver.Instance);
            Assert.Equal(GuestStopMethod.Kill, method);
            Assert.False(ProcessLiveness.IsAlive(HostRoots.Default, g.Id, null));
            Assert.False(Directory.Exists(g.RunDirectory));
        }
        finally
        {
            GuestLauncher.kill(g.Id, 18); // SIGCONT, so the fixture's SIGKILL is not left pending on a stopped process
        }
    }

    [Fact]
    public async Task Stagger_Waits_With_Progress()
    {
        var obs = new RecordingObserver();
        var sw = Stopwatch.StartNew();
        await GuestLauncher.StaggerAsync(TimeSpan.FromMilliseconds(1200), "next", obs, CancellationToken.None);
        Assert.True(sw.Elapsed >= TimeSpan.FromMilliseconds(1150));
        Assert.Contains(obs.Progresses, p => !p.Completed && p.Status.Contains("next"));
        Assert.True(obs.Progresses[^1].Completed);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => GuestLauncher.StaggerAsync(TimeSpan.FromSeconds(30), "x", obs, new CancellationTokenSource(100).Token));
    }
}
