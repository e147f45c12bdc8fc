using System.Text.Json;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>One option of a QEMU command line, e.g. <c>-drive</c> with its value (null for flags like <c>-enable-kvm</c>).</summary>
public sealed record QemuArgument(string Option, string? Value);

/// <summary>
/// What a QEMU command line says about the guest: parsed the way QEMU parses it (option table, comma syntax with
/// <c>,,</c> escapes, implied keys), so guests started by hand (the blog's <c>/usr/bin/kvm -M pc-1.0 -smp 2 …</c> loop)
/// are understood as well as those Start-KvmGuest launches.
/// </summary>
public sealed class QemuCommandLine
{
    /// <summary>QEMU's default guest RAM when -m is absent (128 MiB).</summary>
    public const long DefaultMemoryBytes = 128 * Units.MiB;

    /// <summary>Options that take no argument. Every other option takes one (as in QEMU's qemu-options table).</summary>
    static readonly HashSet<string> Flags = new(StringComparer.Ordinal)
    {
        "S", "s", "snapshot", "nographic", "daemonize", "enable-kvm", "no-kvm", "no-reboot", "no-shutdown", "nodefaults",
        "no-user-config", "nodefconfig", "usb", "no-hpet", "no-acpi", "full-screen", "portrait", "ctrl-grab", "alt-grab",
        "no-frame", "no-quit", "sdl", "curses", "preconfig", "only-migratable", "no-fd-bootchk", "win2k-hack",
        "rtc-td-hack", "no-kvm-irqchip", "no-kvm-pit", "no-kvm-pit-reinjection", "xen-attach", "version", "help", "h",
        "enable-fips", "semihosting", "mem-prealloc", "singlestep", "qmp-pretty-flag", "old-param", "no-frame",
        "show-cursor", "enable-sync-profile", "nouserconfig", "no-graphic", "perfmon", "writeconfig-none",
    };

    QemuCommandLine(string executable, IReadOnlyList<QemuArgument> arguments)
    {
        Executable = executable;
        Arguments = arguments;
    }

    /// <summary>argv[0] as the process was started (e.g. /usr/bin/kvm, qemu-system-x86_64).</summary>
    public string Executable { get; }

    /// <summary>Every option in order; positional arguments (a bare disk image, QEMU's legacy -hda) have Option "".</summary>
    public IReadOnlyList<QemuArgument> Arguments { get; }

    /// <summary>True when argv[0] names a QEMU system emulator: qemu-system-*, kvm, qemu-kvm (any folder).</summary>
    public static bool IsQemuExecutable(string? argv0)
    {
        if (string.IsNullOrEmpty(argv0)) return false;
        var name = argv0;
        int slash = name.LastIndexOf('/');
        if (slash >= 0) name = name.Substring(slash + 1);
        return name.StartsWith("qemu-system-", StringComparison.Ordinal) || name is "kvm" or "qemu-kvm" or "qemu-system";
    }

    /// <summary>Parses argv (as in /proc/&lt;pid&gt;/cmdline: argv[0] first).</summary>
    public static QemuCommandLine Parse(IReadOnlyList<string> argv)
    {
        if (argv.Count == 0) return new QemuCommandLine("", Array.Empty<QemuArgument>());
        var args = new List<QemuArgument>();
        for (int i = 1; i < argv.Count; i++)
        {
            string a = argv[i];
            if (a.Length > 1 && a[0] == '-')
            {
                string opt = a.StartsWith("--", StringComparison.Ordinal) ? a.Substring(2) : a.Substring(1);
                if (Flags.Contains(opt) || i + 1 >= argv.Count) args.Add(new QemuArgument(opt, null));
                else args.Add(new QemuArgument(opt, argv[++i]));
            }
            else
            {
                args.Add(new QemuArgument("", a));
            }
        }
        return new QemuCommandLine(argv[0], args);
    }

    /// <summary>The values of every occurrence of an option, in order.</summary>
    public IEnumerable<string> Values(string option)
    {
        foreach (var a in Arguments)
            if (a.Option == option && a.Value is not null) yield return a.Value;
    }

    /// <summary>The last value of an option (QEMU: the last one wins), or null.</summary>
    public string? Last(string option)
    {
        string? v = null;
        foreach (var a in Arguments)
            if (a.Option == option && a.Value is not null) v = a.Value;
        return v;
    }

    /// <summary>True when the flag is present.</summary>
    public bool Has(string option) => Arguments.Any(a => a.Option == option);

