using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// The I/O limits (QEMU throttling) of one drive of one guest, as QMP query-block reports them. Every limit is per
/// second; 0 means no limit. The property names are Set-KvmGuestIoLimit's parameters, so a reading piped back restores it.
/// </summary>
public sealed class KvmGuestIoLimit
{
    /// <summary>The guest name.</summary>
    public string Name { get; set; } = "";
    /// <summary>The QEMU process id.</summary>
    public int Id { get; set; }
    /// <summary>The drive: its -drive id (e.g. virtio0), else the device id, else the block node name (as Measure-KvmGuestIops names it).</summary>
    public string Drive { get; set; } = "";
    /// <summary>The drive's device path in QEMU (query-block's qdev), the id block_set_io_throttle takes.</summary>
    public string QdevId { get; set; } = "";
    /// <summary>True when any limit is set.</summary>
    public bool Throttled { get; set; }
    /// <summary>Total (read + write) I/O operations per second; 0: none.</summary>
    public long Iops { get; set; }
    /// <summary>Read operations per second; 0: none.</summary>
    public long IopsRead { get; set; }
    /// <summary>Write operations per second; 0: none.</summary>
    public long IopsWrite { get; set; }
    /// <summary>Total bytes per second; 0: none.</summary>
    public long Bps { get; set; }
    /// <summary>Read bytes per second; 0: none.</summary>
    public long BpsRead { get; set; }
    /// <summary>Write bytes per second; 0: none.</summary>
    public long BpsWrite { get; set; }
    /// <summary>Burst: total operations per second allowed for IopsMaxLength seconds; 0: no burst.</summary>
    public long IopsMax { get; set; }
    /// <summary>Burst for IopsRead.</summary>
    public long IopsReadMax { get; set; }
    /// <summary>Burst for IopsWrite.</summary>
    public long IopsWriteMax { get; set; }
    /// <summary>Burst for Bps.</summary>
    public long BpsMax { get; set; }
    /// <summary>Burst for BpsRead.</summary>
    public long BpsReadMax { get; set; }
    /// <summary>Burst for BpsWrite.</summary>
    public long BpsWriteMax { get; set; }
    /// <summary>Seconds the IopsMax burst may last (QEMU's default 1 when a burst is set).</summary>
    public long IopsMaxLength { get; set; }
    /// <summary>Seconds the IopsReadMax burst may last.</summary>
    public long IopsReadMaxLength { get; set; }
    /// <summary>Seconds the IopsWriteMax burst may last.</summary>
    public long IopsWriteMaxLength { get; set; }
    /// <summary>Seconds the BpsMax burst may last.</summary>
    public long BpsMaxLength { get; set; }
    /// <summary>Seconds the BpsReadMax burst may last.</summary>
    public long BpsReadMaxLength { get; set; }
    /// <summary>Seconds the BpsWriteMax burst may last.</summary>
    public long BpsWriteMaxLength { get; set; }
    /// <summary>Bytes counted as one operation: a larger request counts as several (0: every request is one).</summary>
    public long IopsSize { get; set; }
    /// <summary>The throttle group: drives in one group (of one QEMU process) share its limits; null when not throttled.</summary>
    public string? Group { get; set; }
    /// <summary>When the limits were read (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
}

