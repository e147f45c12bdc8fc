using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace KvmOvercommit.Engine.Io;

/// <summary>The counters of /proc/&lt;pid&gt;/io.</summary>
public sealed class ProcessIoCounters
{
    /// <summary>rchar: bytes passed to read-like syscalls (page cache hits included).</summary>
    public ulong ReadChars { get; set; }
    /// <summary>wchar: bytes passed to write-like syscalls.</summary>
    public ulong WriteChars { get; set; }
    /// <summary>syscr: read-like syscalls.</summary>
    public ulong ReadSyscalls { get; set; }
    /// <summary>syscw: write-like syscalls.</summary>
    public ulong WriteSyscalls { get; set; }
    /// <summary>read_bytes: bytes this process caused to be fetched from storage.</summary>
    public ulong ReadBytes { get; set; }
    /// <summary>write_bytes: bytes this process caused to be sent to storage (dirtied or written directly).</summary>
    public ulong WriteBytes { get; set; }
    /// <summary>cancelled_write_bytes: dirtied bytes later truncated away.</summary>
    public ulong CancelledWriteBytes { get; set; }

    /// <summary>Parses "key: value" lines; null when none of the keys is present.</summary>
    public static ProcessIoCounters? Parse(string? text)
    {
        if (text is null) return null;
        var c = new ProcessIoCounters();
        bool any = false;
        foreach (var line in text.Split('\n'))
        {
            int colon = line.IndexOf(':');
            if (colon < 0 || !ulong.TryParse(line.AsSpan(colon + 1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong v)) continue;
            any = true;
            switch (line[..colon].Trim())
            {
                case "rchar": c.ReadChars = v; break;
                case "wchar": c.WriteChars = v; break;
                case "syscr": c.ReadSyscalls = v; break;
                case "syscw": c.WriteSyscalls = v; break;
                case "read_bytes": c.ReadBytes = v; break;
                case "write_bytes": c.WriteBytes = v; break;
                case "cancelled_write_bytes": c.CancelledWriteBytes = v; break;
            }
        }
        return any ? c : null;
    }
}

/// <summary>One device line of a cgroup v2 io.stat file.</summary>
public sealed class CgroupIoStat
{
    /// <summary>MAJ:MIN of the device.</summary>
    public string DeviceNumber { get; set; } = "";
    /// <summary>rbytes.</summary>
    public ulong ReadBytes { get; set; }
    /// <summary>wbytes.</summary>
    public ulong WriteBytes { get; set; }
    /// <summary>rios: read requests that reached the device.</summary>
    public ulong ReadIos { get; set; }
    /// <summary>wios: write requests that reached the device.</summary>
    public ulong WriteIos { get; set; }
    /// <summary>dbytes.</summary>
    public ulong DiscardBytes { get; set; }
    /// <summary>dios.</summary>
    public ulong DiscardIos { get; set; }

    /// <summary>Parses io.stat ("8:0 rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…" per line).</summary>
    public static List<CgroupIoStat> Parse(string? text)
    {
        var list = new List<CgroupIoStat>();
        if (text is null) return list;
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0 || !parts[0].Contains(':')) continue;
            var s = new CgroupIoStat { DeviceNumber = parts[0] };
            foreach (var kv in parts.Skip(1))
            {
                int eq = kv.IndexOf('=');
                if (eq < 0 || !ulong.TryParse(kv.AsSpan(eq + 1), NumberStyles.None, CultureInfo.InvariantCulture, out ulong v)) continue;
                switch (kv[..eq])
                {
                    case "rbytes": s.ReadBytes = v; break;
                    case "wbytes": s.WriteBytes = v; break;
                    case "rios": s.ReadIos = v; break;
                    case "wios": s.WriteIos = v; break;
                    case "dbytes": s.DiscardBytes = v; break;
                    case "dios": s.DiscardIos = v; break;
                }
            }
            list.Add(s);
        }
        return list;
    }
}

