using System.Globalization;

namespace KvmOvercommit.Engine.Io;

/// <summary>
/// One line of /proc/diskstats (Documentation/admin-guide/iostats.rst). Kernels before 4.18 have 11 counters
/// (14 fields), 4.18 adds 4 discard counters (18 fields), 5.5 adds 2 flush counters (20 fields); counters a kernel
/// does not have are null. Very old kernels (before 2.6.25) print partitions with 4 counters (7 fields).
/// </summary>
public sealed class DiskStatRecord
{
    /// <summary>Major device number.</summary>
    public int Major { get; set; }
    /// <summary>Minor device number.</summary>
    public int Minor { get; set; }
    /// <summary>Kernel device name (sda, nvme0n1, dm-0, md126; cciss/c0d0 with a slash).</summary>
    public string Name { get; set; } = "";
    /// <summary>Reads completed.</summary>
    public ulong ReadIos { get; set; }
    /// <summary>Reads merged.</summary>
    public ulong ReadMerges { get; set; }
    /// <summary>Sectors read (512 bytes each, whatever the device's sector size).</summary>
    public ulong ReadSectors { get; set; }
    /// <summary>Milliseconds spent reading.</summary>
    public ulong ReadTicks { get; set; }
    /// <summary>Writes completed.</summary>
    public ulong WriteIos { get; set; }
    /// <summary>Writes merged.</summary>
    public ulong WriteMerges { get; set; }
    /// <summary>Sectors written.</summary>
    public ulong WriteSectors { get; set; }
    /// <summary>Milliseconds spent writing.</summary>
    public ulong WriteTicks { get; set; }
    /// <summary>I/Os currently in progress (a gauge, not a counter).</summary>
    public ulong InFlight { get; set; }
    /// <summary>Milliseconds spent doing I/O (the basis of %util).</summary>
    public ulong IoTicks { get; set; }
    /// <summary>Weighted milliseconds spent doing I/O (the basis of the average queue size).</summary>
    public ulong TimeInQueue { get; set; }
    /// <summary>Discards completed (4.18+).</summary>
    public ulong? DiscardIos { get; set; }
    /// <summary>Discards merged (4.18+).</summary>
    public ulong? DiscardMerges { get; set; }
    /// <summary>Sectors discarded (4.18+).</summary>
    public ulong? DiscardSectors { get; set; }
    /// <summary>Milliseconds spent discarding (4.18+).</summary>
    public ulong? DiscardTicks { get; set; }
    /// <summary>Flush requests completed (5.5+).</summary>
    public ulong? FlushIos { get; set; }
    /// <summary>Milliseconds spent flushing (5.5+).</summary>
    public ulong? FlushTicks { get; set; }
    /// <summary>How many fields the line had (7, 14, 18 or 20).</summary>
    public int FieldCount { get; set; }
}

/// <summary>Parser of /proc/diskstats text.</summary>
public static class DiskStatsParser
{
    /// <summary>Parses every line it understands; lines of an unknown shape are skipped (and counted in <paramref name="skipped"/>).</summary>
    public static List<DiskStatRecord> Parse(string text, out int skipped)
    {
        var list = new List<DiskStatRecord>();
        skipped = 0;
        foreach (var raw in text.Split('\n'))
        {
            var f = raw.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (f.Length == 0) continue;
            var r = ParseFields(f);
            if (r is null) skipped++; else list.Add(r);
        }
        return list;
    }

    /// <summary>Parses every line it understands.</summary>
    public static List<DiskStatRecord> Parse(string text) => Parse(text, out _);

    static DiskStatRecord? ParseFields(string[] f)
    {
        if (f.Length < 7 || !int.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out int major)
            || !int.TryParse(f[1], NumberStyles.None, CultureInfo.InvariantCulture, out int minor)) return null;
        var n = new ulong[f.Length - 3];
        for (int i = 3; i < f.Length; i++)
            if (!ulong.TryParse(f[i], NumberStyles.None, CultureInfo.InvariantCulture, out n[i - 3])) return null;
        var r = new DiskStatRecord { Major = major, Minor = minor, Name = f[2], FieldCount = f.Length };
        if (f.Length == 7)
        {
            // 2.6 kernels before 2.6.25, partitions: reads, sectors read, writes, sectors written.
            r.ReadIos = n[0]; r.ReadSectors = n[1]; r.WriteIos = n[2]; r.WriteSectors = n[3];
            return r;
        }
        if (f.Length < 14) return null;
        r.ReadIos = n[0]; r.ReadMerges = n[1]; r.ReadSectors = n[2]; r.ReadTicks = n[3];
        r.WriteIos = n[4]; r.WriteMerges = n[5]; r.WriteSectors = n[6]; r.WriteTicks = n[7];
        r.InFlight = n[8]; r.IoTicks = n[9]; r.TimeInQueue = n[10];
        if (f.Length >= 18)
        {
            r.DiscardIos = n[11]; r.DiscardMerges = n[12]; r.DiscardSectors = n[13]; r.DiscardTicks = n[14];
        }
        if (f.Length >= 20)
        {
            r.FlushIos = n[15]; r.FlushTicks = n[16];
        }
        return r;
    }
}