/// <summary>
/// What Set-KvmGuestIoLimit changes: every field left null keeps the drive's current value; 0 removes that limit.
/// </summary>
public sealed class IoLimitChange
{
    /// <summary>New total IOPS limit.</summary>
    public long? Iops { get; set; }
    /// <summary>New read IOPS limit.</summary>
    public long? IopsRead { get; set; }
    /// <summary>New write IOPS limit.</summary>
    public long? IopsWrite { get; set; }
    /// <summary>New total bytes/s limit.</summary>
    public long? Bps { get; set; }
    /// <summary>New read bytes/s limit.</summary>
    public long? BpsRead { get; set; }
    /// <summary>New write bytes/s limit.</summary>
    public long? BpsWrite { get; set; }
    /// <summary>New total IOPS burst.</summary>
    public long? IopsMax { get; set; }
    /// <summary>New read IOPS burst.</summary>
    public long? IopsReadMax { get; set; }
    /// <summary>New write IOPS burst.</summary>
    public long? IopsWriteMax { get; set; }
    /// <summary>New total bytes/s burst.</summary>
    public long? BpsMax { get; set; }
    /// <summary>New read bytes/s burst.</summary>
    public long? BpsReadMax { get; set; }
    /// <summary>New write bytes/s burst.</summary>
    public long? BpsWriteMax { get; set; }
    /// <summary>New length of the total IOPS burst (s).</summary>
    public long? IopsMaxLength { get; set; }
    /// <summary>New length of the read IOPS burst (s).</summary>
    public long? IopsReadMaxLength { get; set; }
    /// <summary>New length of the write IOPS burst (s).</summary>
    public long? IopsWriteMaxLength { get; set; }
    /// <summary>New length of the total bytes/s burst (s).</summary>
    public long? BpsMaxLength { get; set; }
    /// <summary>New length of the read bytes/s burst (s).</summary>
    public long? BpsReadMaxLength { get; set; }
    /// <summary>New length of the write bytes/s burst (s).</summary>
    public long? BpsWriteMaxLength { get; set; }
    /// <summary>New operation size for IOPS accounting (bytes).</summary>
    public long? IopsSize { get; set; }
    /// <summary>The throttle group to put the drive in (shared with the guest's other drives in the same group; groups do not span QEMU processes).</summary>
    public string? Group { get; set; }

    /// <summary>True when nothing is asked for.</summary>
    public bool IsEmpty => Fields().All(f => f.Value is null) && Group is null;

    internal IEnumerable<(string Field, long? Value)> Fields()
    {
        yield return ("Iops", Iops); yield return ("IopsRead", IopsRead); yield return ("IopsWrite", IopsWrite);
        yield return ("Bps", Bps); yield return ("BpsRead", BpsRead); yield return ("BpsWrite", BpsWrite);
        yield return ("IopsMax", IopsMax); yield return ("IopsReadMax", IopsReadMax); yield return ("IopsWriteMax", IopsWriteMax);
        yield return ("BpsMax", BpsMax); yield return ("BpsReadMax", BpsReadMax); yield return ("BpsWriteMax", BpsWriteMax);
        yield return ("IopsMaxLength", IopsMaxLength); yield return ("IopsReadMaxLength", IopsReadMaxLength); yield return ("IopsWriteMaxLength", IopsWriteMaxLength);
        yield return ("BpsMaxLength", BpsMaxLength); yield return ("BpsReadMaxLength", BpsReadMaxLength); yield return ("BpsWriteMaxLength", BpsWriteMaxLength);
        yield return ("IopsSize", IopsSize);
    }
}

/// <summary>What Set-KvmGuestIoLimit will do to one drive: described for -WhatIf, then applied.</summary>
public sealed class IoLimitPlan
{
    /// <summary>The guest.</summary>
    public KvmGuest Guest { get; init; } = new();
    /// <summary>The drive's limits now.</summary>
    public KvmGuestIoLimit Current { get; init; } = new();
    /// <summary>The drive's limits after the change.</summary>
    public KvmGuestIoLimit Wanted { get; init; } = new();
    /// <summary>For ShouldProcess: the target.</summary>
    public string Target => $"{Guest.Name} (pid {Guest.Id}) drive {Current.Drive}";
    /// <summary>For ShouldProcess: the action.</summary>
    public string Action => "Set I/O limits: " + KvmGuestIoLimits.Describe(Wanted);
    /// <summary>True when the wanted limits equal the current ones.</summary>
    public bool Unchanged => KvmGuestIoLimits.SameLimits(Current, Wanted);
}