    /// <summary>-name: <c>NAME</c>, <c>guest=NAME,debug-threads=on</c>; null when absent.</summary>
    public string? Name
    {
        get
        {
            var v = Last("name");
            if (v is null) return null;
            var name = QemuOptionString.Get(QemuOptionString.Parse(v, "guest"), "guest");
            return string.IsNullOrEmpty(name) ? null : name;
        }
    }

    /// <summary>Guest RAM from -m (<c>4048</c> MiB, <c>4G</c>, <c>size=4G,slots=2,maxmem=8G</c>); QEMU's 128 MiB default when absent.</summary>
    public long MemoryBytes
    {
        get
        {
            var v = Last("m");
            if (v is null) return DefaultMemoryBytes;
            var size = QemuOptionString.Get(QemuOptionString.Parse(v, "size"), "size");
            return size is null ? DefaultMemoryBytes : QemuOptionString.ParseMemorySize(size) ?? DefaultMemoryBytes;
        }
    }

    /// <summary>vCPUs from -smp (<c>2</c>, <c>cpus=4,sockets=2</c>, or the topology product when cpus is omitted); 1 when absent.</summary>
    public int CpuCount
    {
        get
        {
            var v = Last("smp");
            if (v is null) return 1;
            var p = QemuOptionString.Parse(v, "cpus");
            if (int.TryParse(QemuOptionString.Get(p, "cpus"), out int cpus) && cpus > 0) return cpus;
            long product = 1;
            bool any = false;
            foreach (var key in new[] { "sockets", "dies", "clusters", "cores", "threads" })
            {
                if (int.TryParse(QemuOptionString.Get(p, key), out int n) && n > 0) { product *= n; any = true; }
            }
            if (any) return (int)Math.Min(product, int.MaxValue);
            if (int.TryParse(QemuOptionString.Get(p, "maxcpus"), out int max) && max > 0) return max;
            return 1;
        }
    }

    /// <summary>Machine type from -M / -machine (<c>pc-1.0</c>, <c>type=q35,accel=kvm</c>), or null.</summary>
    public string? MachineType
    {
        get
        {
            string? type = null;
            foreach (var a in Arguments)
            {
                if (a.Value is null || a.Option is not ("M" or "machine")) continue;
                var t = QemuOptionString.Get(QemuOptionString.Parse(a.Value, "type"), "type");
                if (!string.IsNullOrEmpty(t)) type = t;
            }
            return type;
        }
    }

    /// <summary>
    /// The accelerator asked for: <c>-enable-kvm</c>, <c>-accel kvm</c>, <c>-machine accel=kvm:tcg</c> (the first
    /// choice); a kvm/qemu-kvm binary means kvm; otherwise QEMU's default, tcg.
    /// </summary>
    public string Accelerator
    {
        get
        {
            foreach (var a in Arguments)
            {
                if (a.Option == "enable-kvm") return "kvm";
                if (a.Option == "accel" && a.Value is not null)
                {
                    var acc = QemuOptionString.Get(QemuOptionString.Parse(a.Value, "accel"), "accel");
                    if (!string.IsNullOrEmpty(acc)) return acc;
                }
                if (a.Option is "M" or "machine" && a.Value is not null)
                {
                    var acc = QemuOptionString.Get(QemuOptionString.Parse(a.Value, "type"), "accel");
                    if (!string.IsNullOrEmpty(acc)) return acc.Split(':')[0];
                }
            }
            var exe = Executable.Substring(Executable.LastIndexOf('/') + 1);
            return exe is "kvm" or "qemu-kvm" ? "kvm" : "tcg";
        }
    }

    /// <summary>
    /// Disk image files, in command-line order: -drive file=… (not CD-ROMs), -hda…-hdd, a bare positional image,
    /// and -blockdev filename=… (key=value or JSON syntax).
    /// </summary>
    public string[] Disks
    {
        get
        {
            var disks = new List<string>();
            foreach (var a in Arguments)
            {
                if (a.Value is null) continue;
                switch (a.Option)
                {
                    case "drive":
                        var p = QemuOptionString.Parse(a.Value);
                        var file = QemuOptionString.Get(p, "file");
                        if (!string.IsNullOrEmpty(file) && QemuOptionString.Get(p, "media") != "cdrom") disks.Add(file);
                        break;
                    case "hda" or "hdb" or "hdc" or "hdd" or "":
                        disks.Add(a.Value);
                        break;
                    case "blockdev":
                        foreach (var f in BlockdevFilenames(a.Value)) disks.Add(f);
                        break;
                }
            }
            return disks.ToArray();
        }
    }

