using System.Security.Cryptography;
using System.Text;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// A tiny bootable guest: a kernel and an initramfs. Kernel and Initrd bind by property name into Start-KvmGuest.
/// </summary>
public sealed class TinyGuestImage
{
    /// <summary>The kernel image (vmlinuz) to boot with QEMU's -kernel.</summary>
    public string Kernel { get; set; } = "";

    /// <summary>The initramfs (newc cpio) to boot with QEMU's -initrd.</summary>
    public string Initrd { get; set; } = "";

    /// <summary>The kernel release, e.g. 6.1.0-56-cloud-amd64.</summary>
    public string KernelVersion { get; set; } = "";

    /// <summary>The folder holding the cached kernel and initramfs.</summary>
    public string CacheDirectory { get; set; } = "";

    /// <summary>The line the guest prints on its serial console when it is ready.</summary>
    public string ReadyMarker { get; set; } = TinyGuestInit.ReadyMarker;

    /// <summary>Kernel modules in the initramfs, in load order.</summary>
    public string[] Modules { get; set; } = Array.Empty<string>();

    /// <summary>Size of the initramfs in bytes.</summary>
    public long InitrdBytes { get; set; }

    /// <summary>True when this call built (part of) the image; false when everything came from the cache.</summary>
    public bool Built { get; set; }

    /// <summary>Basic, or Fleet (DHCP + SSH for Ansible).</summary>
    public TinyGuestVariant Variant { get; set; }
}

/// <summary>Options for <see cref="TinyGuest.GetAsync"/>.</summary>
public sealed class TinyGuestOptions
{
    /// <summary>Root of the cache; default $XDG_CACHE_HOME/kvmovercommit/tiny-guest or ~/.cache/kvmovercommit/tiny-guest.</summary>
    public string? CacheRoot { get; set; }

    /// <summary>The Debian meta package whose versioned kernel package is used.</summary>
    public string Package { get; set; } = "linux-image-cloud-amd64";

    /// <summary>Rebuild even when the cache has an image.</summary>
    public bool Force { get; set; }

    /// <summary>The static busybox to put in the initramfs.</summary>
    public string Busybox { get; set; } = "/bin/busybox";

    /// <summary>Basic (the default), or Fleet: a guest with DHCP (udhcpc, sending its name) and an SSH server (dropbear) for Ansible.</summary>
    public TinyGuestVariant Variant { get; set; } = TinyGuestVariant.Basic;
}

/// <summary>Which tiny guest Get-KvmTinyGuest builds.</summary>
public enum TinyGuestVariant
{
    /// <summary>Kernel + busybox: fill, I/O loops, ready marker, ACPI power-off.</summary>
    Basic,
    /// <summary>The basic guest plus a virtio NIC brought up with busybox udhcpc (sending kvmoc.name= as its host name) and dropbear accepting the public key in kvmoc.sshkey= (so `ansible -m raw` reaches it; there is no Python, so `-m ping` does not).</summary>
    Fleet,
}

/// <summary>
/// Builds and caches the tiny guest: the kernel from Debian's cloud kernel package (apt-get download + dpkg -x, no
/// install, no root) and an initramfs written here (newc cpio) from busybox-static, the virtio modules and an init
/// script that prints <see cref="TinyGuestInit.ReadyMarker"/> on the serial console.
/// </summary>
public static class TinyGuest
{
    /// <summary>The default cache root.</summary>
    public static string DefaultCacheRoot
    {
        get
        {
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            var baseDir = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(baseDir, "kvmovercommit", "tiny-guest");
        }
    }

