using System.Globalization;
using System.Text.RegularExpressions;

namespace KvmOvercommit.Engine.HostInfo;

/// <summary>One member device of an md array.</summary>
public sealed class MdRaidMember
{
    /// <summary>Device name (sda1).</summary>
    public string Device { get; set; } = "";
    /// <summary>The role number in brackets (sda1[0] → 0).</summary>
    public int Role { get; set; }
    /// <summary>(F): the member has failed.</summary>
    public bool Failed { get; set; }
    /// <summary>(S): a spare (or, in an inactive array, a member not yet assembled).</summary>
    public bool Spare { get; set; }
    /// <summary>(J): the write journal device.</summary>
    public bool Journal { get; set; }
    /// <summary>(W): write-mostly.</summary>
    public bool WriteMostly { get; set; }
    /// <summary>(R): a replacement being rebuilt for another member.</summary>
    public bool Replacement { get; set; }
    /// <summary>Text form, e.g. "sdb1[1](F)".</summary>
    public override string ToString() => $"{Device}[{Role}]" + (Failed ? "(F)" : "") + (Spare ? "(S)" : "") + (Journal ? "(J)" : "") + (WriteMostly ? "(W)" : "") + (Replacement ? "(R)" : "");
}

/// <summary>One md (software RAID) array from /proc/mdstat.</summary>
public sealed class MdRaidArray
{
    /// <summary>Array name (md126).</summary>
    public string Name { get; set; } = "";
    /// <summary>RAID level (raid0, raid1, raid10, raid5, raid6, linear…); null for an inactive array.</summary>
    public string? Level { get; set; }
    /// <summary>active or inactive.</summary>
    public string State { get; set; } = "";
    /// <summary>"read-only" or "auto-read-only" when the array is not writable, else null.</summary>
    public string? ReadOnly { get; set; }
    /// <summary>Member devices with their roles and flags.</summary>
    public MdRaidMember[] Devices { get; set; } = Array.Empty<MdRaidMember>();
    /// <summary>Size in 1 KiB blocks.</summary>
    public long? Blocks { get; set; }
    /// <summary>Size in bytes (Blocks × 1024).</summary>
    public long? SizeBytes => Blocks * 1024;
    /// <summary>Size in GiB.</summary>
    public double? SizeGiB => SizeBytes is null ? null : Units.ToGiB(SizeBytes.Value);
    /// <summary>Chunk size in KiB (raid0/4/5/6/10).</summary>
    public int? ChunkKB { get; set; }
    /// <summary>Superblock version (1.2, 0.90, external:imsm).</summary>
    public string? SuperVersion { get; set; }
    /// <summary>raid10 layout, e.g. "2 near-copies".</summary>
    public string? Layout { get; set; }
    /// <summary>raid5/6 parity algorithm number.</summary>
    public int? Algorithm { get; set; }
    /// <summary>The member health string without brackets: U up, _ missing or failed ("UU_U").</summary>
    public string? Health { get; set; }
    /// <summary>Devices the array should have.</summary>
    public int? RaidDisks { get; set; }
    /// <summary>Devices working now.</summary>
    public int? ActiveDisks { get; set; }
    /// <summary>ActiveDisks &lt; RaidDisks, or a failed member.</summary>
    public bool Degraded { get; set; }
    /// <summary>resync, recovery, check, repair or reshape while one runs (or is DELAYED/PENDING), else null.</summary>
    public string? SyncAction { get; set; }
    /// <summary>DELAYED or PENDING when the sync action waits, else null.</summary>
    public string? SyncState { get; set; }
    /// <summary>Progress of the sync action in percent.</summary>
    public double? SyncPercent { get; set; }
    /// <summary>Estimated time to finish.</summary>
    public TimeSpan? SyncFinish { get; set; }
    /// <summary>Sync speed in KiB/s.</summary>
    public long? SyncSpeedKBPerSec { get; set; }
    /// <summary>The bitmap line ("2/15 pages [8KB], 65536KB chunk"), or null.</summary>
    public string? Bitmap { get; set; }
}

/// <summary>Parser of /proc/mdstat.</summary>
public static class MdStatParser
{
    static readonly Regex s_header = new(@"^(?<name>md\S*|\S+)\s*:\s*(?<state>active|inactive)(?:\s+\((?<ro>[a-z-]*read-only)\))?(?<rest>.*)$", RegexOptions.CultureInvariant);
    static readonly Regex s_member = new(@"^(?<dev>[^\s\[]+)\[(?<role>\d+)\](?<flags>(?:\([A-Z]\))*)$", RegexOptions.CultureInvariant);
    static readonly Regex s_blocks = new(@"^(?<n>\d+) blocks", RegexOptions.CultureInvariant);
    static readonly Regex s_super = new(@"super (?<v>\S+)", RegexOptions.CultureInvariant);
    static readonly Regex s_chunk = new(@"(?<n>\d+)[kK] chunks?\b", RegexOptions.CultureInvariant);
    static readonly Regex s_copies = new(@"(?<n>\d+ (?:near|far|offset)-copies)", RegexOptions.CultureInvariant);
    static readonly Regex s_algorithm = new(@"algorithm (?<n>\d+)", RegexOptions.CultureInvariant);
    static readonly Regex s_health = new(@"\[(?<raid>\d+)/(?<active>\d+)\]\s*\[(?<h>[U_]+)\]", RegexOptions.CultureInvariant);
    static readonly Regex s_progress = new(@"(?<action>resync|recovery|check|repair|reshape)\s*=\s*(?<pct>[\d.]+)%(?:\s*\(\d+/\d+\))?(?:\s*finish=(?<fin>[\d.]+)min)?(?:\s*speed=(?<speed>\d+)K/sec)?", RegexOptions.CultureInvariant);
    static readonly Regex s_waiting = new(@"(?<action>resync|recovery|check|repair|reshape)\s*=\s*(?<state>DELAYED|PENDING)", RegexOptions.CultureInvariant);
    static readonly Regex s_bitmap = new(@"bitmap:\s*(?<b>.*)$", RegexOptions.CultureInvariant);