/// <summary>One process over one interval: /proc/&lt;pid&gt;/io deltas and, where available, its cgroup's io.stat deltas.</summary>
public sealed class ProcessIops
{
    /// <summary>Process name (comm), or the guest name for a QEMU with -name.</summary>
    public string Name { get; set; } = "";
    /// <summary>Process id.</summary>
    public int Id { get; set; }
    /// <summary>Read-like syscalls per second (/proc/pid/io syscr). I/O submitted with libaio or io_uring is not counted here.</summary>
    public double ReadSyscallsPerSec { get; set; }
    /// <summary>Write-like syscalls per second (/proc/pid/io syscw). I/O submitted with libaio or io_uring is not counted here.</summary>
    public double WriteSyscallsPerSec { get; set; }
    /// <summary>Bytes per second fetched from storage on this process's behalf (/proc/pid/io read_bytes).</summary>
    public double ReadBytesPerSec { get; set; }
    /// <summary>Bytes per second sent (or dirtied) to storage (/proc/pid/io write_bytes) — counts libaio/direct I/O too.</summary>
    public double WriteBytesPerSec { get; set; }
    /// <summary>Bytes per second passed to read syscalls, cache hits included (/proc/pid/io rchar).</summary>
    public double ReadCharsPerSec { get; set; }
    /// <summary>Bytes per second passed to write syscalls (/proc/pid/io wchar).</summary>
    public double WriteCharsPerSec { get; set; }
    /// <summary>Read requests per second that reached block devices, from the process's own cgroup v2 io.stat (true IOPS); null when that is not available.</summary>
    public double? ReadIopsPerSec { get; set; }
    /// <summary>Write requests per second from the cgroup's io.stat; null when not available.</summary>
    public double? WriteIopsPerSec { get; set; }
    /// <summary>ReadIopsPerSec + WriteIopsPerSec, or null.</summary>
    public double? Iops { get; set; }
    /// <summary>The cgroup whose io.stat was read (relative to the cgroup v2 root), or null.</summary>
    public string? Cgroup { get; set; }
    /// <summary>Where each figure came from, e.g. "ReadSyscallsPerSec=/proc/1234/io:syscr".</summary>
    public string[] Source { get; set; } = Array.Empty<string>();
    /// <summary>Caveats about these figures (libaio not in syscall counters; no per-process IOPS without a cgroup).</summary>
    public string[] Note { get; set; } = Array.Empty<string>();
    /// <summary>The exact elapsed time between the two readings, in seconds.</summary>
    public double IntervalSeconds { get; set; }
    /// <summary>When the second reading was taken (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
    /// <summary>1 for the first interval, 2 for the next…</summary>
    public int Sample { get; set; }
    /// <summary>ReadBytesPerSec in MiB/s.</summary>
    public double ReadMiBPerSec => Math.Round(ReadBytesPerSec / Units.MiB, 3);
    /// <summary>WriteBytesPerSec in MiB/s.</summary>
    public double WriteMiBPerSec => Math.Round(WriteBytesPerSec / Units.MiB, 3);
}

/// <summary>A process to sample.</summary>
public sealed record ProcessTarget(int Id, string Name);

/// <summary>
/// Measure-ProcessIops: /proc/&lt;pid&gt;/io deltas per process, plus the process's cgroup v2 io.stat when the
/// process sits alone in a cgroup with the io controller (a QEMU in its own systemd scope does): rios/wios there are
/// the requests that reached the device, the only true per-process IOPS Linux offers.
/// </summary>
public sealed class ProcessIopsSampler
{
    /// <summary>Said in every result: why syscall counts are not IOPS.</summary>
    public const string LibaioNote = "I/O submitted through libaio or io_uring (QEMU's aio=native, fio --ioengine=libaio) does not show in the syscall counters (syscr/syscw/rchar/wchar); read_bytes/write_bytes do count it.";

    readonly HostRoots _roots;
    readonly Func<TimeSpan, CancellationToken, Task> _delay;