    static IEnumerable<string> BlockdevFilenames(string value)
    {
        if (value.TrimStart().StartsWith('{'))
        {
            var found = new List<string>();
            try
            {
                using var doc = JsonDocument.Parse(value);
                Collect(doc.RootElement, found);
            }
            catch (JsonException) { }
            return found;
        }
        var p = QemuOptionString.Parse(value);
        return p.Where(kv => kv.Key == "filename" || kv.Key.EndsWith(".filename", StringComparison.Ordinal)).Select(kv => kv.Value).ToList();

        static void Collect(JsonElement e, List<string> found)
        {
            if (e.ValueKind != JsonValueKind.Object) return;
            foreach (var prop in e.EnumerateObject())
            {
                if (prop.Name == "filename" && prop.Value.ValueKind == JsonValueKind.String) found.Add(prop.Value.GetString()!);
                else Collect(prop.Value, found);
            }
        }
    }

    /// <summary>The raw -vnc value (<c>:3</c>, <c>127.0.0.1:5,password=on</c>, <c>unix:/run/vnc.sock</c>), or from -display vnc=…; null when absent.</summary>
    public string? Vnc
    {
        get
        {
            var v = Last("vnc");
            if (v is not null) return QemuOptionString.Get(QemuOptionString.Parse(v, "vnc"), "vnc");
            var d = Last("display");
            if (d is null) return null;
            return QemuOptionString.Get(QemuOptionString.Parse(d, "type"), "vnc");
        }
    }

    /// <summary>The VNC display number (<c>:3</c> → 3, <c>127.0.0.1:5</c> → 5); null for none, unix sockets or no VNC.</summary>
    public int? VncDisplay
    {
        get
        {
            var v = Vnc;
            if (v is null || v.StartsWith("unix:", StringComparison.Ordinal) || v == "none") return null;
            int colon = v.LastIndexOf(':');
            if (colon < 0) return null;
            return int.TryParse(v.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) ? n : null;
        }
    }

    /// <summary>
    /// The unix socket path of the first QMP monitor: <c>-qmp unix:PATH,server=on,wait=off</c> (also the legacy
    /// <c>unix:PATH,server,nowait</c>), or <c>-chardev socket,id=X,path=PATH</c> with <c>-mon chardev=X,mode=control</c>.
    /// </summary>
    public string? QmpSocket
    {
        get
        {
            foreach (var a in Arguments)
            {
                if (a.Value is null) continue;
                if (a.Option is "qmp" or "qmp-pretty")
                {
                    var first = QemuOptionString.Parse(a.Value, "path");
                    var path = QemuOptionString.Get(first, "path");
                    if (path is not null && path.StartsWith("unix:", StringComparison.Ordinal)) return path.Substring(5);
                }
                if (a.Option == "mon")
                {
                    var p = QemuOptionString.Parse(a.Value, "chardev");
                    if (QemuOptionString.Get(p, "mode") != "control") continue;
                    var id = QemuOptionString.Get(p, "chardev");
                    if (id is null) continue;
                    foreach (var c in Values("chardev"))
                    {
                        var cp = QemuOptionString.Parse(c, "backend");
                        if (QemuOptionString.Get(cp, "backend") is "socket" or "unix" && QemuOptionString.Get(cp, "id") == id && QemuOptionString.Get(cp, "path") is { } sock)
                            return sock;
                    }
                }
            }
            return null;
        }
    }

    /// <summary>MAC addresses: -net nic,macaddr=…, -nic …,mac=…, -device …,mac=….</summary>
    public string[] MacAddresses
    {
        get
        {
            var macs = new List<string>();
            foreach (var a in Arguments)
            {
                if (a.Value is null) continue;
                string? mac = a.Option switch
                {
                    "net" => QemuOptionString.Get(QemuOptionString.Parse(a.Value, "type"), "macaddr"),
                    "nic" => QemuOptionString.Get(QemuOptionString.Parse(a.Value, "type"), "mac"),
                    "device" => QemuOptionString.Get(QemuOptionString.Parse(a.Value, "driver"), "mac"),
                    _ => null,
                };
                if (!string.IsNullOrEmpty(mac)) macs.Add(mac.ToLowerInvariant());
            }
            return macs.ToArray();
        }
    }

    /// <summary>Network back-ends: the types of -netdev, -nic and -net (except <c>nic</c>), e.g. user, tap, bridge.</summary>
    public string[] Networks
    {
        get
        {
            var nets = new List<string>();
            foreach (var a in Arguments)
            {
                if (a.Value is null || a.Option is not ("netdev" or "nic" or "net")) continue;
                var type = QemuOptionString.Get(QemuOptionString.Parse(a.Value, "type"), "type");
                if (!string.IsNullOrEmpty(type) && type != "nic") nets.Add(type);
            }
            return nets.ToArray();
        }
    }