/// <summary>
/// Get-/Set-KvmGuestIoLimit: QEMU's per-drive I/O throttling over QMP (query-block reads it, block_set_io_throttle sets
/// it, with the drive's qdev path as id). A change merges into the drive's current limits: a total limit replaces
/// the read/write ones of its kind and the other way round (QEMU refuses both at once), and a limit set to 0 drops its
/// burst too.
/// </summary>
public static class KvmGuestIoLimits
{
    /// <summary>How long one QMP exchange may take.</summary>
    public static TimeSpan QmpTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The drives' limits of one guest; <paramref name="drives"/> (wildcards) selects drives, null: all.</summary>
    public static async Task<List<KvmGuestIoLimit>> GetAsync(KvmGuest guest, string[]? drives, CancellationToken ct)
    {
        await using var qmp = await ConnectAsync(guest, ct).ConfigureAwait(false);
        return await QueryAsync(qmp, guest, drives, ct).ConfigureAwait(false);
    }

    /// <summary>Reads the guest's current limits and plans the change per selected drive; nothing is changed.</summary>
    public static async Task<List<IoLimitPlan>> PlanAsync(KvmGuest guest, string[]? drives, IoLimitChange change, CancellationToken ct)
    {
        Validate(change);
        var current = await GetAsync(guest, drives, ct).ConfigureAwait(false);
        return current.Select(c => new IoLimitPlan { Guest = guest, Current = c, Wanted = Merge(c, change) }).ToList();
    }

    /// <summary>Checks the values alone (no negative numbers; a group name QEMU accepts).</summary>
    public static void Validate(IoLimitChange change)
    {
        foreach (var (field, value) in change.Fields())
            if (value is < 0)
                throw new KvmOcException(ErrorKind.InvalidArgument, "IoLimitInvalid", $"-{field} {value} is not possible: limits are 0 (none) or more.", value);
        if (change.Group is { } g && (g.Length == 0 || g.Any(char.IsControl)))
            throw new KvmOcException(ErrorKind.InvalidArgument, "IoLimitGroupInvalid", $"The throttle group name '{g}' must be non-empty and contain no control characters.", g);
    }

    /// <summary>The limits after applying <paramref name="change"/> to <paramref name="current"/> (a pure function).</summary>
    public static KvmGuestIoLimit Merge(KvmGuestIoLimit current, IoLimitChange change)
    {
        var w = Copy(current);
        // A total and its read/write limits exclude each other in QEMU: the newly given kind wins.
        MergeKind(change.Iops, change.IopsRead, change.IopsWrite, v => w.Iops = v, v => w.IopsRead = v, v => w.IopsWrite = v);
        MergeKind(change.Bps, change.BpsRead, change.BpsWrite, v => w.Bps = v, v => w.BpsRead = v, v => w.BpsWrite = v);
        if (change.IopsMax is { } a) w.IopsMax = a;
        if (change.IopsReadMax is { } b) w.IopsReadMax = b;
        if (change.IopsWriteMax is { } c) w.IopsWriteMax = c;
        if (change.BpsMax is { } d) w.BpsMax = d;
        if (change.BpsReadMax is { } e) w.BpsReadMax = e;
        if (change.BpsWriteMax is { } f) w.BpsWriteMax = f;
        if (change.IopsMaxLength is { } g) w.IopsMaxLength = g;
        if (change.IopsReadMaxLength is { } h) w.IopsReadMaxLength = h;
        if (change.IopsWriteMaxLength is { } i) w.IopsWriteMaxLength = i;
        if (change.BpsMaxLength is { } j) w.BpsMaxLength = j;
        if (change.BpsReadMaxLength is { } k) w.BpsReadMaxLength = k;
        if (change.BpsWriteMaxLength is { } l) w.BpsWriteMaxLength = l;
        if (change.IopsSize is { } m) w.IopsSize = m;
        if (change.Group is not null) w.Group = change.Group;
        // A removed limit takes its burst with it (QEMU: "bps_max/iops_max require corresponding bps/iops values").
        if (w.Iops == 0 && change.IopsMax is null) w.IopsMax = 0;
        if (w.IopsRead == 0 && change.IopsReadMax is null) w.IopsReadMax = 0;
        if (w.IopsWrite == 0 && change.IopsWriteMax is null) w.IopsWriteMax = 0;
        if (w.Bps == 0 && change.BpsMax is null) w.BpsMax = 0;
        if (w.BpsRead == 0 && change.BpsReadMax is null) w.BpsReadMax = 0;
        if (w.BpsWrite == 0 && change.BpsWriteMax is null) w.BpsWriteMax = 0;
        if (w.IopsMax == 0 && change.IopsMaxLength is null) w.IopsMaxLength = 0;
        if (w.IopsReadMax == 0 && change.IopsReadMaxLength is null) w.IopsReadMaxLength = 0;
        if (w.IopsWriteMax == 0 && change.IopsWriteMaxLength is null) w.IopsWriteMaxLength = 0;
        if (w.BpsMax == 0 && change.BpsMaxLength is null) w.BpsMaxLength = 0;
        if (w.BpsReadMax == 0 && change.BpsReadMaxLength is null) w.BpsReadMaxLength = 0;
        if (w.BpsWriteMax == 0 && change.BpsWriteMaxLength is null) w.BpsWriteMaxLength = 0;
        w.Throttled = AnyLimit(w);
        return w;

        static void MergeKind(long? total, long? read, long? write, Action<long> setTotal, Action<long> setRead, Action<long> setWrite)
        {
            if (total is { } t)
            {
                setTotal(t);
                if (t > 0) { if (read is null) setRead(0); if (write is null) setWrite(0); }
            }
            if (read is { } r) { setRead(r); if (r > 0 && total is null) setTotal(0); }
            if (write is { } x) { setWrite(x); if (x > 0 && total is null) setTotal(0); }
        }
    }

