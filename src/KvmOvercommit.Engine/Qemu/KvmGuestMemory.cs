using System.Text.Json;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>A guest's memory as its virtio balloon reports it (QMP query-balloon), next to what QEMU gave it (-m) and what the host spends (RSS).</summary>
public sealed class KvmGuestMemory
{
    /// <summary>The guest name.</summary>
    public string Name { get; set; } = "";
    /// <summary>The QEMU process id.</summary>
    public int Id { get; set; }
    /// <summary>Memory the guest has now (configured memory minus the balloon), in bytes (query-balloon "actual").</summary>
    public long ActualBytes { get; set; }
    /// <summary>ActualBytes in MiB.</summary>
    public double ActualMB { get; set; }
    /// <summary>The balloon target last set with Set-KvmGuestMemory, in MiB; null when unknown (QEMU does not report it).</summary>
    public long? TargetMB { get; set; }
    /// <summary>Memory the guest was started with (-m), in MiB.</summary>
    public long MemoryMB { get; set; }
    /// <summary>Memory the balloon has taken away from the guest, in MiB (MemoryMB - ActualMB).</summary>
    public double BalloonMB { get; set; }
    /// <summary>Resident memory of the QEMU process, in bytes.</summary>
    public long? RssBytes { get; set; }
    /// <summary>RssBytes in MiB.</summary>
    public double? RssMB { get; set; }
    /// <summary>After Set-KvmGuestMemory: the guest's actual memory (MiB) before the change, so it can be restored.</summary>
    public double? PreviousActualMB { get; set; }
    /// <summary>When the balloon was read (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }

    // The guest's own view: virtio-balloon statistics (QOM guest-stats). Null where the guest reports none.

    /// <summary>Memory the guest has free (MemFree), in bytes; null when the guest reports none.</summary>
    public long? GuestFreeBytes { get; set; }
    /// <summary>GuestFreeBytes in MiB.</summary>
    public double? GuestFreeMB { get; set; }
    /// <summary>Memory the guest could use without swapping (MemAvailable), in bytes.</summary>
    public long? GuestAvailableBytes { get; set; }
    /// <summary>GuestAvailableBytes in MiB.</summary>
    public double? GuestAvailableMB { get; set; }
    /// <summary>Memory the guest kernel sees in total (MemTotal: -m minus the balloon), in bytes.</summary>
    public long? GuestTotalBytes { get; set; }
    /// <summary>The guest's page cache (disk caches it could drop), in bytes.</summary>
    public long? GuestDiskCachesBytes { get; set; }
    /// <summary>Bytes the guest swapped in since it booted.</summary>
    public long? GuestSwapInBytes { get; set; }
    /// <summary>Bytes the guest swapped out since it booted.</summary>
    public long? GuestSwapOutBytes { get; set; }
    /// <summary>The guest's major page faults since it booted.</summary>
    public long? GuestMajorFaults { get; set; }
    /// <summary>The guest's minor page faults since it booted.</summary>
    public long? GuestMinorFaults { get; set; }
    /// <summary>When the guest last sent its statistics (UTC); null when it never did.</summary>
    public DateTimeOffset? StatsLastUpdate { get; set; }
    /// <summary>How often QEMU asks the guest for statistics, in seconds (the balloon's guest-stats-polling-interval; 0 = never).</summary>
    public long? StatsPollingIntervalSeconds { get; set; }
}

/// <summary>
/// The virtio balloon's guest statistics over QMP: the balloon device's QOM path (qom-list of /machine/peripheral and
/// /machine/peripheral-anon), turned on with qom-set guest-stats-polling-interval, read with qom-get guest-stats.
/// </summary>
public static class BalloonStatistics
{
    /// <summary>The polling interval Get-KvmGuestMemory sets where none is set (seconds).</summary>
    public const int DefaultPollingSeconds = 2;

    /// <summary>The QOM path of the guest's balloon device, or null when it has none.</summary>
    public static async Task<string?> FindDevicePathAsync(QmpClient qmp, CancellationToken ct)
    {
        foreach (var parent in new[] { "/machine/peripheral", "/machine/peripheral-anon" })
        {
            JsonElement list;
            try { list = await qmp.ExecuteAsync("qom-list", new System.Text.Json.Nodes.JsonObject { ["path"] = parent }, ct).ConfigureAwait(false); }
            catch (KvmOcException e) when (e.ErrorId.StartsWith("Qmp", StringComparison.Ordinal) && e.Kind != ErrorKind.Timeout && e.Kind != ErrorKind.ConnectionError) { continue; }
            if (list.ValueKind != JsonValueKind.Array) continue;
            foreach (var item in list.EnumerateArray())
            {
                var type = item.TryGetProperty("type", out var t) ? t.GetString() : null;
                if (type is not null && type.StartsWith("child<virtio-balloon", StringComparison.Ordinal) && item.TryGetProperty("name", out var n))
                    return parent + "/" + n.GetString();
            }
        }
        return null;
    }

