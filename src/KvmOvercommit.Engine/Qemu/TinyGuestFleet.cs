using System.Security.Cryptography;
using System.Text;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// The fleet variant of the tiny guest (Get-KvmTinyGuest -Variant Fleet): the basic guest's kernel, plus virtio-net,
/// busybox udhcpc and Debian's dropbear (dropbear-bin, libtomcrypt1, libtommath1 fetched with apt-get download and
/// unpacked with dpkg-deb -x like the kernel; libz, libcrypt, libc and the loader copied from this host), so a guest
/// on a bridge with dnsmasq gets a lease under its own name and Ansible reaches it over SSH (`-m raw`: no Python).
/// Kernel arguments: kvmoc.name=NAME (the DHCP host name), kvmoc.sshkey=TYPE,BASE64[,COMMENT] (root's authorized key,
/// spaces written as commas), plus the basic guest's kvmoc.io=… and kvmoc.quiet.
/// </summary>
public static class TinyGuestFleet
{
    /// <summary>Extra kernel modules of the fleet guest, in load order (after the basic guest's).</summary>
    public static readonly string[] NetModules = { "af_packet", "failover", "net_failover", "virtio_net" };

    /// <summary>The Debian packages unpacked for dropbear.</summary>
    public static readonly string[] Packages = { "dropbear-bin", "libtomcrypt1", "libtommath1" };

    /// <summary>
    /// The libraries dropbear loads, as ldd resolves them with the unpacked packages first (LD_LIBRARY_PATH): path in
    /// the initramfs → file to copy (libtomcrypt, libtommath from the packages; libgmp, libz, libcrypt, libc and the
    /// loader from this host).
    /// </summary>
    static List<(string Target, string Source)> Libraries(string bundle)
    {
        var dropbear = Path.Combine(bundle, "usr", "sbin", "dropbear");
        var libDir = Path.Combine(bundle, "usr", "lib", "x86_64-linux-gnu");
        var ldd = ToolRunner.Require("ldd", "libc-bin");
        var r = ToolRunner.RunAsync(ldd, new[] { dropbear }, null, default, new Dictionary<string, string> { ["LD_LIBRARY_PATH"] = libDir }).GetAwaiter().GetResult();
        var list = new List<(string, string)>();
        foreach (var raw in r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var line = raw;
            int paren = line.LastIndexOf(" (", StringComparison.Ordinal);
            if (paren > 0) line = line[..paren];
            if (line.Contains("not found", StringComparison.Ordinal))
                throw new KvmOcException(ErrorKind.NotInstalled, "LibraryMissing", $"dropbear needs a library this host lacks: {raw}", raw, "The fleet guest is built on Debian 12 (x86-64) from dropbear-bin's dependencies: apt-get install libgmp10 zlib1g libcrypt1");
            int arrow = line.IndexOf(" => ", StringComparison.Ordinal);
            if (arrow > 0) list.Add(("lib/x86_64-linux-gnu/" + line[..arrow].Trim(), line[(arrow + 4)..].Trim()));
            else if (line.StartsWith('/')) list.Add((line.TrimStart('/'), line)); // the loader
        }
        if (r.ExitCode != 0 || !list.Any(l => l.Item1.Contains("libc.so", StringComparison.Ordinal)))
            throw new KvmOcException(ErrorKind.InvalidData, "LibraryMissing", $"ldd {dropbear} did not list libc: {r.Message}", dropbear);
        return list;
    }