    /// <summary>Creates a sampler over <paramref name="roots"/>; <paramref name="delay"/> replaces Task.Delay in tests.</summary>
    public ProcessIopsSampler(HostRoots? roots = null, Func<TimeSpan, CancellationToken, Task>? delay = null)
    {
        _roots = roots ?? HostRoots.Default;
        _delay = delay ?? ((t, ct) => Task.Delay(t, ct));
    }

    /// <summary>The cgroup v2 root (the unified mount: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).</summary>
    public string? CgroupV2Root()
    {
        foreach (var dir in new[] { Path.Combine(_roots.Sys, "fs", "cgroup"), Path.Combine(_roots.Sys, "fs", "cgroup", "unified") })
            if (File.Exists(Path.Combine(dir, "cgroup.controllers"))) return dir;
        return null;
    }

    /// <summary>
    /// The process's cgroup v2 path (the "0::/…" line of /proc/pid/cgroup) when io.stat exists there and the process
    /// is the only one in it; otherwise null and the reason.
    /// </summary>
    public (string? Relative, string? IoStatPath, string? Reason) FindOwnIoCgroup(int pid)
    {
        var text = TryRead(_roots.Pid(pid, "cgroup"));
        var line = text?.Split('\n').FirstOrDefault(l => l.StartsWith("0::", StringComparison.Ordinal));
        if (line is null) return (null, null, "the process is in no cgroup v2 hierarchy");
        var rel = line[3..].Trim();
        var root = CgroupV2Root();
        if (root is null) return (rel, null, "no cgroup v2 hierarchy is mounted");
        var dir = Path.Combine(root, rel.TrimStart('/'));
        var ioStat = Path.Combine(dir, "io.stat");
        if (!File.Exists(ioStat)) return (rel, null, $"cgroup {rel} has no io controller (no io.stat)");
        var procs = TryRead(Path.Combine(dir, "cgroup.procs"))?.Split('\n', StringSplitOptions.RemoveEmptyEntries) ?? Array.Empty<string>();
        if (procs.Length != 1 || procs[0].Trim() != pid.ToString(CultureInfo.InvariantCulture))
            return (rel, null, $"cgroup {rel} holds {procs.Length} processes, so its io.stat is not this process's alone");
        return (rel, ioStat, null);
    }

    /// <summary>Processes by id and/or name (wildcards against comm and, for QEMU, the guest name). Unknown literal ids or names → NotFound.</summary>
    public List<ProcessTarget> Resolve(IEnumerable<int>? ids, IEnumerable<string>? names)
    {
        var result = new List<ProcessTarget>();
        foreach (var id in ids ?? Enumerable.Empty<int>())
        {
            var comm = TryRead(_roots.Pid(id, "comm"))?.Trim();
            if (comm is null)
                throw new KvmOcException(ErrorKind.NotFound, "ProcessNotFound", $"No process with id {id}.", id, "Check the id with Get-Process or Get-KvmGuest.");
            if (result.All(t => t.Id != id)) result.Add(new ProcessTarget(id, GuestNameOr(id, comm)));
        }
        var patterns = names?.ToList();
        if (patterns is { Count: > 0 })
        {
            var all = ListProcesses();
            foreach (var p in patterns)
            {
                var w = new Wildcard(p);
                var hits = all.Where(t => w.IsMatch(t.Name) || w.IsMatch(t.Comm)).ToList();
                if (hits.Count == 0 && !Wildcard.ContainsWildcard(p))
                    throw new KvmOcException(ErrorKind.NotFound, "ProcessNotFound", $"No process named '{p}'.", p, "Use the process name (comm) or a QEMU guest's -name; wildcards work.");
                foreach (var h in hits)
                    if (result.All(t => t.Id != h.Id)) result.Add(new ProcessTarget(h.Id, h.Name));
            }
        }
        return result;
    }

