using System.Diagnostics;
using System.Globalization;
using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Memory;
using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Experiment;

/// <summary>
/// -ValidateEstimate: Get-OvercommitReport -Cgroup's EstimatedAdditionalGuests over the experiment's guests, then more
/// guests of the same kind (same -m, vCPUs, boot and fill) booted into the cgroup one by one until the next one no
/// longer fits: the kernel OOM-kills a QEMU in the cgroup, or the new guest does not get ready (its QEMU fails to start,
/// exits, or stays short of memory past the ready timeout). The guests started here join the experiment's, so its
/// cleanup stops them; an OOM victim is already gone.
/// </summary>
public static class ExperimentValidator
{
    /// <summary>How long a guest that printed its ready line is watched before it counts as fitted (late growth, a late OOM kill).</summary>
    public static readonly TimeSpan Settle = TimeSpan.FromSeconds(3);

    /// <summary>The goal of issue 14: within 15% or 1 guest.</summary>
    public static bool WithinGoal(int? predicted, int actual) => predicted is int p && (Math.Abs(p - actual) <= 1 || Math.Abs(p - actual) <= 0.15 * actual);

    /// <summary>Runs the check; <paramref name="started"/> and <paramref name="created"/> get the guests and overlays it adds.</summary>
    public static async Task<ExperimentValidation> RunAsync(ExperimentPlan plan, MemoryCgroup cgroup, List<KvmGuest> started, List<string> created, HostJournal journal, IOperationObserver observer, CancellationToken ct)
    {
        var o = plan.Options;
        var roots = o.Roots ?? HostRoots.Default;
        var scanner = new QemuProcessScanner(roots);
        var alive = started.Where(g => scanner.Read(g.Id) is not null).ToList();
        var quiet = new QuietObserver(observer, warnings: false);
        var report = await new OvercommitReportBuilder(roots, () => alive.Select(g => scanner.Read(g.Id)).OfType<KvmGuest>().ToList()) { Cgroup = cgroup.Path, ReadIopsLimits = false }
            .BuildAsync(o.HeadroomPercent, 0, probeDisks: false, quiet, ct).ConfigureAwait(false);
        var v = new ExperimentValidation
        {
            Cgroup = cgroup.Path,
            LimitBytes = report.CgroupLimitBytes ?? 0,
            BaseGuests = report.CgroupGuestCount ?? 0,
            PerGuestBytes = report.CgroupPerGuestBytes,
            PredictedAdditionalGuests = report.EstimatedAdditionalGuests,
            Explanation = report.Explanation.Where(l => l.Contains("cgroup", StringComparison.Ordinal) && !l.StartsWith("Host-wide", StringComparison.Ordinal)).ToArray(),
        };
        foreach (var line in v.Explanation) observer.Verbose(line);
        // Enough to see the estimate fail either way, bounded.
        int most = Math.Min(1000, (v.PredictedAdditionalGuests ?? 8) * 2 + 4);
        TinyGuestImage? tiny = plan.TinyGuest ? await TinyGuest.GetAsync(null, quiet, ct).ConfigureAwait(false) : null;
        var backing = QcowOverlayWriter.OpenBacking(plan.BaseImage, null, quiet);
        long oom0 = cgroup.OomKills;
        var usage = new List<long>();
        var stem = $"{o.NamePrefix}-{plan.RunId}-v";
        for (int k = 1; k <= most; k++)
        {
            ct.ThrowIfCancellationRequested();
            var name = stem + k.ToString(CultureInfo.InvariantCulture);
            observer.Progress(new ProgressInfo("Validating the estimate", $"booting guest {k} into {cgroup.Path} (predicted {v.PredictedAdditionalGuests?.ToString(CultureInfo.InvariantCulture) ?? "–"})", ActivityId: 5));
            var overlay = Path.Combine(plan.WorkDirectory, name + ".qcow2");
            journal.AddFile(overlay);
            QcowOverlayWriter.Apply(QcowOverlayWriter.Plan(overlay, backing, new QcowOverlayOptions(), quiet), quiet, syncDirectory: false);
            created.Add(overlay);
            var start = new GuestStartOptions
            {
                Name = name, DiskPath = overlay, MemoryMB = o.MemoryMB, CpuCount = o.CpuCount, Accelerator = o.Accelerator, RunDirectory = o.RunDirectory, Cgroup = cgroup.Path,
            };
            if (tiny is not null)
            {
                start.Kernel = tiny.Kernel;
                start.Initrd = tiny.Initrd;
                start.KernelArguments = plan.KernelArguments;
                start.Network = GuestNetwork.None;
                start.NoVnc = true;
            }
            if (started.FirstOrDefault()?.Accelerator == "tcg") start.Accelerator = GuestAccelerator.Tcg;
            KvmGuest guest;
            try
            {
                var launch = GuestLauncher.Plan(start, quiet, o.Roots);
                journal.SetGuest(launch.Name, 0, launch.RunDirectory);
                guest = await GuestLauncher.StartAsync(launch, quiet, ct).ConfigureAwait(false);
                journal.SetGuest(guest.Name, guest.Id, guest.RunDirectory);
                started.Add(guest);
            }
            catch (KvmOcException e)
            {
                v.StopReason = $"guest {k} did not start: {e.Message}";
                break;
            }
            var stop = await WaitFitsAsync(guest, tiny?.ReadyMarker, cgroup, oom0, started, roots, o.ReadyTimeout, ct).ConfigureAwait(false);
            if (stop is not null)
            {
                v.StopReason = $"guest {k}: {stop}";
                break;
            }
            v.ActualAdditionalGuests = k;
            usage.Add(cgroup.UsageBytes);
            observer.Verbose($"Validation: guest {k} ({name}) fits; the cgroup is charged {Units.ToMiB(usage[^1]):0.#} of {Units.ToMiB(v.LimitBytes):0.#} MiB.");
        }
        v.StopReason ??= $"stopped after {most} guest(s) without reaching the limit";
        v.OomKills = cgroup.OomKills - oom0;
        v.Victims = started.Where(g => scanner.Read(g.Id) is null).Select(g => g.Name).ToArray();
        v.UsageAfterEachBytes = usage.ToArray();
        if (v.PredictedAdditionalGuests is int p && v.ActualAdditionalGuests > 0)
            v.ErrorPercent = Math.Round(100.0 * (p - v.ActualAdditionalGuests) / v.ActualAdditionalGuests, 1);
        v.WithinGoal = WithinGoal(v.PredictedAdditionalGuests, v.ActualAdditionalGuests);
        observer.Progress(new ProgressInfo("Validating the estimate", "done", ActivityId: 5, Completed: true));
        return v;
    }