    /// <summary>Returns the cached image, building what is missing.</summary>
    public static async Task<TinyGuestImage> GetAsync(TinyGuestOptions? options, IOperationObserver observer, CancellationToken ct = default)
    {
        options ??= new TinyGuestOptions();
        if (options.Variant == TinyGuestVariant.Fleet) return await TinyGuestFleet.GetAsync(options, observer, ct).ConfigureAwait(false);
        var root = options.CacheRoot ?? DefaultCacheRoot;
        var busybox = CheckBusybox(options.Busybox);
        var initHash = InitHash(busybox);
        var kver = await ResolveKernelVersionAsync(options.Package, root, observer, ct).ConfigureAwait(false);
        var dir = Path.Combine(root, kver);
        var kernel = Path.Combine(dir, "vmlinuz");
        var modulesDir = Path.Combine(dir, "modules");
        var initrd = Path.Combine(dir, $"initrd-{initHash}.cpio");
        bool built = false;
        try
        {
            Directory.CreateDirectory(dir);
            if (options.Force || !File.Exists(kernel) || !Directory.Exists(modulesDir))
            {
                await FetchKernelAsync(kver, dir, observer, ct).ConfigureAwait(false);
                built = true;
            }
            if (options.Force || !File.Exists(initrd))
            {
                observer.Progress(new ProgressInfo("Tiny guest", "Writing the initramfs"));
                BuildInitramfs(initrd, busybox, modulesDir);
                // Other initramfs versions (another checkout's init script) may be in use by a test or an experiment
                // starting guests right now: only those untouched for a day are removed.
                foreach (var old in Directory.GetFiles(dir, "initrd-*.cpio").Where(f => f != initrd && File.GetLastWriteTimeUtc(f) < DateTime.UtcNow.AddDays(-1))) File.Delete(old);
                built = true;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "TinyGuestCacheFailed", $"Cannot write the tiny guest cache '{dir}'", dir);
        }
        finally
        {
            observer.Progress(new ProgressInfo("Tiny guest", "Done", Completed: true));
        }
        observer.Verbose($"Tiny guest: kernel {kernel}, initramfs {initrd}");
        return new TinyGuestImage
        {
            Kernel = kernel,
            Initrd = initrd,
            KernelVersion = kver,
            CacheDirectory = dir,
            Modules = TinyGuestInit.Modules.Where(m => File.Exists(Path.Combine(modulesDir, m + ".ko"))).ToArray(),
            InitrdBytes = new FileInfo(initrd).Length,
            Built = built,
        };
    }

    static string CheckBusybox(string path)
    {
        if (!File.Exists(path))
            throw new KvmOcException(ErrorKind.NotInstalled, "BusyboxNotInstalled", $"busybox is not installed ('{path}' is missing); the tiny guest's initramfs is made from it.", path, "Install it: apt-get install busybox-static");
        if (IsDynamicElf(path))
            throw new KvmOcException(ErrorKind.NotInstalled, "BusyboxNotStatic", $"'{path}' is dynamically linked; the initramfs has no C library, so it needs a static busybox.", path, "Install it: apt-get install busybox-static");
        return path;
    }

    /// <summary>True when the ELF file has a PT_INTERP program header (needs a dynamic loader).</summary>
    internal static bool IsDynamicElf(string path)
    {
        using var f = File.OpenRead(path);
        var h = new byte[64];
        if (f.Read(h, 0, 64) < 64 || h[0] != 0x7F || h[1] != (byte)'E' || h[4] != 2) return false;
        long phoff = BitConverter.ToInt64(h, 0x20);
        int phentsize = BitConverter.ToUInt16(h, 0x36), phnum = BitConverter.ToUInt16(h, 0x38);
        var ph = new byte[phentsize];
        for (int i = 0; i < phnum; i++)
        {
            f.Position = phoff + (long)i * phentsize;
            if (f.Read(ph, 0, phentsize) < 4) return false;
            if (BitConverter.ToUInt32(ph, 0) == 3) return true;
        }
        return false;
    }