    /// <summary>
    /// Sets the planned limits (QMP block_set_io_throttle) and returns the drive's limits as read back afterwards.
    /// QEMU's refusal (e.g. a burst below its limit) becomes IoLimitInvalid.
    /// </summary>
    public static async Task<KvmGuestIoLimit> ApplyAsync(IoLimitPlan plan, IOperationObserver observer, CancellationToken ct)
    {
        var guest = plan.Guest;
        await using var qmp = await ConnectAsync(guest, ct).ConfigureAwait(false);
        var args = Arguments(plan.Wanted);
        observer.Verbose($"QMP {guest.QmpSocket}: {{\"execute\":\"block_set_io_throttle\",\"arguments\":{args.ToJsonString()}}}");
        try
        {
            await qmp.ExecuteAsync("block_set_io_throttle", args, ct).ConfigureAwait(false);
        }
        catch (KvmOcException e) when (e.ErrorId == "QmpGenericError")
        {
            throw new KvmOcException(ErrorKind.InvalidArgument, "IoLimitInvalid", $"Guest '{guest.Name}' drive {plan.Current.Drive}: {e.Message}", guest.Name,
                "A burst (-IopsMax, -BpsMax …) needs its limit and must not be below it; a burst length needs its burst.", e);
        }
        catch (KvmOcException e) when (e.ErrorId == "QmpDeviceNotFound")
        {
            throw new KvmOcException(ErrorKind.NotFound, "DriveNotFound", $"Guest '{guest.Name}' has no drive {plan.Current.Drive} any more: {e.Message}", plan.Current.Drive, null, e);
        }
        var after = await QueryAsync(qmp, guest, null, ct).ConfigureAwait(false);
        return after.FirstOrDefault(d => d.QdevId == plan.Current.QdevId && d.Drive == plan.Current.Drive)
            ?? throw new KvmOcException(ErrorKind.NotFound, "DriveNotFound", $"Guest '{guest.Name}' drive {plan.Current.Drive} is gone after the change.", plan.Current.Drive);
    }