    /// <summary>
    /// Fills the statistics of <paramref name="m"/>. With <paramref name="pollingSeconds"/> &gt; 0, a balloon that does not
    /// poll yet is set to poll that often and the first report is awaited up to <paramref name="firstReport"/>.
    /// </summary>
    public static async Task FillAsync(QmpClient qmp, KvmGuestMemory m, int pollingSeconds, TimeSpan firstReport, IOperationObserver observer, CancellationToken ct)
    {
        var path = await FindDevicePathAsync(qmp, ct).ConfigureAwait(false);
        if (path is null) return;
        try
        {
            long interval = (await qmp.ExecuteAsync("qom-get", new System.Text.Json.Nodes.JsonObject { ["path"] = path, ["property"] = "guest-stats-polling-interval" }, ct).ConfigureAwait(false)).GetInt64();
            bool turnedOn = false;
            // The guest sends one report when its driver starts, before anything asks: a report from before polling
            // was turned on can be minutes old (the tiny guest's is from before its fill), so wait for a newer one.
            var turnedOnAt = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds());
            if (interval == 0 && pollingSeconds > 0)
            {
                observer.Verbose($"QMP {qmp.SocketPath}: qom-set {path} guest-stats-polling-interval {pollingSeconds}");
                await qmp.ExecuteAsync("qom-set", new System.Text.Json.Nodes.JsonObject { ["path"] = path, ["property"] = "guest-stats-polling-interval", ["value"] = pollingSeconds }, ct).ConfigureAwait(false);
                interval = pollingSeconds;
                turnedOn = true;
            }
            var deadline = DateTime.UtcNow + (turnedOn ? firstReport : TimeSpan.Zero);
            while (true)
            {
                var stats = await qmp.ExecuteAsync("qom-get", new System.Text.Json.Nodes.JsonObject { ["path"] = path, ["property"] = "guest-stats" }, ct).ConfigureAwait(false);
                Apply(stats, m, interval);
                if (m.StatsLastUpdate is { } at && (!turnedOn || at >= turnedOnAt) || DateTime.UtcNow >= deadline) break;
                await Task.Delay(200, ct).ConfigureAwait(false);
            }
        }
        catch (KvmOcException e) when (e.ErrorId.StartsWith("Qmp", StringComparison.Ordinal) && e.Kind != ErrorKind.Timeout && e.Kind != ErrorKind.ConnectionError)
        {
            observer.Verbose($"Guest '{m.Name}': no balloon statistics: {e.Message}");
        }
    }

    /// <summary>
    /// Sets the statistics from qom-get guest-stats (<c>{"stats": {"stat-free-memory": …}, "last-update": …}</c>).
    /// A value of -1 or a missing one (not reported by the guest), and every value while last-update is 0, becomes null.
    /// </summary>
    public static void Apply(JsonElement guestStats, KvmGuestMemory m, long? pollingIntervalSeconds)
    {
        m.StatsPollingIntervalSeconds = pollingIntervalSeconds;
        long lastUpdate = guestStats.ValueKind == JsonValueKind.Object && guestStats.TryGetProperty("last-update", out var lu) && lu.TryGetInt64(out long l) ? l : 0;
        JsonElement stats = default;
        bool any = lastUpdate > 0 && guestStats.TryGetProperty("stats", out stats) && stats.ValueKind == JsonValueKind.Object;
        long? Get(string key) => any && stats.TryGetProperty(key, out var v) && v.TryGetInt64(out long x) && x >= 0 ? x : null;
        m.StatsLastUpdate = lastUpdate > 0 ? DateTimeOffset.FromUnixTimeSeconds(lastUpdate) : null;
        m.GuestFreeBytes = Get("stat-free-memory");
        m.GuestAvailableBytes = Get("stat-available-memory");
        m.GuestTotalBytes = Get("stat-total-memory");
        m.GuestDiskCachesBytes = Get("stat-disk-caches");
        m.GuestSwapInBytes = Get("stat-swap-in");
        m.GuestSwapOutBytes = Get("stat-swap-out");
        m.GuestMajorFaults = Get("stat-major-faults");
        m.GuestMinorFaults = Get("stat-minor-faults");
        m.GuestFreeMB = m.GuestFreeBytes is { } fb ? Math.Round(Units.ToMiB(fb), 2) : null;
        m.GuestAvailableMB = m.GuestAvailableBytes is { } ab ? Math.Round(Units.ToMiB(ab), 2) : null;
    }
}

