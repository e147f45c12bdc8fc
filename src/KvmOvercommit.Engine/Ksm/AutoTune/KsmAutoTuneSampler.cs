using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace KvmOvercommit.Engine.Ksm.AutoTune;

/// <summary>
/// Reads one <see cref="KsmAutoTuneObservation"/> from the kernel as cheaply as polling four to ten times a second
/// needs: the KSM counters through file handles kept open (sysfs re-generates a file on every read at offset 0),
/// /proc/&lt;pid&gt;/ksm_stat of the processes that matter (mergeable ones every tick; new ones every tick for their
/// first seconds, when QEMU or a workload madvises; all others every few seconds), statm of the mergeable ones,
/// /proc/meminfo and ksmd's /proc/&lt;pid&gt;/stat. Nothing is parsed into strings on the hot path.
/// </summary>
public sealed class KsmAutoTuneSampler : IDisposable
{
    static readonly string[] Counters = { "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans", "pages_scanned", "pages_skipped" };

    readonly HostRoots _roots;
    readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    readonly SafeFileHandle?[] _counters = new SafeFileHandle?[Counters.Length];
    readonly Dictionary<int, Tracked> _procs = new();
    readonly byte[] _buf = new byte[8192];
    int? _ksmdPid;
    bool _first = true;
    long? _lastPid;
    TimeSpan _lastListing;
    TimeSpan _lastSlowRead = TimeSpan.MinValue / 2;
    long _memTotal, _memAvailable;
    double? _ksmdCpu;

    sealed class Tracked
    {
        public TimeSpan FirstSeen, LastChecked;
        public bool Mergeable;
        public long RmapItems, Resident;
        public readonly Queue<(long Ticks, TimeSpan At)> Cpu = new();
        public TimeSpan CpuAt = TimeSpan.MinValue / 2;
        public double? CpuFraction;
    }