    /// <summary>block_set_io_throttle's arguments for the wanted limits (the six base limits always, the rest when set).</summary>
    public static JsonObject Arguments(KvmGuestIoLimit w)
    {
        var a = new JsonObject { ["id"] = w.QdevId.Length > 0 ? w.QdevId : w.Drive };
        if (w.QdevId.Length == 0) { a.Remove("id"); a["device"] = w.Drive; }
        a["bps"] = w.Bps; a["bps_rd"] = w.BpsRead; a["bps_wr"] = w.BpsWrite;
        a["iops"] = w.Iops; a["iops_rd"] = w.IopsRead; a["iops_wr"] = w.IopsWrite;
        void Opt(string key, long v) { if (v > 0) a[key] = v; }
        Opt("bps_max", w.BpsMax); Opt("bps_rd_max", w.BpsReadMax); Opt("bps_wr_max", w.BpsWriteMax);
        Opt("iops_max", w.IopsMax); Opt("iops_rd_max", w.IopsReadMax); Opt("iops_wr_max", w.IopsWriteMax);
        Opt("bps_max_length", w.BpsMaxLength); Opt("bps_rd_max_length", w.BpsReadMaxLength); Opt("bps_wr_max_length", w.BpsWriteMaxLength);
        Opt("iops_max_length", w.IopsMaxLength); Opt("iops_rd_max_length", w.IopsReadMaxLength); Opt("iops_wr_max_length", w.IopsWriteMaxLength);
        Opt("iops_size", w.IopsSize);
        if (!string.IsNullOrEmpty(w.Group) && AnyLimit(w)) a["group"] = w.Group;
        return a;
    }

    /// <summary>Parses query-block's return array into one object per drive with a medium (empty CD-ROMs are left out).</summary>
    public static List<KvmGuestIoLimit> FromQueryBlock(JsonElement ret, KvmGuest guest, DateTimeOffset timestamp)
    {
        var list = new List<KvmGuestIoLimit>();
        if (ret.ValueKind != JsonValueKind.Array) return list;
        int index = 0;
        foreach (var e in ret.EnumerateArray())
        {
            index++;
            if (!e.TryGetProperty("inserted", out var ins) || ins.ValueKind != JsonValueKind.Object) continue;
            long L(string name) => ins.TryGetProperty(name, out var v) && v.TryGetInt64(out long x) ? x : 0;
            var r = new KvmGuestIoLimit
            {
                Name = guest.Name,
                Id = guest.Id,
                Drive = DriveName(e, ins, index),
                QdevId = S(e, "qdev") ?? "",
                Iops = L("iops"), IopsRead = L("iops_rd"), IopsWrite = L("iops_wr"),
                Bps = L("bps"), BpsRead = L("bps_rd"), BpsWrite = L("bps_wr"),
                IopsMax = L("iops_max"), IopsReadMax = L("iops_rd_max"), IopsWriteMax = L("iops_wr_max"),
                BpsMax = L("bps_max"), BpsReadMax = L("bps_rd_max"), BpsWriteMax = L("bps_wr_max"),
                IopsMaxLength = L("iops_max_length"), IopsReadMaxLength = L("iops_rd_max_length"), IopsWriteMaxLength = L("iops_wr_max_length"),
                BpsMaxLength = L("bps_max_length"), BpsReadMaxLength = L("bps_rd_max_length"), BpsWriteMaxLength = L("bps_wr_max_length"),
                IopsSize = L("iops_size"),
                Group = S(ins, "group"),
                Timestamp = timestamp,
            };
            r.Throttled = AnyLimit(r);
            if (!r.Throttled) r.Group = null;
            list.Add(r);
        }
        return list;
    }

    /// <summary>The limits in one line, e.g. "iops=200 bps=0 … group=g1" (only what is set; "none" when nothing is).</summary>
    public static string Describe(KvmGuestIoLimit w)
    {
        var parts = new List<string>();
        foreach (var (key, value) in Arguments(w).Where(p => p.Key is not ("id" or "device" or "group")).Select(p => (p.Key, (long)p.Value!)))
            if (value > 0) parts.Add($"{key}={value.ToString(CultureInfo.InvariantCulture)}");
        if (!string.IsNullOrEmpty(w.Group) && AnyLimit(w)) parts.Add("group=" + w.Group);
        return parts.Count == 0 ? "none (all limits removed)" : string.Join(' ', parts);
    }

    /// <summary>True when both have the same limits (group compared only when throttled).</summary>
    public static bool SameLimits(KvmGuestIoLimit a, KvmGuestIoLimit b) =>
        Arguments(a).Where(p => p.Key is not ("id" or "device")).Canonical() == Arguments(b).Where(p => p.Key is not ("id" or "device")).Canonical();