    static string InitHash(string busybox)
    {
        var fi = new FileInfo(busybox);
        var text = TinyGuestInit.Render() + "|" + string.Join(',', TinyGuestInit.Modules) + $"|{fi.Length}|{fi.LastWriteTimeUtc.Ticks}|v1";
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..12].ToLowerInvariant();
    }

    /// <summary>linux-image-cloud-amd64 → its versioned dependency → the kernel release.</summary>
    static async Task<string> ResolveKernelVersionAsync(string package, string root, IOperationObserver observer, CancellationToken ct)
    {
        var aptCache = ToolRunner.Which("apt-cache");
        if (aptCache is null)
        {
            var cached = CachedVersion(root);
            if (cached is not null) return cached;
            throw new KvmOcException(ErrorKind.NotInstalled, "AptNotInstalled", "The tiny guest's kernel comes from Debian's cloud kernel package, but apt-cache is not installed.", "apt-cache",
                "Use a Debian or Ubuntu host with apt and dpkg, or place vmlinuz and modules/ under " + root + "/<version>/.");
        }
        var r = await ToolRunner.RunAsync(aptCache, new[] { "depends", package }, null, ct).ConfigureAwait(false);
        var prefix = "linux-image-";
        var dep = r.StdOut.Split('\n').Select(l => l.Trim())
            .Where(l => l.StartsWith("Depends:", StringComparison.Ordinal))
            .Select(l => l["Depends:".Length..].Trim().TrimStart('|'))
            .FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal) && char.IsDigit(l[prefix.Length]));
        if (r.ExitCode != 0 || dep is null)
        {
            var cached = CachedVersion(root);
            if (cached is not null)
            {
                observer.Warning($"apt-cache does not know {package} ({r.Message}); using the cached kernel {cached}.");
                return cached;
            }
            throw new KvmOcException(ErrorKind.NotFound, "KernelPackageNotFound", $"apt-cache does not name a versioned kernel for '{package}': {r.Message}", package,
                "Run apt-get update (the package lists may be empty) on a Debian host.");
        }
        observer.Verbose($"{package} depends on {dep}");
        return dep[prefix.Length..];
    }

    static string? CachedVersion(string root) => Directory.Exists(root)
        ? Directory.GetDirectories(root).Where(d => File.Exists(Path.Combine(d, "vmlinuz"))).Select(Path.GetFileName).OrderByDescending(n => n, StringComparer.Ordinal).FirstOrDefault()
        : null;

    static async Task FetchKernelAsync(string kver, string dir, IOperationObserver observer, CancellationToken ct)
    {
        var aptGet = ToolRunner.Require("apt-get", "apt");
        var dpkgDeb = ToolRunner.Require("dpkg-deb", "dpkg");
        var pkg = "linux-image-" + kver;
        var tmp = Path.Combine(dir, ".build-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(tmp);
        try
        {
            observer.Progress(new ProgressInfo("Tiny guest", $"Downloading {pkg}"));
            var args = new List<string> { "download", "-q" };
            if (IsRoot) args.AddRange(new[] { "-o", "APT::Sandbox::User=root" });
            args.Add(pkg);
            observer.Verbose($"apt-get {string.Join(' ', args)} (in {tmp})");
            var r = await ToolRunner.RunAsync(aptGet, args, tmp, ct).ConfigureAwait(false);
            var deb = Directory.GetFiles(tmp, "*.deb").FirstOrDefault();
            if (r.ExitCode != 0 || deb is null)
                throw new KvmOcException(ErrorKind.NotFound, "KernelDownloadFailed", $"apt-get download {pkg} failed: {r.Message}", pkg, "Run apt-get update and check the network.");
            observer.Progress(new ProgressInfo("Tiny guest", $"Unpacking {Path.GetFileName(deb)}"));
            var x = Path.Combine(tmp, "x");
            r = await ToolRunner.RunAsync(dpkgDeb, new[] { "-x", deb, x }, tmp, ct).ConfigureAwait(false);
            if (r.ExitCode != 0)
                throw new KvmOcException(ErrorKind.InvalidData, "KernelUnpackFailed", $"dpkg-deb -x {deb} failed: {r.Message}", deb);
            var vmlinuz = Path.Combine(x, "boot", "vmlinuz-" + kver);
            if (!File.Exists(vmlinuz))
                throw new KvmOcException(ErrorKind.InvalidData, "KernelNotInPackage", $"{pkg} has no boot/vmlinuz-{kver}.", deb);
            var modRoot = Path.Combine(x, "lib", "modules", kver, "kernel");
            var modsTmp = Path.Combine(tmp, "modules");
            Directory.CreateDirectory(modsTmp);
            foreach (var m in TinyGuestInit.Modules)
                await CopyModuleAsync(modRoot, m, modsTmp, ct).ConfigureAwait(false);
            // Replace atomically enough: modules first, the kernel last (its presence marks a complete cache).
            var kernel = Path.Combine(dir, "vmlinuz");
            if (File.Exists(kernel)) File.Delete(kernel);
            var modulesDir = Path.Combine(dir, "modules");
            if (Directory.Exists(modulesDir)) Directory.Delete(modulesDir, true);
            Directory.Move(modsTmp, modulesDir);
            File.Move(vmlinuz, kernel);
        }
        finally
        {
            try { Directory.Delete(tmp, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Finds module <paramref name="name"/> (.ko, .ko.xz, .ko.zst, .ko.gz) and stores it uncompressed.</summary>
    internal static async Task CopyModuleAsync(string modRoot, string name, string destDir, CancellationToken ct)
    {
        if (!Directory.Exists(modRoot)) return;
        var candidates = Directory.EnumerateFiles(modRoot, name + ".ko*", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) is var n && (n == name + ".ko" || n.StartsWith(name + ".ko.", StringComparison.Ordinal))).ToList();
        var src = candidates.FirstOrDefault();
        if (src is null) return; // built into this kernel, or not needed
        var dest = Path.Combine(destDir, name + ".ko");
        if (src.EndsWith(".ko", StringComparison.Ordinal))
        {
            File.Copy(src, dest, true);
            return;
        }
        var ext = Path.GetExtension(src);
        var (tool, pkg) = ext switch { ".xz" => ("xz", "xz-utils"), ".zst" => ("zstd", "zstd"), _ => ("gzip", "gzip") };
        var exe = ToolRunner.Which(tool);
        var args = new List<string> { "-d", "-c", src };
        if (exe is null && ext is ".xz" or ".gz" && File.Exists("/bin/busybox"))
        {
            exe = "/bin/busybox";
            args.Insert(0, ext == ".xz" ? "xz" : "gzip");
        }
        if (exe is null) ToolRunner.Require(tool, pkg);
        var psi = new System.Diagnostics.ProcessStartInfo(exe!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        await using var fs = File.Create(dest);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync(ct);
        await p.StandardOutput.BaseStream.CopyToAsync(fs, ct).ConfigureAwait(false);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        if (p.ExitCode != 0) throw new KvmOcException(ErrorKind.InvalidData, "ModuleUnpackFailed", $"Cannot decompress {src}: {(await err.ConfigureAwait(false)).Trim()}", src);
    }

    static void BuildInitramfs(string dest, string busybox, string modulesDir)
    {
        var tmp = dest + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var w = new CpioWriter(File.Create(tmp)))
            {
                foreach (var d in new[] { "bin", "dev", "proc", "sys", "tmp", "fill", "lib", "lib/modules" })
                    w.Directory(d);
                w.CharDevice("dev/console", 5, 1);
                w.CharDevice("dev/null", 1, 3, 0x1B6);
                w.File("bin/busybox", File.ReadAllBytes(busybox), 0x1ED);
                foreach (var applet in BusyboxApplets(busybox))
                    w.Symlink("bin/" + applet, "busybox");
                foreach (var m in TinyGuestInit.Modules)
                {
                    var ko = Path.Combine(modulesDir, m + ".ko");
                    if (File.Exists(ko)) w.File($"lib/modules/{m}.ko", File.ReadAllBytes(ko));
                }
                w.File("init", Encoding.UTF8.GetBytes(TinyGuestInit.Render()), 0x1ED);
                w.Finish();
            }
            File.Move(tmp, dest, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>The applets busybox provides (busybox --list), so each gets a /bin symlink.</summary>
    internal static IEnumerable<string> BusyboxApplets(string busybox)
    {
        var r = ToolRunner.RunAsync(busybox, new[] { "--list" }).GetAwaiter().GetResult();
        var list = r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(a => a != "busybox" && !a.Contains('/')).ToList();
        if (r.ExitCode != 0 || !list.Contains("sh"))
            throw new KvmOcException(ErrorKind.InvalidData, "BusyboxUnusable", $"'{busybox} --list' did not list the sh applet: {r.Message}", busybox, "Install it: apt-get install busybox-static");
        return list;
    }

    static bool IsRoot => geteuid() == 0;

    [System.Runtime.InteropServices.DllImport("libc")] static extern uint geteuid();
}
