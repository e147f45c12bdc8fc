using System.Diagnostics;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>How Stop-KvmGuest ends a guest.</summary>
public sealed class GuestStopOptions
{
    /// <summary>Skip the ACPI powerdown: QMP quit at once (like pulling the plug, but QEMU exits cleanly).</summary>
    public bool TurnOff { get; set; }

    /// <summary>SIGKILL the QEMU process when quit (or SIGTERM, without QMP) does not end it.</summary>
    public bool Force { get; set; }

    /// <summary>How long to wait for the guest to power itself off before QMP quit.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long to wait for QEMU to exit after quit (or SIGTERM) before giving up (or SIGKILL with Force).</summary>
    public TimeSpan QuitTimeout { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>How a guest ended.</summary>
public enum GuestStopMethod
{
    /// <summary>The guest powered itself off after the ACPI power button.</summary>
    PowerDown,
    /// <summary>QEMU quit on QMP's quit command.</summary>
    Quit,
    /// <summary>QEMU exited on SIGTERM (no QMP reachable).</summary>
    Terminate,
    /// <summary>QEMU was killed with SIGKILL (-Force).</summary>
    Kill,
    /// <summary>The guest was not running any more; only its run directory was removed.</summary>
    AlreadyStopped,
}

/// <summary>
/// Stops guests: ACPI powerdown over QMP (system_powerdown), wait, then QMP quit; SIGKILL only with Force. Removes the
/// guest's run directory; never touches its disks.
/// </summary>
public static class GuestStopper
{
    /// <summary>
    /// Running QEMU guests whose name matches any of <paramref name="namePatterns"/> (wildcards; all when null),
    /// plus guests whose run directory under <paramref name="runRoot"/> remains although QEMU is gone.
    /// </summary>
    public static List<KvmGuest> Find(IEnumerable<string>? namePatterns, string? runRoot = null, HostRoots? roots = null)
    {
        roots ??= HostRoots.Default;
        var patterns = namePatterns?.ToList();
        var found = new QemuProcessScanner(roots).Scan().Where(g => Wildcard.MatchesAny(patterns, g.Name)).ToList();
        var root = runRoot ?? GuestLauncher.DefaultRunRoot;
        if (Directory.Exists(root))
        {
            foreach (var dir in Directory.GetDirectories(root))
            {
                var name = Path.GetFileName(dir);
                if (!Wildcard.MatchesAny(patterns, name) || found.Any(g => g.Name == name)) continue;
                if (!File.Exists(Path.Combine(dir, GuestLauncher.CommandLineFile))) continue;
                found.Add(new KvmGuest { Name = name, RunDirectory = dir, State = "stopped", QmpSocket = Path.Combine(dir, GuestLauncher.QmpFile) });
            }
        }
        return found.OrderBy(g => g.Name, StringComparer.Ordinal).ToList();
    }

    /// <summary>What stopping will do, for ShouldProcess.</summary>
    public static string Describe(KvmGuest guest, GuestStopOptions o) =>
        (o.TurnOff ? "Turn off (QMP quit)" : $"ACPI power down, QMP quit after {o.Timeout.TotalSeconds:0} s")
        + (o.Force ? ", SIGKILL if QEMU does not exit" : "")
        + (guest.RunDirectory is null ? "" : $", remove {guest.RunDirectory}");

    /// <summary>Stops one guest and returns it with State "stopped". Fails with Timeout when it does not exit (without Force).</summary>
    public static async Task<(KvmGuest Guest, GuestStopMethod Method)> StopAsync(KvmGuest guest, GuestStopOptions o, IOperationObserver observer, CancellationToken ct = default, HostRoots? roots = null)
    {
        roots ??= HostRoots.Default;
        var sw = Stopwatch.StartNew();
        var scanner = new QemuProcessScanner(roots);
        var proc = guest.Id > 0 ? scanner.Read(guest.Id) : null;
        if (proc is not null && proc.Name != guest.Name) proc = null; // pid reused by another QEMU
        if (proc is null && guest.Id == 0)
            proc = scanner.Scan().FirstOrDefault(p => p.Name == guest.Name);
        var result = Clone(guest);
        if (proc is null)
        {
            if (guest.RunDirectory is not null && Directory.Exists(guest.RunDirectory))
            {
                observer.Verbose($"Guest '{guest.Name}' is not running; removing its run directory {guest.RunDirectory}.");
                GuestLauncher.RemoveRunDirectory(guest.RunDirectory);
                result.State = "stopped";
                return (result, GuestStopMethod.AlreadyStopped);
            }
            throw new KvmOcException(ErrorKind.NotFound, "GuestNotRunning", $"Guest '{guest.Name}' is not running.", guest.Name, "Get-KvmGuest lists the guests that run.");
        }
        int pid = proc.Id;
        var ticks = ProcessLiveness.StartTicks(roots, pid);
        var runDir = guest.RunDirectory ?? proc.RunDirectory;
        var socket = guest.QmpSocket ?? proc.QmpSocket;
        GuestStopMethod method;

        // Another user's guest: PermissionDenied at once (kill(pid, 0) is EPERM), not a wait that ends in a timeout.
        if (GuestLauncher.kill(pid, 0) != 0 && System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == Errno.EPERM)
            throw PermissionDenied(guest.Name, pid);

        // Graceful means QMP: keep trying until -TimeoutSeconds (a busy socket: QEMU greets the next client only when
        // the one it serves leaves), then fail and leave the guest running. SIGTERM only for a guest without any QMP
        // socket, or with -Force.
        QmpClient? qmp = null;
        if (socket is not null && FileKind.Of(socket) != PathKind.Missing)
        {
            try
            {
                qmp = await KvmGuestInventory.ConnectAsync(socket, o.Timeout, ct).ConfigureAwait(false);
            }
            catch (KvmOcException e) when (e.ErrorId == "QmpSocketMissing")
            {
                socket = null; // deleted meanwhile: no QMP socket at all
            }
            catch (KvmOcException e) when (e.Kind == ErrorKind.PermissionDenied)
            {
                throw PermissionDenied(guest.Name, pid, e);
            }
            catch (KvmOcException e) when (!o.Force)
            {
                throw new KvmOcException(ErrorKind.ResourceBusy, "GuestQmpBusy",
                    $"Guest '{guest.Name}' (pid {pid}) did not answer on its QMP socket '{socket}' within {o.Timeout.TotalSeconds:0.#} s ({e.Message}); it was left running.", guest.Name,
                    "Another client probably holds its QMP connection (QEMU serves one at a time, e.g. Measure-KvmGuestIops -Continuous), or the guest is hung: end that client and stop again, give a longer -TimeoutSeconds, or -Force to end the guest with SIGTERM (no ACPI power-down).", e);
            }
            catch (KvmOcException e)
            {
                observer.Warning($"Guest '{guest.Name}': QMP not reachable within {o.Timeout.TotalSeconds:0.#} s ({e.Message}); -Force: sending SIGTERM.");
            }
        }
        else if (socket is not null)
        {
            socket = null;
        }
        if (socket is null && qmp is null && !o.TurnOff)
            observer.Warning($"Guest '{guest.Name}' has no QMP socket, so it cannot be powered down gracefully; sending SIGTERM (QEMU quits).");
        try
        {
            if (!o.TurnOff && qmp is not null)
            {
                observer.Verbose($"Guest '{guest.Name}' (pid {pid}): QMP system_powerdown; waiting up to {o.Timeout.TotalSeconds:0} s");
                await qmp.ExecuteAsync("system_powerdown", null, ct).ConfigureAwait(false);
                if (await WaitForExitAsync(roots, pid, ticks, o.Timeout, guest.Name, observer, ct).ConfigureAwait(false))
                {
                    method = GuestStopMethod.PowerDown;
                    goto done;
                }
                observer.Verbose($"Guest '{guest.Name}' did not power off within {o.Timeout.TotalSeconds:0} s; QMP quit.");
            }

            if (qmp is not null)
            {
                observer.Verbose($"Guest '{guest.Name}' (pid {pid}): QMP quit");
                try { await qmp.ExecuteAsync("quit", null, ct).ConfigureAwait(false); }
                catch (KvmOcException e) when (e.Kind == ErrorKind.ConnectionError) { }
                method = GuestStopMethod.Quit;
            }
            else
            {
                observer.Verbose($"Guest '{guest.Name}' (pid {pid}): SIGTERM");
                if (ProcessLiveness.IsAlive(roots, pid, ticks) && GuestLauncher.kill(pid, 15) != 0 && System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == Errno.EPERM)
                    throw PermissionDenied(guest.Name, pid);
                method = GuestStopMethod.Terminate;
            }
            if (!await WaitForExitAsync(roots, pid, ticks, o.QuitTimeout, guest.Name, observer, ct).ConfigureAwait(false))
            {
                if (!o.Force)
                    throw new KvmOcException(ErrorKind.Timeout, "GuestStopTimeout", $"Guest '{guest.Name}' (pid {pid}) is still running {o.QuitTimeout.TotalSeconds:0} s after {(method == GuestStopMethod.Quit ? "QMP quit" : "SIGTERM")}.", guest.Name,
                        "Stop-KvmGuest -Force kills it (SIGKILL).");
                observer.Verbose($"Guest '{guest.Name}' (pid {pid}): SIGKILL");
                if (ProcessLiveness.IsAlive(roots, pid, ticks)) GuestLauncher.kill(pid, 9);
                method = GuestStopMethod.Kill;
                if (!await WaitForExitAsync(roots, pid, ticks, TimeSpan.FromSeconds(10), guest.Name, observer, ct).ConfigureAwait(false))
                    throw new KvmOcException(ErrorKind.Timeout, "GuestStopTimeout", $"Guest '{guest.Name}' (pid {pid}) survived SIGKILL (uninterruptible sleep?).", guest.Name);
            }
        done:;
        }
        finally
        {
            if (qmp is not null) await qmp.DisposeAsync().ConfigureAwait(false);
        }
        if (runDir is not null) GuestLauncher.RemoveRunDirectory(runDir);
        observer.Verbose($"Guest '{guest.Name}' stopped ({method}) in {sw.Elapsed.TotalSeconds:0.0} s.");
        result.State = "stopped";
        result.RunDirectory = runDir;
        return (result, method);
    }

    static KvmOcException PermissionDenied(string name, int pid, Exception? inner = null) => new(ErrorKind.PermissionDenied, "GuestStopPermissionDenied",
        $"Permission denied: guest '{name}' (pid {pid}) belongs to another user; it was left running.", name,
        "Run as root (sudo pwsh, or sudo kvmoc), or as the user who started the guest.", inner);

    static async Task<bool> WaitForExitAsync(HostRoots roots, int pid, ulong? ticks, TimeSpan timeout, string name, IOperationObserver observer, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        var lastReport = TimeSpan.Zero;
        while (ProcessLiveness.IsAlive(roots, pid, ticks))
        {
            if (sw.Elapsed >= timeout) return false;
            if (sw.Elapsed - lastReport >= TimeSpan.FromSeconds(1))
            {
                lastReport = sw.Elapsed;
                observer.Progress(new ProgressInfo("Stopping guests", $"Waiting for '{name}' to exit ({sw.Elapsed.TotalSeconds:0}/{timeout.TotalSeconds:0} s)",
                    (int)Math.Min(100, 100 * sw.Elapsed.TotalSeconds / Math.Max(1, timeout.TotalSeconds)), ActivityId: 3));
            }
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
        return true;
    }

    static KvmGuest Clone(KvmGuest g) => System.Text.Json.JsonSerializer.Deserialize(System.Text.Json.JsonSerializer.Serialize(g, OutputJson.Default.KvmGuest), OutputJson.Default.KvmGuest)!;
}