    List<(int Id, string Comm, string Name)> ListProcesses()
    {
        var list = new List<(int, string, string)>();
        foreach (var dir in Directory.EnumerateDirectories(_roots.Proc))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
            var comm = TryRead(Path.Combine(dir, "comm"))?.Trim();
            if (comm is null) continue;
            list.Add((pid, comm, GuestNameOr(pid, comm)));
        }
        return list;
    }

    string GuestNameOr(int pid, string comm)
    {
        var argv = TryRead(_roots.Pid(pid, "cmdline"))?.Split('\0', StringSplitOptions.RemoveEmptyEntries);
        if (argv is null || argv.Length == 0 || !Qemu.QemuCommandLine.IsQemuExecutable(argv[0])) return comm;
        return Qemu.QemuCommandLine.Parse(argv).Name ?? comm;
    }

    internal sealed record Reading(ProcessIoCounters? Io, List<CgroupIoStat>? Cg, long Ticks);

    internal Reading ReadOne(int pid, string? ioStatPath)
    {
        var io = ProcessIoCounters.Parse(TryRead(_roots.Pid(pid, "io")));
        var cg = ioStatPath is null ? null : CgroupIoStat.Parse(TryRead(ioStatPath));
        return new Reading(io, cg, Stopwatch.GetTimestamp());
    }

    /// <summary>Streams one object per process per interval. A process that exits is reported once as a warning and dropped.</summary>
    public async IAsyncEnumerable<ProcessIops> SampleAsync(IReadOnlyList<ProcessTarget> targets, TimeSpan interval, int? count, IOperationObserver? observer = null, [EnumeratorCancellation] CancellationToken ct = default)
    {
        observer ??= NullObserver.Instance;
        Validation.Interval(interval);
        Validation.Count(count);
        var state = new List<(ProcessTarget T, string? Cg, string? IoStat, Reading Prev)>();
        foreach (var t in targets)
        {
            var (rel, ioStat, reason) = FindOwnIoCgroup(t.Id);
            if (reason is not null) observer.Verbose($"{t.Name} ({t.Id}): no per-process IOPS from io.stat: {reason}.");
            var first = ReadOne(t.Id, ioStat);
            if (first.Io is null)
            {
                observer.Warning($"Cannot read /proc/{t.Id}/io ({t.Name}): the process exited or belongs to another user (run as root).");
                continue;
            }
            state.Add((t, ioStat is null ? null : rel, ioStat, first));
        }
        if (state.Count == 0) yield break;
        long start = Stopwatch.GetTimestamp();
        for (int i = 1; count is null || i <= count; i++)
        {
            await _delay(Schedule.NextDue(start, interval), ct).ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
            var now = DateTimeOffset.UtcNow;
            for (int k = 0; k < state.Count; k++)
            {
                var s = state[k];
                var cur = ReadOne(s.T.Id, s.IoStat);
                if (cur.Io is null)
                {
                    observer.Warning($"Process {s.T.Id} ({s.T.Name}) exited.");
                    state.RemoveAt(k--);
                    continue;
                }
                var r = Compute(s.T, s.Prev.Io!, cur.Io, s.Prev.Cg, cur.Cg, Stopwatch.GetElapsedTime(s.Prev.Ticks, cur.Ticks).TotalSeconds, now, s.Cg);
                r.Sample = i;
                state[k] = (s.T, s.Cg, s.IoStat, cur);
                yield return r;
            }
            if (state.Count == 0) yield break;
        }
    }

    /// <summary>
    /// One process read on demand (the experiment samples QEMUs side by side with guests and the device): each
    /// <see cref="ProcessIoTracker.Next"/> returns the rates since the previous call, as <see cref="SampleAsync"/> would.
    /// </summary>
    public ProcessIoTracker? Track(ProcessTarget target)
    {
        var (rel, ioStat, _) = FindOwnIoCgroup(target.Id);
        var first = ReadOne(target.Id, ioStat);
        return first.Io is null ? null : new ProcessIoTracker(this, target, ioStat is null ? null : rel, ioStat, first);
    }

    /// <summary>See <see cref="Track"/>.</summary>
    public sealed class ProcessIoTracker
    {
        readonly ProcessIopsSampler _owner;
        readonly ProcessTarget _target;
        readonly string? _cgroup, _ioStat;
        Reading _prev;
        int _sample;

        internal ProcessIoTracker(ProcessIopsSampler owner, ProcessTarget target, string? cgroup, string? ioStat, Reading first)
        {
            _owner = owner; _target = target; _cgroup = cgroup; _ioStat = ioStat; _prev = first;
        }

        /// <summary>The rates since the previous reading; null once the process is gone.</summary>
        public ProcessIops? Next()
        {
            var cur = _owner.ReadOne(_target.Id, _ioStat);
            if (cur.Io is null) return null;
            var r = Compute(_target, _prev.Io!, cur.Io, _prev.Cg, cur.Cg, Stopwatch.GetElapsedTime(_prev.Ticks, cur.Ticks).TotalSeconds, DateTimeOffset.UtcNow, _cgroup);
            r.Sample = ++_sample;
            _prev = cur;
            return r;
        }
    }

    /// <summary>Rates for one process between two readings.</summary>
    public static ProcessIops Compute(ProcessTarget t, ProcessIoCounters a, ProcessIoCounters b, List<CgroupIoStat>? cgA, List<CgroupIoStat>? cgB, double seconds, DateTimeOffset timestamp, string? cgroup)
    {
        double Rate(ulong before, ulong after) => seconds > 0 ? DeviceIopsSampler.Delta(before, after) / seconds : 0;
        string io = $"/proc/{t.Id}/io";
        var r = new ProcessIops
        {
            Name = t.Name,
            Id = t.Id,
            ReadSyscallsPerSec = Rate(a.ReadSyscalls, b.ReadSyscalls),
            WriteSyscallsPerSec = Rate(a.WriteSyscalls, b.WriteSyscalls),
            ReadBytesPerSec = Rate(a.ReadBytes, b.ReadBytes),
            WriteBytesPerSec = Rate(a.WriteBytes, b.WriteBytes),
            ReadCharsPerSec = Rate(a.ReadChars, b.ReadChars),
            WriteCharsPerSec = Rate(a.WriteChars, b.WriteChars),
            IntervalSeconds = seconds,
            Timestamp = timestamp,
        };
        var sources = new List<string>
        {
            $"ReadSyscallsPerSec={io}:syscr", $"WriteSyscallsPerSec={io}:syscw",
            $"ReadBytesPerSec={io}:read_bytes", $"WriteBytesPerSec={io}:write_bytes",
            $"ReadCharsPerSec={io}:rchar", $"WriteCharsPerSec={io}:wchar",
        };
        var notes = new List<string> { LibaioNote };
        if (cgA is not null && cgB is not null && cgroup is not null)
        {
            ulong Sum(List<CgroupIoStat> l, Func<CgroupIoStat, ulong> f) => l.Aggregate(0UL, (acc, x) => acc + f(x));
            // Devices that appear only in the second reading started from zero.
            r.ReadIopsPerSec = Rate(Sum(cgA, x => x.ReadIos), Sum(cgB, x => x.ReadIos));
            r.WriteIopsPerSec = Rate(Sum(cgA, x => x.WriteIos), Sum(cgB, x => x.WriteIos));
            r.Iops = r.ReadIopsPerSec + r.WriteIopsPerSec;
            r.Cgroup = cgroup;
            sources.Add($"ReadIopsPerSec=cgroup {cgroup} io.stat:rios");
            sources.Add($"WriteIopsPerSec=cgroup {cgroup} io.stat:wios");
        }
        else
        {
            notes.Add("No per-process IOPS: the process is not alone in a cgroup v2 with the io controller (start the guest in its own scope, e.g. systemd-run --scope -p IOAccounting=yes, for true IOPS).");
        }
        r.Source = sources.ToArray();
        r.Note = notes.ToArray();
        return r;
    }

    static string? TryRead(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