    /// <summary>Spaces of an OpenSSH public key line as commas, for the kernel command line (kvmoc.sshkey=…).</summary>
    public static string KernelArgumentForKey(string publicKeyLine)
    {
        var key = publicKeyLine.Trim();
        if (key.Length == 0 || key.Contains(',') || key.Contains('\n') || !key.StartsWith("ssh-", StringComparison.Ordinal) && !key.StartsWith("ecdsa-", StringComparison.Ordinal))
            throw new KvmOcException(ErrorKind.InvalidArgument, "SshKeyInvalid", "The public key must be one OpenSSH line such as 'ssh-ed25519 AAAA… comment' (without commas).", publicKeyLine);
        return "kvmoc.sshkey=" + string.Join(',', key.Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }

    /// <summary>Builds (once) and returns the fleet guest.</summary>
    public static async Task<TinyGuestImage> GetAsync(TinyGuestOptions options, IOperationObserver observer, CancellationToken ct)
    {
        var basic = await TinyGuest.GetAsync(new TinyGuestOptions { CacheRoot = options.CacheRoot, Package = options.Package, Force = options.Force, Busybox = options.Busybox }, observer, ct).ConfigureAwait(false);
        var dir = Path.Combine(basic.CacheDirectory, "fleet");
        var modules = Path.Combine(dir, "modules");
        var bundle = Path.Combine(dir, "dropbear");
        bool built = basic.Built;
        try
        {
            Directory.CreateDirectory(dir);
            if (options.Force || !Directory.Exists(modules))
            {
                await FetchNetModulesAsync(basic.KernelVersion, dir, modules, observer, ct).ConfigureAwait(false);
                built = true;
            }
            if (options.Force || !File.Exists(Path.Combine(bundle, "usr", "sbin", "dropbear")))
            {
                await FetchDropbearAsync(dir, bundle, observer, ct).ConfigureAwait(false);
                built = true;
            }
            var libs = Libraries(bundle);
            var hash = Hash(options.Busybox, libs);
            var initrd = Path.Combine(basic.CacheDirectory, $"fleet-initrd-{hash}.cpio");
            if (options.Force || !File.Exists(initrd))
            {
                observer.Progress(new ProgressInfo("Tiny guest", "Writing the fleet initramfs"));
                Build(initrd, options.Busybox, Path.Combine(basic.CacheDirectory, "modules"), modules, bundle, libs);
                foreach (var old in Directory.GetFiles(basic.CacheDirectory, "fleet-initrd-*.cpio").Where(f => f != initrd))
                    try { File.Delete(old); } catch (IOException) { }
                built = true;
            }
            observer.Progress(new ProgressInfo("Tiny guest", "Done", Completed: true));
            return new TinyGuestImage
            {
                Kernel = basic.Kernel,
                Initrd = initrd,
                KernelVersion = basic.KernelVersion,
                CacheDirectory = basic.CacheDirectory,
                Modules = basic.Modules.Concat(NetModules.Where(m => File.Exists(Path.Combine(modules, m + ".ko")))).ToArray(),
                InitrdBytes = new FileInfo(initrd).Length,
                Built = built,
                Variant = TinyGuestVariant.Fleet,
            };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "TinyGuestCacheFailed", $"Cannot write the fleet guest cache '{dir}'", dir);
        }
    }