/// <summary>What Set-KvmGuestMemory will do to one guest: described for -WhatIf, then applied.</summary>
public sealed class BalloonPlan
{
    /// <summary>The guest.</summary>
    public KvmGuest Guest { get; init; } = new();
    /// <summary>The new balloon target in MiB.</summary>
    public long TargetMB { get; init; }
    /// <summary>For ShouldProcess: the target.</summary>
    public string Target => $"{Guest.Name} (pid {Guest.Id})";
    /// <summary>For ShouldProcess: the action.</summary>
    public string Action => $"Set balloon target to {TargetMB} MiB (of {Guest.MemoryMB} MiB)";
}

/// <summary>
/// Get-/Set-KvmGuestMemory: the virtio balloon over QMP (query-balloon, balloon). The last target set is remembered in
/// the guest's run directory (balloon-target) when it has one, since QEMU reports only the actual size.
/// </summary>
public static class KvmGuestBalloon
{
    /// <summary>The file in a run directory that remembers the last balloon target (MiB).</summary>
    public const string TargetFile = "balloon-target";

    /// <summary>How long one QMP exchange may take.</summary>
    public static TimeSpan QmpTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Reads the balloon of one guest.</summary>
    public static async Task<KvmGuestMemory> GetAsync(KvmGuest guest, CancellationToken ct)
    {
        var socket = RequireQmp(guest);
        await using var qmp = await KvmGuestInventory.ConnectAsync(socket, QmpTimeout, ct).ConfigureAwait(false);
        qmp.CommandTimeout = QmpTimeout;
        return await QueryAsync(qmp, guest, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads the balloon of one guest and its guest statistics; <paramref name="statsPollingSeconds"/> &gt; 0 turns the
    /// statistics on where they are off (and waits up to 3 s for the guest's first report); 0 reads only what is there.
    /// </summary>
    public static async Task<KvmGuestMemory> GetAsync(KvmGuest guest, int statsPollingSeconds, IOperationObserver observer, CancellationToken ct)
    {
        var socket = RequireQmp(guest);
        await using var qmp = await KvmGuestInventory.ConnectAsync(socket, QmpTimeout, ct).ConfigureAwait(false);
        qmp.CommandTimeout = QmpTimeout;
        var m = await QueryAsync(qmp, guest, ct).ConfigureAwait(false);
        await BalloonStatistics.FillAsync(qmp, m, statsPollingSeconds, TimeSpan.FromSeconds(3), observer, ct).ConfigureAwait(false);
        return m;
    }

    /// <summary>Checks the request and describes it; nothing is changed. TargetMB must be 1..MemoryMB.</summary>
    public static BalloonPlan Plan(KvmGuest guest, long targetMB)
    {
        if (targetMB <= 0)
            throw new KvmOcException(ErrorKind.InvalidArgument, "BalloonTargetInvalid", $"A balloon target of {targetMB} MiB is not possible: it must be at least 1 MiB.", targetMB);
        if (guest.MemoryMB > 0 && targetMB > guest.MemoryMB)
            throw new KvmOcException(ErrorKind.InvalidArgument, "BalloonTargetTooLarge",
                $"Guest '{guest.Name}' was started with {guest.MemoryMB} MiB; a balloon can only shrink it, not grow it to {targetMB} MiB.", targetMB,
                $"Use a target between 1 and {guest.MemoryMB} MiB.");
        RequireQmp(guest);
        return new BalloonPlan { Guest = guest, TargetMB = targetMB };
    }

    /// <summary>
    /// Sets the balloon target. With <paramref name="wait"/>, polls query-balloon until the guest is within 1 MiB of the
    /// target or <paramref name="timeout"/> passes (then a warning, not an error: the guest decides how fast it gives memory back).
    /// </summary>
    public static async Task<KvmGuestMemory> ApplyAsync(BalloonPlan plan, bool wait, TimeSpan timeout, IOperationObserver observer, CancellationToken ct)
    {
        if (wait) Validation.Timeout(timeout);
        var guest = plan.Guest;
        var socket = RequireQmp(guest);
        await using var qmp = await KvmGuestInventory.ConnectAsync(socket, QmpTimeout, ct).ConfigureAwait(false);
        qmp.CommandTimeout = QmpTimeout;
        var before = await QueryAsync(qmp, guest, ct).ConfigureAwait(false);
        long bytes = plan.TargetMB * Units.MiB;
        observer.Verbose($"QMP {socket}: {{\"execute\":\"balloon\",\"arguments\":{{\"value\":{bytes}}}}}");
        try
        {
            await qmp.ExecuteAsync("balloon", new System.Text.Json.Nodes.JsonObject { ["value"] = bytes }, ct).ConfigureAwait(false);
        }
        catch (KvmOcException e) when (e.ErrorId.StartsWith("Qmp", StringComparison.Ordinal) && e.Kind != ErrorKind.Timeout && e.Kind != ErrorKind.ConnectionError)
        {
            throw Translate(e, guest);
        }
        RememberTarget(guest, plan.TargetMB);
        var after = await QueryAsync(qmp, guest, ct).ConfigureAwait(false);
        if (wait)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (Math.Abs(after.ActualBytes - bytes) > Units.MiB && DateTime.UtcNow < deadline)
            {
                observer.Progress(new ProgressInfo("Set-KvmGuestMemory", $"{guest.Name}: {after.ActualMB:0} MiB → {plan.TargetMB} MiB"));
                await Task.Delay(200, ct).ConfigureAwait(false);
                after = await QueryAsync(qmp, guest, ct).ConfigureAwait(false);
            }
            observer.Progress(new ProgressInfo("Set-KvmGuestMemory", "done", Completed: true));
            if (Math.Abs(after.ActualBytes - bytes) > Units.MiB)
                observer.Warning($"Guest '{guest.Name}' is at {after.ActualMB:0.#} MiB after {timeout.TotalSeconds:0} s, not yet at the target {plan.TargetMB} MiB (does it load virtio_balloon?).");
        }
        after.TargetMB = plan.TargetMB;
        after.PreviousActualMB = before.ActualMB;
        return after;
    }

    static async Task<KvmGuestMemory> QueryAsync(QmpClient qmp, KvmGuest guest, CancellationToken ct)
    {
        JsonElement ret;
        try
        {
            ret = await qmp.ExecuteAsync("query-balloon", null, ct).ConfigureAwait(false);
        }
        catch (KvmOcException e) when (e.ErrorId.StartsWith("Qmp", StringComparison.Ordinal) && e.Kind != ErrorKind.Timeout && e.Kind != ErrorKind.ConnectionError)
        {
            throw Translate(e, guest);
        }
        return FromQueryBalloon(ret, guest, ReadTarget(guest), DateTimeOffset.UtcNow);
    }

    /// <summary>Builds the output object from query-balloon's return value.</summary>
    public static KvmGuestMemory FromQueryBalloon(JsonElement ret, KvmGuest guest, long? targetMB, DateTimeOffset timestamp)
    {
        if (ret.ValueKind != JsonValueKind.Object || !ret.TryGetProperty("actual", out var a) || !a.TryGetInt64(out long actual))
            throw new KvmOcException(ErrorKind.InvalidData, "BalloonAnswerInvalid", $"query-balloon of guest '{guest.Name}' returned no 'actual' size: {ret}", guest.Name);
        double actualMB = Units.ToMiB(actual);
        return new KvmGuestMemory
        {
            Name = guest.Name,
            Id = guest.Id,
            ActualBytes = actual,
            ActualMB = actualMB,
            TargetMB = targetMB,
            MemoryMB = guest.MemoryMB,
            BalloonMB = Math.Round(Math.Max(0, guest.MemoryMB - actualMB), 2),
            RssBytes = guest.RssBytes,
            RssMB = Units.ToMiB(guest.RssBytes),
            Timestamp = timestamp,
        };
    }

    /// <summary>QEMU's "No balloon device has been activated" becomes a clear error with what to do.</summary>
    public static KvmOcException Translate(KvmOcException e, KvmGuest guest)
    {
        if (e.ErrorId == "QmpDeviceNotActive" || e.Message.Contains("balloon device", StringComparison.OrdinalIgnoreCase))
            return new KvmOcException(ErrorKind.InvalidOperation, "GuestHasNoBalloon",
                $"Guest '{guest.Name}' (pid {guest.Id}) has no balloon device: {e.Message}", guest.Name,
                "Start the guest with a balloon (Start-KvmGuest -Balloon, the default; by hand: -device virtio-balloon-pci).", e);
        return e;
    }

    static string RequireQmp(KvmGuest guest) => guest.QmpSocket ?? throw new KvmOcException(ErrorKind.InvalidOperation, "GuestHasNoQmp",
        $"Guest '{guest.Name}' (pid {guest.Id}) has no QMP socket, so its balloon and block statistics cannot be reached.", guest.Name,
        "Start guests with Start-KvmGuest, or by hand with -qmp unix:/path/qmp.sock,server=on,wait=off.");

    static void RememberTarget(KvmGuest guest, long targetMB)
    {
        if (guest.RunDirectory is null || !Directory.Exists(guest.RunDirectory)) return;
        try { File.WriteAllText(Path.Combine(guest.RunDirectory, TargetFile), targetMB.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* only a memo: the balloon itself is set */ }
    }

    static long? ReadTarget(KvmGuest guest)
    {
        if (guest.RunDirectory is null) return null;
        try
        {
            var text = File.ReadAllText(Path.Combine(guest.RunDirectory, TargetFile)).Trim();
            return long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long t) ? t : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
