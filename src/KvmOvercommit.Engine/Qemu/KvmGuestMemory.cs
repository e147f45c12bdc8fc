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