    /// <summary>A sampler over the given (or the real) kernel files.</summary>
    public KsmAutoTuneSampler(HostRoots? roots = null)
    {
        _roots = roots ?? HostRoots.Default;
        for (int i = 0; i < Counters.Length; i++)
        {
            try { _counters[i] = File.OpenHandle(Path.Combine(_roots.Ksm, Counters[i])); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { _counters[i] = null; }
        }
    }

    /// <summary>Non-mergeable processes younger than this are re-checked every tick (they may madvise any moment).</summary>
    public TimeSpan YoungProcessAge { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Non-mergeable processes younger than this are re-checked every tick; from then until
    /// <see cref="YoungProcessAge"/> once a second (a busy host starts dozens of short-lived processes a second).
    /// </summary>
    public TimeSpan NewProcessAge { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>MemAvailable and ksmd's CPU time are read at most this often (the policy needs neither every tick).</summary>
    public TimeSpan SlowReadInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Older non-mergeable processes are re-checked this often.</summary>
    public TimeSpan RecheckInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The mergeable processes' ksm_stat and statm are re-read at most this often (zero: every reading). The tuner sets
    /// it: the policy needs them only for memory growth and exits, while the KSM counters it needs every tick are
    /// six preads; with 24 guests the per-process files were most of the tuner's own CPU.
    /// </summary>
    public TimeSpan ProcessReadInterval { get; set; } = TimeSpan.Zero;

    /// <summary>
    /// List /proc at most this often even when processes were created (zero: whenever loadavg's last pid moved). The
    /// tuner sets it while bursting, when a new process would only join a burst that is running anyway: on a busy host
    /// (compilers starting every few milliseconds) the listing was most of the tuner's own CPU.
    /// </summary>
    public TimeSpan ListingInterval { get; set; } = TimeSpan.Zero;

    /// <summary>
    /// The mergeable processes' CPU time is read this often (null: with their ksm_stat, every
    /// <see cref="ProcessReadInterval"/>). The tuner sets 100 ms while bursting: a guest's QEMU goes from a full core to
    /// nothing the moment it has booted, and reading every 0.5 s found that up to 1 s late.
    /// </summary>
    public TimeSpan? CpuReadInterval { get; set; }

    /// <summary>
    /// A process's CPU fraction is taken over at least this long (between its newest reading and the newest one at least
    /// this old): at USER_HZ 100, one tick is 2% of a core over 0.5 s, so the 5% busy line is 2.5 ticks.
    /// </summary>
    public TimeSpan CpuWindow { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Takes a reading. Elapsed is measured from the sampler's creation.</summary>
    public KsmAutoTuneObservation Read()
    {
        var now = _clock.Elapsed;
        var o = new KsmAutoTuneObservation
        {
            Elapsed = now,
            PagesShared = Counter(0) ?? 0,
            PagesSharing = Counter(1) ?? 0,
            PagesUnshared = Counter(2) ?? 0,
            PagesVolatile = Counter(3) ?? 0,
            FullScans = Counter(4) ?? 0,
            PagesScanned = Counter(5),
            PagesSkipped = Counter(6),
        };
        ReadProcesses(o, now);
        if (now - _lastSlowRead >= SlowReadInterval)
        {
            _lastSlowRead = now;
            ReadMemInfo(o);
            (_memTotal, _memAvailable) = (o.MemTotalBytes, o.MemAvailableBytes);
            _ksmdCpu = ReadKsmdCpuSeconds();
        }
        (o.MemTotalBytes, o.MemAvailableBytes, o.KsmdCpuSeconds) = (_memTotal, _memAvailable, _ksmdCpu);
        return o;
    }

    long? Counter(int i)
    {
        var h = _counters[i];
        if (h is null) return null;
        try
        {
            int n = RandomAccess.Read(h, _buf, 0);
            int pos = 0;
            return ParseLong(_buf.AsSpan(0, n), ref pos);
        }
        catch (IOException) { return null; }
    }

    void ReadProcesses(KsmAutoTuneObservation o, TimeSpan now)
    {
        var alive = new HashSet<int>();
        var ids = new List<int>();
        long rmap = 0, resident = 0;
        double? busiest = null;
        foreach (var pid in ProcessIds(now))
        {
            alive.Add(pid);
            if (!_procs.TryGetValue(pid, out var t))
            {
                // Processes already running at the first reading are not "new": only later arrivals get the fast re-checks.
                _procs[pid] = t = new Tracked { FirstSeen = _first ? TimeSpan.MinValue / 2 : now, LastChecked = TimeSpan.MinValue };
            }
            var age = now - t.FirstSeen;
            bool check = (t.Mergeable && now - t.LastChecked >= ProcessReadInterval) || t.LastChecked == TimeSpan.MinValue || age < NewProcessAge
                || (age < YoungProcessAge && now - t.LastChecked >= TimeSpan.FromSeconds(1)) || now - t.LastChecked >= RecheckInterval;
            if (check)
            {
                t.LastChecked = now;
                if (!ReadKsmStat(pid, t)) { alive.Remove(pid); continue; }
                if (t.Mergeable)
                {
                    t.Resident = ReadResidentPages(pid) ?? 0;
                    ReadCpu(pid, t, now);
                }
            }
            else if (t.Mergeable && CpuReadInterval is TimeSpan every && now - t.CpuAt >= every)
            {
                ReadCpu(pid, t, now);
            }
            rmap += t.RmapItems;
            if (!t.Mergeable) continue;
            ids.Add(pid);
            resident += t.Resident;
            if (t.CpuFraction is double f) busiest = Math.Max(busiest ?? 0, f);
        }
        foreach (var gone in _procs.Keys.Where(k => !alive.Contains(k)).ToList()) _procs.Remove(gone);
        _first = false;
        ids.Sort();
        o.MergeableProcessIds = ids.ToArray();
        o.RmapItems = rmap;
        o.MergeableResidentPages = resident;
        o.MaxProcessCpuFraction = busiest;
    }

    /// <summary>
    /// utime + stime from /proc/&lt;pid&gt;/stat; the CPU fraction since the newest earlier reading at least
    /// <see cref="CpuWindow"/> old (or the oldest kept, while there is none yet).
    /// </summary>
    void ReadCpu(int pid, Tracked t, TimeSpan now)
    {
        t.CpuAt = now;
        long? ticks = ReadStatTicks(pid);
        if (ticks is not long v) { t.CpuFraction = null; t.Cpu.Clear(); return; }
        var q = t.Cpu;
        while (q.Count >= 2 && now - q.ElementAt(1).At >= CpuWindow) q.Dequeue();
        if (q.Count > 0 && now > q.Peek().At) t.CpuFraction = Math.Max(0, v - q.Peek().Ticks) / UserHz / (now - q.Peek().At).TotalSeconds;
        q.Enqueue((v, now));
    }

    /// <summary>Fields 14 and 15 of /proc/&lt;pid&gt;/stat (after the command in parentheses), or null.</summary>
    long? ReadStatTicks(int pid)
    {
        int n = ReadFile(_roots.Pid(pid, "stat"));
        if (n <= 0) return null;
        var span = _buf.AsSpan(0, n);
        int close = span.LastIndexOf((byte)')');
        if (close < 0) return null;
        span = span[(close + 1)..];
        // span starts at " S ppid …": field 3 is the state; utime is field 14, the 12th after the state.
        for (int field = 3; field < 14; field++)
        {
            span = span.TrimStart((byte)' ');
            int sp = span.IndexOf((byte)' ');
            if (sp < 0) return null;
            span = span[sp..];
        }
        int pos = 0;
        long? utime = ParseLong(span, ref pos);
        long? stime = ParseLong(span, ref pos);
        return utime is long u && stime is long st ? u + st : null;
    }

    /// <summary>
    /// The pids to look at. Listing /proc costs about 2 µs per process (procfs builds every entry), most of a reading on
    /// a host with hundreds of processes, so it is skipped while /proc/loadavg's last-created pid is unchanged (no
    /// process or thread was created since the last listing): the processes already tracked are all there is, and
    /// the ones that exited drop out when their ksm_stat cannot be read. A full listing still runs every
    /// <see cref="RecheckInterval"/>, and always when loadavg cannot be read.
    /// </summary>
    IEnumerable<int> ProcessIds(TimeSpan now)
    {
        long? lastPid = ReadLastPid();
        if (!_first && lastPid is not null && (lastPid == _lastPid || now - _lastListing < ListingInterval) && now - _lastListing < RecheckInterval)
        {
            ListingsSkipped++;
            return _procs.Keys.ToList();
        }
        _lastPid = lastPid;
        _lastListing = now;
        return KsmProcessReader.ProcessIds(_roots);
    }

    /// <summary>The last field of /proc/loadavg ("0.29 0.69 0.37 1/123 4567"): the most recently created pid.</summary>
    long? ReadLastPid()
    {
        int n = ReadFile(_roots.ProcFile("loadavg"));
        if (n <= 0) return null;
        var span = _buf.AsSpan(0, n).TrimEnd((byte)'\n').TrimEnd((byte)' ');
        int sp = span.LastIndexOf((byte)' ');
        if (sp < 0) return null;
        int pos = sp + 1;
        return ParseLong(span, ref pos);
    }

    /// <summary>How many readings used the tracked processes instead of listing /proc (for tests).</summary>
    public int ListingsSkipped { get; private set; }

    /// <summary>Parses ksm_rmap_items, ksm_mergeable and ksm_merge_any ("key value" or "key: value" lines).</summary>
    bool ReadKsmStat(int pid, Tracked t)
    {
        int n = ReadFile(_roots.Pid(pid, "ksm_stat"));
        if (n < 0) return false;
        var span = _buf.AsSpan(0, n);
        bool? mergeable = null, mergeAny = null;
        long rmap = 0;
        while (span.Length > 0)
        {
            int nl = span.IndexOf((byte)'\n');
            var line = nl < 0 ? span : span[..nl];
            span = nl < 0 ? default : span[(nl + 1)..];
            int sep = line.IndexOfAny((byte)' ', (byte)':');
            if (sep <= 0) continue;
            var key = line[..sep];
            var value = line[(sep + 1)..].TrimStart((byte)':').Trim((byte)' ');
            if (key.SequenceEqual("ksm_rmap_items"u8)) { int p = 0; rmap = ParseLong(value, ref p) ?? 0; }
            else if (key.SequenceEqual("ksm_mergeable"u8)) mergeable = value.SequenceEqual("yes"u8) || value.SequenceEqual("1"u8);
            else if (key.SequenceEqual("ksm_merge_any"u8)) mergeAny = value.SequenceEqual("yes"u8) || value.SequenceEqual("1"u8);
        }
        t.RmapItems = rmap;
        // Kernels before 6.4 lack ksm_mergeable: a process ksmd tracks is mergeable.
        t.Mergeable = mergeable == true || mergeAny == true || (mergeable is null && rmap > 0);
        return true;
    }

    long? ReadResidentPages(int pid)
    {
        int n = ReadFile(_roots.Pid(pid, "statm"));
        if (n < 0) return null;
        var span = _buf.AsSpan(0, n);
        int pos = 0;
        ParseLong(span, ref pos);          // size
        return ParseLong(span, ref pos);   // resident
    }

    void ReadMemInfo(KsmAutoTuneObservation o)
    {
        int n = ReadFile(_roots.ProcFile("meminfo"));
        if (n < 0) return;
        var span = _buf.AsSpan(0, n);
        int found = 0;
        while (span.Length > 0 && found < 2)
        {
            int nl = span.IndexOf((byte)'\n');
            var line = nl < 0 ? span : span[..nl];
            span = nl < 0 ? default : span[(nl + 1)..];
            int pos = line.IndexOf((byte)':') + 1;
            if (pos <= 0) continue;
            if (line.StartsWith("MemTotal:"u8)) { o.MemTotalBytes = (ParseLong(line, ref pos) ?? 0) * 1024; found++; }
            else if (line.StartsWith("MemAvailable:"u8)) { o.MemAvailableBytes = (ParseLong(line, ref pos) ?? 0) * 1024; found++; }
        }
    }

    /// <summary>utime + stime of the ksmd kernel thread in seconds, or null when there is no ksmd.</summary>
    public double? ReadKsmdCpuSeconds()
    {
        if (_ksmdPid is int cached && KsmWatcher.ReadCpuTicks(_roots, cached) is long t) return t / UserHz;
        _ksmdPid = KsmWatcher.FindKsmd(_roots);
        return _ksmdPid is int pid && KsmWatcher.ReadCpuTicks(_roots, pid) is long t2 ? t2 / UserHz : null;
    }

    /// <summary>/proc reports CPU times in USER_HZ ticks, 100 per second on every Linux architecture.</summary>
    const double UserHz = 100.0;

    /// <summary>
    /// Reads a small /proc file into the buffer; -1 when the process is gone or the file unreadable. open/read/close
    /// straight from libc: File.OpenHandle adds an fstat and a flock (FileShare emulation) to every open, five system
    /// calls where three do, for files read several times a second.
    /// </summary>
    unsafe int ReadFile(string path)
    {
        if (s_native)
        {
            try
            {
                Span<byte> name = stackalloc byte[512];
                int len = System.Text.Encoding.UTF8.GetByteCount(path);
                if (len < name.Length)
                {
                    System.Text.Encoding.UTF8.GetBytes(path, name);
                    name[len] = 0;
                    int fd;
                    fixed (byte* pn = name) fd = open(pn, O_RDONLY | O_CLOEXEC);
                    if (fd < 0) return -1;
                    try
                    {
                        fixed (byte* pb = _buf)
                        {
                            nint n;
                            do n = read(fd, pb, _buf.Length); while (n < 0 && Marshal.GetLastPInvokeError() == EINTR);
                            return (int)n;
                        }
                    }
                    finally { close(fd); }
                }
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                s_native = false; // not Linux: the managed path below
            }
        }
        try
        {
            using var h = File.OpenHandle(path);
            return RandomAccess.Read(h, _buf, 0);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return -1;
        }
    }

    static bool s_native = OperatingSystem.IsLinux();
    const int O_RDONLY = 0, O_CLOEXEC = 0x80000, EINTR = 4;
    [DllImport("libc", SetLastError = true)] static extern unsafe int open(byte* path, int flags);
    [DllImport("libc", SetLastError = true)] static extern unsafe nint read(int fd, byte* buf, nint count);
    [DllImport("libc")] static extern int close(int fd);

    /// <summary>Skips non-digits from <paramref name="pos"/>, parses the digits there; null when there are none.</summary>
    internal static long? ParseLong(ReadOnlySpan<byte> s, ref int pos)
    {
        while (pos < s.Length && (s[pos] < (byte)'0' || s[pos] > (byte)'9')) pos++;
        if (pos >= s.Length) return null;
        long v = 0;
        while (pos < s.Length && s[pos] >= (byte)'0' && s[pos] <= (byte)'9') v = v * 10 + (s[pos++] - (byte)'0');
        return v;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var h in _counters) h?.Dispose();
    }
}
