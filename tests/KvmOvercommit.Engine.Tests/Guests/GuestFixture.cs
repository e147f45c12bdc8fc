using System.Diagnostics;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Guests;

/// <summary>
/// Starts guests for a test and guarantees they end: Dispose kills every QEMU whose name it handed out (by pid, also when
/// the test failed half-way) and removes the temporary run root and disks.
/// </summary>
sealed class GuestFixture : IDisposable
{
    readonly List<string> _names = new();
    public TempDir Dir { get; }
    public string RunRoot { get; }
    public TinyGuestImage Image { get; }

    GuestFixture(TinyGuestImage image, string? runRoot)
    {
        Dir = new TempDir("kvmoc-g");
        RunRoot = runRoot ?? Path.Combine(Dir.Path, "run");
        Image = image;
    }

    public static async Task<GuestFixture> CreateAsync(string? runRoot = null)
    {
        Prereq.RequireTool("qemu-system-x86_64");
        Prereq.RequireTool("qemu-img");
        Prereq.RequireTool("apt-get");
        Prereq.Require(File.Exists("/bin/busybox"), "busybox-static");
        var image = await TinyGuest.GetAsync(null, NullObserver.Instance);
        return new GuestFixture(image, runRoot);
    }

    /// <summary>A unique guest name (tracked for cleanup).</summary>
    public string Name(string stem)
    {
        var n = $"{stem}-{Guid.NewGuid().ToString("N")[..6]}";
        _names.Add(n);
        return n;
    }

    public GuestStartOptions TinyOptions(string name, string? disk = null, string? kernelArgs = null) => new()
    {
        Name = name,
        DiskPath = disk,
        MemoryMB = 128,
        CpuCount = 1,
        Accelerator = GuestAccelerator.Tcg,
        Kernel = Image.Kernel,
        Initrd = Image.Initrd,
        KernelArguments = "quiet " + (kernelArgs ?? ""),
        Network = GuestNetwork.None,
        RunDirectory = RunRoot,
    };

    public async Task<KvmGuest> StartAsync(GuestStartOptions o)
    {
        if (o.Name is not null && !_names.Contains(o.Name)) _names.Add(o.Name);
        return await GuestLauncher.StartAsync(GuestLauncher.Plan(o, NullObserver.Instance), NullObserver.Instance);
    }

    public async Task<KvmGuest> StartAsync(GuestLaunchPlan plan, IOperationObserver observer)
    {
        if (!_names.Contains(plan.Name)) _names.Add(plan.Name);
        return await GuestLauncher.StartAsync(plan, observer);
    }

    public static async Task WaitForSerialAsync(KvmGuest g, string marker, TimeSpan? timeout = null)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < (timeout ?? TimeSpan.FromSeconds(90)))
        {
            if (File.Exists(g.SerialLog) && File.ReadAllText(g.SerialLog!).Contains(marker)) return;
            await Task.Delay(100);
        }
        throw new Xunit.Sdk.XunitException($"guest {g.Name} printed no '{marker}' within {sw.Elapsed.TotalSeconds:0} s: {(File.Exists(g.SerialLog) ? File.ReadAllText(g.SerialLog!) : "(no log)")}");
    }

    public string CreateDisk(string path, string? backing = null, string size = "32M")
    {
        var args = backing is null ? new[] { "create", "-q", "-f", "qcow2", path, size } : new[] { "create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", path };
        var psi = new ProcessStartInfo("qemu-img") { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException("qemu-img: " + err);
        return path;
    }

    /// <summary>QEMU processes that carry one of this fixture's names.</summary>
    public List<KvmGuest> Running() => new QemuProcessScanner().Scan().Where(p => _names.Contains(p.Name)).ToList();

    public void Dispose()
    {
        foreach (var p in Running())
        {
            GuestLauncher.kill(p.Id, 9);
        }
        var sw = Stopwatch.StartNew();
        while (Running().Count > 0 && sw.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(50);
        try { if (Directory.Exists(RunRoot)) Directory.Delete(RunRoot, true); } catch (IOException) { }
        Dir.Dispose();
    }
}