    /// <summary>The serial console log: <c>-serial file:PATH</c>, or a <c>-chardev file,path=PATH</c> used by -serial chardev:ID; null otherwise.</summary>
    public string? SerialLog
    {
        get
        {
            foreach (var v in Values("serial"))
            {
                if (v.StartsWith("file:", StringComparison.Ordinal)) return v.Substring(5);
                if (v.StartsWith("chardev:", StringComparison.Ordinal))
                {
                    var id = v.Substring(8);
                    foreach (var c in Values("chardev"))
                    {
                        var cp = QemuOptionString.Parse(c, "backend");
                        if (QemuOptionString.Get(cp, "backend") == "file" && QemuOptionString.Get(cp, "id") == id) return QemuOptionString.Get(cp, "path");
                    }
                }
            }
            return null;
        }
    }

    /// <summary>
    /// The guest's run directory: the folder that holds both its QMP socket (named qmp.sock) and its pid file, as
    /// Start-KvmGuest lays a guest out; null for guests started otherwise.
    /// </summary>
    public string? RunDirectory
    {
        get
        {
            var qmp = QmpSocket;
            var pid = PidFile;
            if (qmp is null || pid is null || Path.GetFileName(qmp) != "qmp.sock") return null;
            var dir = Path.GetDirectoryName(qmp);
            return !string.IsNullOrEmpty(dir) && dir == Path.GetDirectoryName(pid) ? dir : null;
        }
    }

    /// <summary>-pidfile PATH, or null.</summary>
    public string? PidFile => Last("pidfile");

    /// <summary>True when started with -daemonize.</summary>
    public bool Daemonize => Has("daemonize");

    /// <summary>True when a balloon device is configured (-device virtio-balloon*, or the legacy -balloon virtio).</summary>
    public bool HasBalloon => Arguments.Any(a => a.Value is not null &&
        (a.Option == "device" && (QemuOptionString.Get(QemuOptionString.Parse(a.Value, "driver"), "driver") ?? "").StartsWith("virtio-balloon", StringComparison.Ordinal)
         || a.Option == "balloon" && a.Value.StartsWith("virtio", StringComparison.Ordinal)));

    /// <summary>
    /// Whether KSM may merge the guest's RAM: <c>-machine …,mem-merge=off</c> (or <c>-M</c>; the last setting wins) turns
    /// it off; QEMU's default is on.
    /// </summary>
    public bool MemoryMerge
    {
        get
        {
            bool merge = true;
            foreach (var a in Arguments)
            {
                if (a.Value is null || a.Option is not ("M" or "machine")) continue;
                if (QemuOptionString.Get(QemuOptionString.Parse(a.Value, "type"), "mem-merge") is { } v && ParseBool(v) is { } b) merge = b;
            }
            return merge;
        }
    }

    /// <summary>The balloon's free-page-reporting (QEMU's default off); null without a balloon device.</summary>
    public bool? BalloonFreePageReporting => BalloonBool("free-page-reporting");

    /// <summary>The balloon's deflate-on-oom (QEMU's default off); null without a balloon device.</summary>
    public bool? BalloonDeflateOnOom => BalloonBool("deflate-on-oom");

    bool? BalloonBool(string key)
    {
        bool? result = null;
        foreach (var a in Arguments)
        {
            if (a.Value is null) continue;
            if (a.Option == "balloon" && a.Value.StartsWith("virtio", StringComparison.Ordinal)) { result ??= false; continue; }
            if (a.Option != "device") continue;
            var p = QemuOptionString.Parse(a.Value, "driver");
            if (!(QemuOptionString.Get(p, "driver") ?? "").StartsWith("virtio-balloon", StringComparison.Ordinal)) continue;
            result = QemuOptionString.Get(p, key) is { } v && ParseBool(v) == true;
        }
        return result;
    }

    /// <summary>QEMU's boolean spellings: on/off, yes/no, true/false (y/n); null for anything else.</summary>
    static bool? ParseBool(string v) => v.ToLowerInvariant() switch
    {
        "on" or "yes" or "true" or "y" => true,
        "off" or "no" or "false" or "n" => false,
        _ => null,
    };

    /// <summary>The guest's name: -name, else the first disk's file name without extension, else <c>qemu-&lt;pid&gt;</c>.</summary>
    public string GuestName(int pid)
    {
        var name = Name;
        if (name is not null) return name;
        var disks = Disks;
        if (disks.Length > 0)
        {
            var n = Path.GetFileNameWithoutExtension(disks[0]);
            if (!string.IsNullOrEmpty(n)) return n;
        }
        return $"qemu-{pid}";
    }
}