    static string Hash(string busybox, List<(string Target, string Source)> libs)
    {
        var fi = new FileInfo(busybox);
        var text = Script + DhcpScript + "|" + string.Join(',', TinyGuestInit.Modules.Concat(NetModules)) + $"|{fi.Length}|{fi.LastWriteTimeUtc.Ticks}|"
            + string.Join(',', libs.Select(l => $"{l.Target}={l.Source}:{new FileInfo(l.Source).Length}")) + "|fleet-v1";
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..12].ToLowerInvariant();
    }

    static async Task<string> DownloadAsync(string tmp, IEnumerable<string> packages, IOperationObserver observer, CancellationToken ct)
    {
        var aptGet = ToolRunner.Require("apt-get", "apt");
        Directory.CreateDirectory(tmp);
        var args = new List<string> { "download", "-q" };
        if (geteuid() == 0) args.AddRange(new[] { "-o", "APT::Sandbox::User=root" });
        args.AddRange(packages);
        observer.Verbose($"apt-get {string.Join(' ', args)} (in {tmp})");
        var r = await ToolRunner.RunAsync(aptGet, args, tmp, ct).ConfigureAwait(false);
        if (r.ExitCode != 0)
            throw new KvmOcException(ErrorKind.NotFound, "PackageDownloadFailed", $"apt-get download {string.Join(' ', packages)} failed: {r.Message}", string.Join(' ', packages), "Run apt-get update and check the network.");
        return tmp;
    }

    static async Task UnpackAllAsync(string tmp, string dest, CancellationToken ct)
    {
        var dpkgDeb = ToolRunner.Require("dpkg-deb", "dpkg");
        foreach (var deb in Directory.GetFiles(tmp, "*.deb"))
        {
            var r = await ToolRunner.RunAsync(dpkgDeb, new[] { "-x", deb, dest }, tmp, ct).ConfigureAwait(false);
            if (r.ExitCode != 0) throw new KvmOcException(ErrorKind.InvalidData, "PackageUnpackFailed", $"dpkg-deb -x {deb} failed: {r.Message}", deb);
        }
    }

    static async Task FetchNetModulesAsync(string kver, string dir, string modules, IOperationObserver observer, CancellationToken ct)
    {
        var tmp = Path.Combine(dir, ".build-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            observer.Progress(new ProgressInfo("Tiny guest", $"Downloading linux-image-{kver} for virtio-net"));
            await DownloadAsync(tmp, new[] { "linux-image-" + kver }, observer, ct).ConfigureAwait(false);
            var x = Path.Combine(tmp, "x");
            await UnpackAllAsync(tmp, x, ct).ConfigureAwait(false);
            var modRoot = Path.Combine(x, "lib", "modules", kver, "kernel");
            var modsTmp = Path.Combine(tmp, "modules");
            Directory.CreateDirectory(modsTmp);
            foreach (var m in NetModules) await TinyGuest.CopyModuleAsync(modRoot, m, modsTmp, ct).ConfigureAwait(false);
            if (!File.Exists(Path.Combine(modsTmp, "virtio_net.ko")) && !Directory.Exists(modRoot))
                throw new KvmOcException(ErrorKind.InvalidData, "KernelNotInPackage", $"linux-image-{kver} has no modules folder.", kver);
            if (Directory.Exists(modules)) Directory.Delete(modules, true);
            Directory.Move(modsTmp, modules);
        }
        finally { try { Directory.Delete(tmp, true); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
    }

    static async Task FetchDropbearAsync(string dir, string bundle, IOperationObserver observer, CancellationToken ct)
    {
        var tmp = Path.Combine(dir, ".build-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            observer.Progress(new ProgressInfo("Tiny guest", "Downloading dropbear"));
            await DownloadAsync(tmp, Packages, observer, ct).ConfigureAwait(false);
            var x = Path.Combine(tmp, "x");
            await UnpackAllAsync(tmp, x, ct).ConfigureAwait(false);
            if (!File.Exists(Path.Combine(x, "usr", "sbin", "dropbear")))
                throw new KvmOcException(ErrorKind.InvalidData, "DropbearNotInPackage", "dropbear-bin has no usr/sbin/dropbear.", "dropbear-bin");
            if (Directory.Exists(bundle)) Directory.Delete(bundle, true);
            Directory.Move(x, bundle);
        }
        finally { try { Directory.Delete(tmp, true); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
    }

    static void Build(string dest, string busybox, string basicModules, string netModules, string bundle, List<(string Target, string Source)> libs)
    {
        var tmp = dest + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var w = new CpioWriter(File.Create(tmp)))
            {
                foreach (var d in new[] { "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "fill", "lib", "lib/modules", "lib64", "lib/x86_64-linux-gnu", "etc", "etc/dropbear", "root", "var", "var/log", "run" })
                    w.Directory(d);
                w.CharDevice("dev/console", 5, 1);
                w.CharDevice("dev/null", 1, 3, 0x1B6);
                w.File("bin/busybox", File.ReadAllBytes(busybox), 0x1ED);
                foreach (var applet in TinyGuest.BusyboxApplets(busybox))
                    w.Symlink("bin/" + applet, "busybox");
                foreach (var m in TinyGuestInit.Modules)
                    if (File.Exists(Path.Combine(basicModules, m + ".ko"))) w.File($"lib/modules/{m}.ko", File.ReadAllBytes(Path.Combine(basicModules, m + ".ko")));
                foreach (var m in NetModules)
                    if (File.Exists(Path.Combine(netModules, m + ".ko"))) w.File($"lib/modules/{m}.ko", File.ReadAllBytes(Path.Combine(netModules, m + ".ko")));
                w.File("usr/sbin/dropbear", File.ReadAllBytes(Path.Combine(bundle, "usr", "sbin", "dropbear")), 0x1ED);
                foreach (var (target, source) in libs)
                    w.File(target, File.ReadAllBytes(source), 0x1ED); // ReadAllBytes follows the soname symlink
                w.File("etc/passwd", Encoding.UTF8.GetBytes("root:x:0:0:root:/root:/bin/sh\n"));
                w.File("etc/group", Encoding.UTF8.GetBytes("root:x:0:\n"));
                w.File("etc/shells", Encoding.UTF8.GetBytes("/bin/sh\n"));
                w.File("etc/udhcpc.script", Encoding.UTF8.GetBytes(DhcpScript), 0x1ED);
                w.File("init", Encoding.UTF8.GetBytes(Render()), 0x1ED);
                w.Finish();
            }
            File.Move(tmp, dest, overwrite: true);
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }

    /// <summary>busybox udhcpc's event script: sets the leased address (and a default route when the server gives one).</summary>
    const string DhcpScript = """
#!/bin/sh
case "$1" in
  deconfig) ifconfig "$interface" 0.0.0.0 up ;;
  bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    [ -n "$router" ] && { route del default 2>/dev/null; route add default gw "${router%% *}" dev "$interface"; }
    echo "kvmoc: lease $ip on $interface" > /dev/console ;;
esac
exit 0
""";

    /// <summary>The fleet guest's /init.</summary>
    public const string Script = """
#!/bin/sh
# kvmoc fleet tiny guest init. Kernel arguments:
#   kvmoc.name=NAME            host name sent with DHCP (udhcpc -x hostname:NAME)
#   kvmoc.sshkey=TYPE,KEY[,C]  root's authorized key for dropbear (spaces as commas)
#   kvmoc.io=read|write|rw     keep reading and/or writing the first 1 MiB of /dev/vda (O_DIRECT) in a loop
#   kvmoc.quiet                print nothing but the ready line
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
name=kvmoc-fleet; key=; io=; quiet=
for a in $(cat /proc/cmdline); do
  case "$a" in
    kvmoc.name=*) name="${a#kvmoc.name=}" ;;
    kvmoc.sshkey=*) key="${a#kvmoc.sshkey=}" ;;
    kvmoc.io=*) io="${a#kvmoc.io=}" ;;
    kvmoc.quiet) quiet=1 ;;
  esac
done
say() { [ -n "$quiet" ] || echo "kvmoc: $*"; }
off() { say "powering off"; sync; poweroff -f; }
trap off TERM PWR USR2
for m in @MODULES@; do
  [ -f "/lib/modules/$m.ko" ] && { insmod "/lib/modules/$m.ko" 2>/dev/null || say "insmod $m failed"; }
done
for e in /sys/class/input/event*; do
  [ -e "$e/device/name" ] || continue
  case "$(cat "$e/device/name")" in
    *"Power Button"*) ( dd if="/dev/input/${e##*/}" of=/dev/null bs=24 count=1 2>/dev/null && off ) & ;;
  esac
done
hostname "$name"
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do usleep 50000; n=$((n+1)); done
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  udhcpc -f -i eth0 -s /etc/udhcpc.script -x "hostname:$name" -T 1 -t 120 -A 1 >/dev/null 2>&1 &
  say "dhcp on eth0 as $name"
else
  say "no eth0"
fi
if [ -n "$key" ]; then
  mkdir -p /root/.ssh && chmod 700 /root /root/.ssh
  echo "$key" | tr ',' ' ' > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
fi
dropbear -R -E -s -p 22 2>/var/log/dropbear.log && say "dropbear on port 22" || say "dropbear failed: $(cat /var/log/dropbear.log)"
disk=
for d in /sys/bus/pci/devices/*; do
  case "$(cat "$d/vendor" 2>/dev/null):$(cat "$d/device" 2>/dev/null)" in
    0x1af4:0x1001|0x1af4:0x1042) disk=1 ;;
  esac
done
if [ -n "$disk" ]; then
  n=0
  while [ ! -b /dev/vda ] && [ $n -lt 200 ]; do usleep 50000; n=$((n+1)); done
fi
if [ -n "$io" ] && [ -b /dev/vda ]; then
  (
    while :; do
      case "$io" in read|rw) dd if=/dev/vda of=/dev/null bs=4096 count=256 iflag=direct 2>/dev/null ;; esac
      case "$io" in write|rw) dd if=/dev/zero of=/dev/vda bs=4096 count=256 oflag=direct conv=fsync 2>/dev/null ;; esac
    done
  ) &
  say "io $io on /dev/vda"
fi
echo "@READY@"
while :; do sleep 3600 & wait $!; done
""";

    /// <summary>The script with the module list and ready marker filled in.</summary>
    public static string Render() => Script.Replace("@MODULES@", string.Join(' ', TinyGuestInit.Modules.Concat(NetModules)), StringComparison.Ordinal)
        .Replace("@READY@", TinyGuestInit.ReadyMarker, StringComparison.Ordinal);

    [System.Runtime.InteropServices.DllImport("libc")] static extern uint geteuid();
}