    static string Canonical(this IEnumerable<KeyValuePair<string, JsonNode?>> pairs)
    {
        var sb = new StringBuilder();
        foreach (var p in pairs) sb.Append(p.Key).Append('=').Append(p.Value?.ToJsonString()).Append(';');
        return sb.ToString();
    }

    static bool AnyLimit(KvmGuestIoLimit w) => w.Iops > 0 || w.IopsRead > 0 || w.IopsWrite > 0 || w.Bps > 0 || w.BpsRead > 0 || w.BpsWrite > 0;

    static KvmGuestIoLimit Copy(KvmGuestIoLimit c) => new()
    {
        Name = c.Name, Id = c.Id, Drive = c.Drive, QdevId = c.QdevId, Throttled = c.Throttled,
        Iops = c.Iops, IopsRead = c.IopsRead, IopsWrite = c.IopsWrite, Bps = c.Bps, BpsRead = c.BpsRead, BpsWrite = c.BpsWrite,
        IopsMax = c.IopsMax, IopsReadMax = c.IopsReadMax, IopsWriteMax = c.IopsWriteMax, BpsMax = c.BpsMax, BpsReadMax = c.BpsReadMax, BpsWriteMax = c.BpsWriteMax,
        IopsMaxLength = c.IopsMaxLength, IopsReadMaxLength = c.IopsReadMaxLength, IopsWriteMaxLength = c.IopsWriteMaxLength,
        BpsMaxLength = c.BpsMaxLength, BpsReadMaxLength = c.BpsReadMaxLength, BpsWriteMaxLength = c.BpsWriteMaxLength,
        IopsSize = c.IopsSize, Group = c.Group, Timestamp = c.Timestamp,
    };

    static string? S(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    static string DriveName(JsonElement e, JsonElement inserted, int index)
    {
        var device = S(e, "device");
        if (!string.IsNullOrEmpty(device)) return device;
        var qdev = S(e, "qdev");
        const string peripheral = "/machine/peripheral/";
        if (!string.IsNullOrEmpty(qdev)) return qdev.StartsWith(peripheral, StringComparison.Ordinal) ? qdev.Substring(peripheral.Length).Split('/')[0] : qdev;
        return S(inserted, "node-name") ?? $"drive{index}";
    }

    static async Task<List<KvmGuestIoLimit>> QueryAsync(QmpClient qmp, KvmGuest guest, string[]? drives, CancellationToken ct)
    {
        var ret = await qmp.ExecuteAsync("query-block", null, ct).ConfigureAwait(false);
        var all = FromQueryBlock(ret, guest, DateTimeOffset.UtcNow);
        if (drives is not { Length: > 0 }) return all;
        var picked = all.Where(d => Wildcard.MatchesAny(drives, d.Drive)).ToList();
        foreach (var p in drives.Where(p => !Wildcard.ContainsWildcard(p) && !all.Any(d => string.Equals(d.Drive, p, StringComparison.OrdinalIgnoreCase))))
            throw new KvmOcException(ErrorKind.NotFound, "DriveNotFound", $"Guest '{guest.Name}' has no drive '{p}' (it has: {string.Join(", ", all.Select(d => d.Drive))}).", p);
        return picked;
    }

    static async Task<QmpClient> ConnectAsync(KvmGuest guest, CancellationToken ct)
    {
        var socket = guest.QmpSocket ?? throw new KvmOcException(ErrorKind.InvalidOperation, "GuestHasNoQmp",
            $"Guest '{guest.Name}' (pid {guest.Id}) has no QMP socket, so its I/O limits cannot be read or set.", guest.Name,
            "Start guests with Start-KvmGuest, or by hand with -qmp unix:/path/qmp.sock,server=on,wait=off.");
        var qmp = await KvmGuestInventory.ConnectAsync(socket, QmpTimeout, ct).ConfigureAwait(false);
        qmp.CommandTimeout = QmpTimeout;
        return qmp;
    }
}