    /// <summary>Null when the guest got ready and nothing was OOM-killed for <see cref="Settle"/>; else why it does not fit.</summary>
    static async Task<string?> WaitFitsAsync(KvmGuest guest, string? marker, MemoryCgroup cgroup, long oom0, List<KvmGuest> all, HostRoots roots, TimeSpan timeout, CancellationToken ct)
    {
        var scanner = new QemuProcessScanner(roots);
        var sw = Stopwatch.StartNew();
        TimeSpan? readyAt = marker is null ? TimeSpan.FromSeconds(20) : null; // a disk guest has no ready line: 20 s of boot
        while (true)
        {
            if (cgroup.OomKills > oom0)
            {
                var gone = all.Where(g => scanner.Read(g.Id) is null).Select(g => g.Name).ToList();
                return $"the kernel OOM-killed {(gone.Count > 0 ? string.Join(", ", gone) : "a process")} in the cgroup ({cgroup.OomKills - oom0} kill(s))";
            }
            if (scanner.Read(guest.Id) is null) return "its QEMU exited before it was ready";
            if (readyAt is null && guest.SerialLog is not null && File.Exists(guest.SerialLog))
            {
                var log = File.ReadAllText(guest.SerialLog);
                if (log.Contains(marker!, StringComparison.Ordinal)) readyAt = sw.Elapsed;
                else if (log.Contains("Kernel panic", StringComparison.Ordinal)) return "its kernel panicked while booting";
            }
            if (readyAt is TimeSpan r && sw.Elapsed >= r + Settle) return null;
            if (sw.Elapsed > timeout) return $"it did not get ready within {timeout.TotalSeconds:0} s (the cgroup is charged {Units.ToMiB(cgroup.UsageBytes):0.#} MiB: sustained pressure)";
            await Task.Delay(200, ct).ConfigureAwait(false);
        }
    }
}