    /// <summary>Every array in the file (none for "Personalities :" alone — a host with the md driver but no arrays).</summary>
    public static List<MdRaidArray> Parse(string text)
    {
        var arrays = new List<MdRaidArray>();
        MdRaidArray? cur = null;
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd();
            if (line.Length == 0) { cur = null; continue; }
            if (line.StartsWith("Personalities", StringComparison.Ordinal) || line.StartsWith("unused devices", StringComparison.Ordinal) || line.StartsWith("read_ahead", StringComparison.Ordinal))
            {
                cur = null;
                continue;
            }
            if (!char.IsWhiteSpace(raw[0]))
            {
                var m = s_header.Match(line);
                if (!m.Success) { cur = null; continue; }
                cur = new MdRaidArray { Name = m.Groups["name"].Value, State = m.Groups["state"].Value };
                if (m.Groups["ro"].Success) cur.ReadOnly = m.Groups["ro"].Value;
                var members = new List<MdRaidMember>();
                foreach (var tok in m.Groups["rest"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                {
                    var mm = s_member.Match(tok);
                    if (!mm.Success) { if (cur.Level is null && members.Count == 0) cur.Level = tok; continue; }
                    var flags = mm.Groups["flags"].Value;
                    members.Add(new MdRaidMember
                    {
                        Device = mm.Groups["dev"].Value,
                        Role = int.Parse(mm.Groups["role"].Value, CultureInfo.InvariantCulture),
                        Failed = flags.Contains("(F)"),
                        Spare = flags.Contains("(S)"),
                        Journal = flags.Contains("(J)"),
                        WriteMostly = flags.Contains("(W)"),
                        Replacement = flags.Contains("(R)"),
                    });
                }
                cur.Devices = members.OrderBy(d => d.Role).ToArray();
                cur.Degraded = members.Any(d => d.Failed);
                arrays.Add(cur);
                continue;
            }
            if (cur is null) continue;
            var body = line.Trim();
            if (s_blocks.Match(body) is { Success: true } b)
            {
                cur.Blocks = long.Parse(b.Groups["n"].Value, CultureInfo.InvariantCulture);
                if (s_super.Match(body) is { Success: true } sv) cur.SuperVersion = sv.Groups["v"].Value.TrimEnd(',');
                if (s_chunk.Match(body) is { Success: true } ch) cur.ChunkKB = int.Parse(ch.Groups["n"].Value, CultureInfo.InvariantCulture);
                if (s_copies.Match(body) is { Success: true } cp) cur.Layout = cp.Groups["n"].Value;
                if (s_algorithm.Match(body) is { Success: true } al) cur.Algorithm = int.Parse(al.Groups["n"].Value, CultureInfo.InvariantCulture);
                if (s_health.Match(body) is { Success: true } h)
                {
                    cur.RaidDisks = int.Parse(h.Groups["raid"].Value, CultureInfo.InvariantCulture);
                    cur.ActiveDisks = int.Parse(h.Groups["active"].Value, CultureInfo.InvariantCulture);
                    cur.Health = h.Groups["h"].Value;
                    cur.Degraded |= cur.ActiveDisks < cur.RaidDisks || cur.Health.Contains('_');
                }
                continue;
            }
            if (s_progress.Match(body) is { Success: true } p)
            {
                cur.SyncAction = p.Groups["action"].Value;
                cur.SyncPercent = double.Parse(p.Groups["pct"].Value, CultureInfo.InvariantCulture);
                if (p.Groups["fin"].Success) cur.SyncFinish = TimeSpan.FromMinutes(double.Parse(p.Groups["fin"].Value, CultureInfo.InvariantCulture));
                if (p.Groups["speed"].Success) cur.SyncSpeedKBPerSec = long.Parse(p.Groups["speed"].Value, CultureInfo.InvariantCulture);
                continue;
            }
            if (s_waiting.Match(body) is { Success: true } wt)
            {
                cur.SyncAction = wt.Groups["action"].Value;
                cur.SyncState = wt.Groups["state"].Value;
                continue;
            }
            if (s_bitmap.Match(body) is { Success: true } bm) cur.Bitmap = bm.Groups["b"].Value.Trim();
        }
        return arrays;
    }
}
