using System.Globalization;

namespace KvmOvercommit.Engine.HostInfo;

/// <summary>Host memory as /proc/meminfo, `free` and KSM see it, plus the memory promised to running guests.</summary>
public sealed class HostMemory
{
    /// <summary>The host's name.</summary>
    public string HostName { get; set; } = "";
    /// <summary>MemTotal.</summary>
    public long TotalBytes { get; set; }
    /// <summary>MemFree.</summary>
    public long FreeBytes { get; set; }
    /// <summary>MemAvailable (3.14+); on older kernels estimated as MemFree + Buffers + Cached, and <see cref="AvailableEstimated"/> is true.</summary>
    public long AvailableBytes { get; set; }
    /// <summary>True when the kernel has no MemAvailable and AvailableBytes is the MemFree + Buffers + Cached estimate.</summary>
    public bool AvailableEstimated { get; set; }
    /// <summary>Buffers.</summary>
    public long BuffersBytes { get; set; }
    /// <summary>Cached (page cache, not SwapCached).</summary>
    public long CachedBytes { get; set; }
    /// <summary>SReclaimable (reclaimable slab; `free` counts it in buff/cache), or null.</summary>
    public long? SlabReclaimableBytes { get; set; }
    /// <summary>Shmem (tmpfs and shared memory; in Cached but not freeable), or null.</summary>
    public long? SharedBytes { get; set; }
    /// <summary>SwapTotal.</summary>
    public long SwapTotalBytes { get; set; }
    /// <summary>SwapFree.</summary>
    public long SwapFreeBytes { get; set; }
    /// <summary>Committed_AS: memory the kernel has promised to processes.</summary>
    public long? CommittedAsBytes { get; set; }
    /// <summary>CommitLimit.</summary>
    public long? CommitLimitBytes { get; set; }
    /// <summary>AnonPages: anonymous memory in use (where guest RAM lives).</summary>
    public long? AnonPagesBytes { get; set; }
    /// <summary>AnonHugePages: anonymous memory in transparent huge pages (KSM cannot merge these until it splits them).</summary>
    public long? AnonHugePagesBytes { get; set; }
    /// <summary>The old `free` "-/+ buffers/cache" used figure: MemTotal − MemFree − Buffers − Cached.</summary>
    public long UsedMinusBuffersCacheBytes { get; set; }
    /// <summary>Memory KSM saves now: (pages_sharing + ksm_zero_pages) × page size; null without KSM.</summary>
    public long? KsmSavedBytes { get; set; }
    /// <summary>Sum of -m of the running QEMU guests.</summary>
    public long GuestCommittedBytes { get; set; }
    /// <summary>Number of running QEMU guests.</summary>
    public int GuestCount { get; set; }
    /// <summary>When it was read (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }

    /// <summary>TotalBytes in MiB.</summary>
    public double TotalMiB => Units.ToMiB(TotalBytes);
    /// <summary>FreeBytes in MiB.</summary>
    public double FreeMiB => Units.ToMiB(FreeBytes);
    /// <summary>AvailableBytes in MiB.</summary>
    public double AvailableMiB => Units.ToMiB(AvailableBytes);
    /// <summary>UsedMinusBuffersCacheBytes in MiB.</summary>
    public double UsedMiB => Units.ToMiB(UsedMinusBuffersCacheBytes);
    /// <summary>KsmSavedBytes in MiB.</summary>
    public double? KsmSavedMiB => Units.ToMiB(KsmSavedBytes);
    /// <summary>GuestCommittedBytes in MiB.</summary>
    public double GuestCommittedMiB => Units.ToMiB(GuestCommittedBytes);
}

/// <summary>Parser of /proc/meminfo.</summary>
public static class MemInfoParser
{
    /// <summary>"Key: value kB" lines → bytes by key (values without a unit are kept as they are, e.g. HugePages_Total).</summary>
    public static Dictionary<string, long> Parse(string text)
    {
        var d = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            int colon = line.IndexOf(':');
            if (colon <= 0) continue;
            var rest = line[(colon + 1)..].Trim();
            bool kb = rest.EndsWith(" kB", StringComparison.Ordinal);
            if (kb) rest = rest[..^3].TrimEnd();
            if (long.TryParse(rest, NumberStyles.None, CultureInfo.InvariantCulture, out long v))
                d[line[..colon].Trim()] = kb ? v * 1024 : v;
        }
        return d;
    }

    /// <summary>Builds HostMemory from meminfo text (guest and KSM figures are left for the caller).</summary>
    public static HostMemory ToHostMemory(string text)
    {
        var d = Parse(text);
        if (!d.TryGetValue("MemTotal", out long total))
            throw new KvmOcException(ErrorKind.InvalidData, "MemInfoInvalid", "/proc/meminfo has no MemTotal line.", "/proc/meminfo");
        long Get(string k) => d.TryGetValue(k, out long v) ? v : 0;
        long? Opt(string k) => d.TryGetValue(k, out long v) ? v : null;
        var m = new HostMemory
        {
            TotalBytes = total,
            FreeBytes = Get("MemFree"),
            BuffersBytes = Get("Buffers"),
            CachedBytes = Get("Cached"),
            SlabReclaimableBytes = Opt("SReclaimable"),
            SharedBytes = Opt("Shmem"),
            SwapTotalBytes = Get("SwapTotal"),
            SwapFreeBytes = Get("SwapFree"),
            CommittedAsBytes = Opt("Committed_AS"),
            CommitLimitBytes = Opt("CommitLimit"),
            AnonPagesBytes = Opt("AnonPages"),
            AnonHugePagesBytes = Opt("AnonHugePages"),
        };
        if (d.TryGetValue("MemAvailable", out long avail)) m.AvailableBytes = avail;
        else
        {
            m.AvailableBytes = m.FreeBytes + m.BuffersBytes + m.CachedBytes;
            m.AvailableEstimated = true;
        }
        m.UsedMinusBuffersCacheBytes = m.TotalBytes - m.FreeBytes - m.BuffersBytes - m.CachedBytes;
        return m;
    }
}
