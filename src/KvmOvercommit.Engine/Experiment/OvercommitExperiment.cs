using KvmOvercommit.Engine.Fleet;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Ksm.AutoTune;
using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.Experiment;

/// <summary>
/// Invoke-OvercommitExperiment's engine: creates one overlay per guest, starts the guests, and for each KSM profile
/// unmerges everything, tunes KSM, samples KSM, the guests' RSS and ksmd's CPU, and summarizes. Cleans up in finally
/// — also on cancellation and failure: stops its guests, deletes only the files it created, restores every KSM
/// setting it found.
/// </summary>
public static class OvercommitExperiment
{
    /// <summary>Progress activity ids (Start-KvmGuest's stagger uses 2, Stop-KvmGuest's wait 3).</summary>
    const int MainActivity = 1, ProfileActivity = 4;
    const string Activity = "Overcommit experiment";

    /// <summary>Checks the options against this host and decides names and paths. Changes nothing.</summary>
    public static ExperimentPlan Plan(ExperimentOptions options, IOperationObserver? observer = null)
    {
        observer ??= NullObserver.Instance;
        var o = options;
        var roots = o.Roots ?? HostRoots.Default;
        static KvmOcException Bad(string id, string message, object? target, string? hint = null) => new(ErrorKind.InvalidArgument, id, message, target, hint);
        if (o.GuestCount is < 1 or > 1000) throw Bad("ExperimentInvalidGuestCount", $"-GuestCount {o.GuestCount} must be from 1 to 1000.", o.GuestCount);
        if (o.MemoryMB < 16) throw Bad("MemoryTooSmall", $"-MemoryMB {o.MemoryMB} is too small (at least 16).", o.MemoryMB);
        if (o.MemoryMB > GuestLauncher.MaxMemoryMB) throw Bad("MemoryTooLarge", $"-MemoryMB {o.MemoryMB} is too large (at most {GuestLauncher.MaxMemoryMB}, 16 TiB).", o.MemoryMB);
        if (o.CpuCount is < 1 or > GuestLauncher.MaxCpuCount) throw Bad("CpuCountInvalid", $"-CpuCount {o.CpuCount} must be from 1 to {GuestLauncher.MaxCpuCount}.", o.CpuCount);
        if (Validation.IsAutoStagger(o.StaggerSeconds)) { o.StaggerAuto = true; o.StaggerSeconds = 0; }
        Validation.StaggerSeconds(o.StaggerSeconds);
        if (o.StaggerAuto && o.StaggerSeconds > 0) throw Bad("InvalidStagger", "-StaggerSeconds is either Auto or a number of seconds, not both.", o.StaggerSeconds);
        if (o.DeviceIopsCapacity is double capacity) Validation.DeviceIopsCapacity(capacity);
        bool hasFio = ToolRunner.Which("fio") is not null;
        if (o.StaggerAuto && o.DeviceIopsCapacity is null && !hasFio)
            throw new KvmOcException(ErrorKind.NotInstalled, "FioNotInstalled", "-StaggerSeconds Auto needs the IOPS capacity of the device under the overlays: no -DeviceIopsCapacity was given and fio, which would measure it, is not installed.", "fio",
                "Give -DeviceIopsCapacity N (Measure-DeviceIopsCapacity on another host of this kind tells N), or install fio: apt-get install fio");
        Validation.Interval(o.Interval, Validation.MinExperimentInterval);
        Validation.Duration(o.Duration);
        if (o.Duration is TimeSpan d && d < o.Interval) throw Bad("ExperimentInvalidDuration", $"-Duration {d} is shorter than one sampling interval ({o.Interval.TotalSeconds} s).", d,
            "Give a -Duration of at least -IntervalSeconds (a number is seconds: -Duration 120), or a smaller -IntervalSeconds.");
        if (o.Profiles is not { Length: > 0 }) throw Bad("ExperimentNoProfile", "-KsmProfile needs at least one profile (Default, Aggressive, Advisor, Adaptive).", null);
        if (o.Profiles.Distinct().Count() != o.Profiles.Length) throw Bad("ExperimentDuplicateProfile", $"-KsmProfile names a profile twice: {string.Join(", ", o.Profiles)}.", string.Join(",", o.Profiles));
        if (o.FillMiB is < 0 || o.FillMiB > o.MemoryMB) throw Bad("ExperimentInvalidFill", $"The fill ({o.FillMiB} MiB) must be from 0 to -MemoryMB ({o.MemoryMB}).", o.FillMiB);

        if (!KsmStatReader.IsAvailable(roots))
            throw new KvmOcException(ErrorKind.NotInstalled, "KsmNotAvailable", $"This kernel has no KSM: {roots.Ksm} does not exist.", roots.Ksm, "Use a kernel built with CONFIG_KSM=y.");
        var ksm = KsmStatReader.Read(roots);
        if (o.Profiles.Contains(ExperimentProfile.Advisor) && ksm.AdvisorMode is null)
            throw new KvmOcException(ErrorKind.NotInstalled, "KsmAdvisorNotAvailable", "The Advisor profile needs advisor_mode (Linux 6.8 and later); this kernel has none.", KsmKnob.AdvisorMode,
                "Leave Advisor out of -KsmProfile.");
        var run = Path.Combine(roots.Ksm, KsmKnob.Run);
        if (access(run, 2 /* W_OK */) != 0)
            throw new KvmOcException(ErrorKind.PermissionDenied, "KsmPermissionDenied", $"No permission to write {run}: the experiment tunes KSM.", run,
                "Run as root: sudo pwsh (then Invoke-OvercommitExperiment …), or sudo kvmoc experiment ….");
        // A run killed earlier left guests, files and KSM settings behind: adopting them as the original would be wrong.
        HostJournal.RefuseIfDeadRunFound(o.JournalDirectory);
        if (ToolRunner.Which("qemu-system-x86_64") is null)
            throw new KvmOcException(ErrorKind.NotInstalled, "QemuNotInstalled", "'qemu-system-x86_64' is not installed.", "qemu-system-x86_64", "Install it: apt-get install qemu-system-x86");

        var id = o.RunId ?? Guid.NewGuid().ToString("N")[..6];
        if (id.Length == 0 || id.Any(c => !char.IsAsciiLetterOrDigit(c))) throw Bad("ExperimentInvalidRunId", $"The run id '{id}' must be letters and digits.", id);
        var stem = $"{o.NamePrefix}-{id}";
        bool createsBase = o.BaseImage is null, tiny = o.TinyGuest ?? createsBase;
        if (o.IoLoadPercent is < 0 or > 100) throw Bad("ExperimentInvalidIoLoad", $"-IoLoadPercent {o.IoLoadPercent} must be from 0 to 100.", o.IoLoadPercent);
        if (o.IoLoadPercent > 0 && o.Network != ExperimentNetworkMode.Isolated) throw Bad("ExperimentIoLoadNeedsNetwork", "-IoLoadPercent starts the load through Ansible, so it needs -Network Isolated.", o.IoLoadPercent);
        if (o.IoLoadSeconds is < 1 or > 3600) throw Bad("ExperimentInvalidIoLoad", $"-IoLoadSeconds {o.IoLoadSeconds} must be from 1 to 3600.", o.IoLoadSeconds);
        if (o.Network == ExperimentNetworkMode.Isolated && !tiny)
            throw Bad("ExperimentNetworkNeedsTinyGuest", "-Network Isolated boots the fleet tiny guest (DHCP and SSH); it cannot be used with guests booted from -BaseImage without -TinyGuest.", o.BaseImage);
        string? baseImage = o.BaseImage is null ? null : Path.GetFullPath(o.BaseImage);
        if (baseImage is not null && FileKind.RequireFile(baseImage, "The base image", allowBlockDevice: true, directoryId: "BaseImageIsDirectory", notFileId: "BaseImageNotRegularFile") == PathKind.Missing)
            throw new KvmOcException(ErrorKind.NotFound, "BaseImageNotFound", $"The base image '{baseImage}' does not exist.", baseImage);
        if (createsBase && ToolRunner.Which("qemu-img") is null)
            throw new KvmOcException(ErrorKind.NotInstalled, "QemuImgNotInstalled", "'qemu-img' is not installed (it makes the tiny guest's small base image).", "qemu-img", "Install it: apt-get install qemu-utils");
        var work = Path.GetFullPath(o.WorkDirectory ?? (baseImage is not null ? Path.GetDirectoryName(baseImage)! : Path.Combine(Path.GetTempPath(), stem)));
        bool createsWork = !Directory.Exists(work);
        baseImage ??= Path.Combine(work, stem + "-base.qcow2");
        var names = Enumerable.Range(1, o.GuestCount).Select(i => $"{stem}-{i}").ToArray();
        var overlays = names.Select(n => Path.Combine(work, n + ".qcow2")).ToArray();
        foreach (var f in overlays.Append(createsBase ? baseImage : null).OfType<string>())
            if (File.Exists(f)) throw new KvmOcException(ErrorKind.ResourceExists, "ExperimentFileExists", $"'{f}' already exists; the experiment never overwrites a file it did not create.", f);
        int fill = o.FillMiB ?? DefaultFillMiB(o.MemoryMB);
        string? kernelArgs = tiny ? "quiet kvmoc.quiet" + (fill > 0 ? $" kvmoc.fill={fill},1" : "") : null;

        if (o.ReportPath is not null) CheckReportFolder(Path.GetFullPath(o.ReportPath));
        if (!(o.HeadroomPercent is >= 0 and < 100))
            throw Bad("InvalidHeadroom", $"-HeadroomPercent must be from 0 to below 100 (got {o.HeadroomPercent}).", o.HeadroomPercent);
        string? cgroup = null;
        if (o.Cgroup is not null && o.CgroupLimitMB is not null)
            throw Bad("ExperimentCgroupConflict", "-Cgroup names an existing cgroup and -CgroupLimitMB creates one: give one of them.", o.Cgroup);
        if (o.Cgroup is not null)
        {
            var cg = Memory.MemoryCgroup.Open(o.Cgroup, roots);
            cg.Read(); // CgroupHasNoLimit: nothing to size the estimate against
            cgroup = cg.Path;
        }
        else if (o.CgroupLimitMB is long limitMB)
        {
            if (limitMB < 64 || limitMB > GuestLauncher.MaxMemoryMB)
                throw Bad("ExperimentInvalidCgroupLimit", $"-CgroupLimitMB {limitMB} must be from 64 to {GuestLauncher.MaxMemoryMB}.", limitMB);
            cgroup = Memory.MemoryCgroup.PathForNew(stem, roots);
            if (Directory.Exists(cgroup)) throw new KvmOcException(ErrorKind.ResourceExists, "CgroupExists", $"The cgroup '{cgroup}' exists already.", cgroup);
        }
        if (o.ValidateEstimate && cgroup is null)
            throw Bad("ExperimentValidateNeedsCgroup", "-ValidateEstimate boots guests until the next one no longer fits, which needs a memory cgroup with a limit: give -Cgroup PATH or -CgroupLimitMB N.", null,
                "e.g. Invoke-OvercommitExperiment -ValidateEstimate -CgroupLimitMB 2048 -GuestCount 2");

        var profileTime = o.UntilStable ? $"until stable (at most {o.ProfileDuration.TotalSeconds:0} s)" : $"for {o.ProfileDuration.TotalSeconds:0} s";
        var steps = new List<string>();
        if (createsWork) steps.Add($"create the folder {work}");
        if (tiny) steps.Add("get the tiny guest's kernel and initramfs (Get-KvmTinyGuest)");
        if (createsBase) steps.Add($"create the small empty base image {baseImage} (qemu-img create -f qcow2, 64 MiB)");
        steps.Add($"create {o.GuestCount} qcow2 overlay(s) backed by {baseImage} (read only, never written): {string.Join(", ", overlays.Select(Path.GetFileName))}");
        steps.Add(o.DeviceIopsCapacity is double cap ? $"boot storm: the device's capacity is {cap:0.##} IOPS (-DeviceIopsCapacity)"
            : hasFio ? $"boot storm: measure the IOPS capacity of the disk under {work} once with fio (Measure-DeviceIopsCapacity: 4 KiB random read/write for 5 s on a temporary file there, removed after)"
            : "boot storm: no -DeviceIopsCapacity and no fio to measure it: the boot IOPS are reported without a recommended stagger");
        if (o.CgroupLimitMB is long lim) steps.Add($"create the memory cgroup {cgroup} with a limit of {lim} MiB");
        steps.Add($"start {o.GuestCount} guest(s) {names[0]}…{names[^1]}" + (cgroup is null ? "" : $" in the memory cgroup {cgroup}") + $": {o.MemoryMB} MiB, {o.CpuCount} vCPU(s), accelerator {o.Accelerator}"
            + (o.StaggerAuto ? ", the first alone: its boot IOPS and seconds give the stagger of the rest (-StaggerSeconds Auto: BootSeconds / floor(capacity / boot IOPS))" : o.StaggerSeconds > 0 ? $", {o.StaggerSeconds:0.#} s apart" : "")
            + (tiny ? $", kernel + initramfs with '{kernelArgs}', then wait for each guest's ready line" : ""));
        steps.Add("record each guest's boot IOPS (query-blockstats from the first QMP answer until " + (tiny ? "its ready line" : $"its disk is quiet for {BootIopsRecorder.QuietSeconds} s") + "): BootIopsPerGuest, BootSeconds, MaxOverlappingBoots, RecommendedStaggerSeconds");
        // In the order RunAsync does it: the network before anything else, the blog's loop and the load after the boot.
        if (o.Network == ExperimentNetworkMode.Isolated)
        {
            var net = ExperimentNetwork.PlanSteps(work).ToArray();
            steps.InsertRange(0, net[..^1]);
            steps.Add(net[^1]);
        }
        if (o.IoLoadPercent > 0) steps.Add($"start a {o.IoLoad} load in {ExperimentIoLoadRunner.LoadedCount(o.GuestCount, o.IoLoadPercent)} of {o.GuestCount} guest(s) ({o.IoLoadPercent}%) through Ansible; sample every guest's IOPS and the overlays' disk for {o.IoLoadSeconds} s; stop it");
        foreach (var p in o.Profiles)
            steps.Add($"profile {p}: unmerge every KSM page (run = 2, until pages_shared and pages_sharing are 0), set {TuningText(p)}, run = 1; sample every {o.Interval.TotalSeconds:0.##} s {profileTime}");
        if (o.ValidateEstimate)
            steps.Add($"restore KSM as found, estimate the guests that still fit in {cgroup} (Get-OvercommitReport -Cgroup), then boot more guests of the same kind into it one by one until one no longer fits (an OOM kill, or a guest that cannot get ready); report predicted against actual");
        steps.Add(o.KeepGuests ? "leave the guests running and their overlays in place (-KeepGuests)" : "stop the guests (QMP quit, SIGKILL if QEMU hangs) and delete the overlays" + (createsBase ? " and the base image" : "") + " the experiment created");
        steps.Add($"restore every KSM setting as found (run = {ksm.Run}, pages_to_scan = {ksm.PagesToScan}, sleep_millisecs = {ksm.SleepMilliseconds}" + (ksm.AdvisorMode is null ? "" : $", advisor_mode = {ksm.AdvisorMode}") + ")");
        if (o.CgroupLimitMB is not null) steps.Add($"remove the memory cgroup {cgroup} (its guests stopped first)");
        if (o.ReportPath is not null) steps.Add($"write {ExperimentReportWriter.JsonFile}, {ExperimentReportWriter.CsvFile} and {ExperimentReportWriter.SvgFile} into {Path.GetFullPath(o.ReportPath)}");
        return new ExperimentPlan
        {
            Options = o,
            RunId = id,
            WorkDirectory = work,
            CreatesWorkDirectory = createsWork,
            BaseImage = baseImage,
            CreatesBaseImage = createsBase,
            TinyGuest = tiny,
            GuestNames = names,
            Overlays = overlays,
            KernelArguments = kernelArgs,
            Steps = steps.ToArray(),
            Cgroup = cgroup,
            CreatesCgroup = o.CgroupLimitMB is not null,
        };
    }

    /// <summary>
    /// Fails fast, before anything starts, when the report could not be written: the path (or a folder on the way) is
    /// a file, or the nearest existing folder is not writable.
    /// </summary>
    static void CheckReportFolder(string folder)
    {
        var kind = FileKind.Of(folder);
        if (kind == PathKind.Directory)
        {
            if (access(folder, 3 /* W_OK|X_OK */) != 0)
                throw new KvmOcException(ErrorKind.PermissionDenied, "ExperimentReportPathNotWritable", $"The report folder '{folder}' is not writable.", folder, "Give a -ReportPath you may write to.");
            return;
        }
        if (kind != PathKind.Missing)
            throw new KvmOcException(ErrorKind.InvalidArgument, "ExperimentReportPathInvalid", $"The report path '{folder}' is {FileKind.Describe(kind)}, not a folder.", folder,
                "-ReportPath names a folder (created when missing) for experiment.json, samples.csv and saved-memory.svg.");
        for (var up = Path.GetDirectoryName(folder); up is not null; up = Path.GetDirectoryName(up))
        {
            var k = FileKind.Of(up);
            if (k == PathKind.Missing) continue;
            if (k != PathKind.Directory)
                throw new KvmOcException(ErrorKind.InvalidArgument, "ExperimentReportPathInvalid", $"The report folder '{folder}' cannot be created: '{up}' is {FileKind.Describe(k)}, not a folder.", folder,
                    "Give a -ReportPath under an existing folder.");
            if (access(up, 3 /* W_OK|X_OK */) != 0)
                throw new KvmOcException(ErrorKind.PermissionDenied, "ExperimentReportPathNotWritable", $"The report folder '{folder}' cannot be created: '{up}' is not writable.", folder, "Give a -ReportPath you may write to.");
            return;
        }
    }

    /// <summary>
    /// The tiny guest's default fill: half its memory, but leaving at least 96 MiB to the kernel and the initramfs
    /// (a 128 MiB guest filling 64 MiB panics, "System is deadlocked on memory"): 128 → 32, 256 → 128, 4048 → 2024.
    /// </summary>
    public static int DefaultFillMiB(long memoryMB) => (int)Math.Max(0, Math.Min(memoryMB / 2, memoryMB - 96));

    static string TuningText(ExperimentProfile p) => p switch
    {
        ExperimentProfile.Default => "pages_to_scan = 100, sleep_millisecs = 20 (advisor off)",
        ExperimentProfile.Aggressive => "pages_to_scan = 20000, sleep_millisecs = 20 (advisor off)",
        ExperimentProfile.Advisor => "advisor_mode = scan-time",
        _ => "advisor off, then the adaptive tuner sets pages_to_scan/sleep_millisecs as it goes",
    };

    /// <summary>
    /// Runs the plan. Cancellation (Ctrl+C) and failures clean up before the exception leaves. When the report cannot be
    /// written the result is still returned: the error goes to <paramref name="onReportError"/> (a non-terminating
    /// error), or is a warning without one.
    /// </summary>
    public static async Task<ExperimentResult> RunAsync(ExperimentPlan plan, IOperationObserver observer, CancellationToken ct, Action<KvmOcException>? onReportError = null)
    {
        var o = plan.Options;
        var roots = o.Roots ?? HostRoots.Default;
        var host = new HostInfoReader(roots, () => Array.Empty<KvmGuest>());
        var mem = host.ReadMemory();
        var result = new ExperimentResult
        {
            HostName = Environment.MachineName,
            RunId = plan.RunId,
            StartTime = DateTimeOffset.UtcNow,
            BaseImage = plan.BaseImage,
            TinyGuest = plan.TinyGuest,
            KernelArguments = plan.KernelArguments,
            GuestCount = o.GuestCount,
            MemoryMB = o.MemoryMB,
            CpuCount = o.CpuCount,
            HostCpus = host.ReadCpu().LogicalCpus,
            HostMemoryBytes = mem.TotalBytes,
            Guests = plan.GuestNames,
            WorkDirectory = plan.WorkDirectory,
            GuestsKept = o.KeepGuests,
        };
        var created = new List<string>();
        var started = new List<KvmGuest>();
        var profiles = new List<ExperimentProfileResult>();
        var snapshot = KsmSettingsSnapshot.Capture(roots);
        observer.Verbose($"KSM settings captured for the restore: run = {snapshot.Settings.Run}, pages_to_scan = {snapshot.Settings.PagesToScan}, sleep_millisecs = {snapshot.Settings.SleepMilliseconds}, advisor_mode = {snapshot.Settings.AdvisorMode ?? "(none)"}");
        // Written before anything changes, updated before each guest, file and folder: kill -9 can be undone (-Recover).
        var journal = HostJournal.Begin(HostJournal.ExperimentKind, plan.RunId, o.JournalDirectory, snapshot);
        observer.Verbose($"Journal: {journal.JournalPath}");
        ExperimentNetwork? network = null;
        var phases = new ExperimentPhaseClock();
        Memory.MemoryCgroup? cgroup = null;
        result.Cgroup = plan.Cgroup;
        try
        {
            if (plan.CreatesCgroup)
            {
                journal.AddFolder(plan.Cgroup!);
                cgroup = Memory.MemoryCgroup.Create(plan.Cgroup!, o.CgroupLimitMB!.Value * Units.MiB);
                observer.Verbose($"Created the memory cgroup {plan.Cgroup} (limit {o.CgroupLimitMB} MiB).");
            }
            else if (plan.Cgroup is not null) cgroup = Memory.MemoryCgroup.Open(plan.Cgroup, roots);
            result.CgroupLimitBytes = cgroup?.Read().TotalBytes;
            if (o.Network != ExperimentNetworkMode.None)
                network = await phases.TimeAsync("network", () => ExperimentNetwork.StartAsync(o.Network, plan.WorkDirectory, observer, ct, journal)).ConfigureAwait(false);
            await phases.TimeAsync("overlays and boot", async () => { await SetUpAsync(plan, created, started, result, journal, observer, ct, network).ConfigureAwait(false); return 0; }).ConfigureAwait(false);
            if (network is not null) result.Fleet = await phases.TimeAsync("leases, inventory, Ansible", () => network.ReachAsync(started, o.ReadyTimeout, observer, ct)).ConfigureAwait(false);
            if (network is not null && result.Fleet is not null && o.IoLoadPercent > 0)
                result.IoLoad = await phases.TimeAsync("I/O load", () => ExperimentIoLoadRunner.RunAsync(network, result.Fleet, started, o.IoLoad, o.IoLoadPercent, o.IoLoadSeconds, plan.WorkDirectory, observer, ct, o.Roots)).ConfigureAwait(false);
            for (int i = 0; i < o.Profiles.Length; i++)
            {
                observer.Progress(new ProgressInfo(Activity, $"profile {o.Profiles[i]} ({i + 1} of {o.Profiles.Length})", 10 + 85 * i / o.Profiles.Length, ActivityId: MainActivity));
                var profile = o.Profiles[i];
                profiles.Add(await phases.TimeAsync("profile " + profile, () => RunProfileAsync(plan, profile, started, observer, ct)).ConfigureAwait(false));
            }
            if (o.ValidateEstimate && cgroup is not null)
            {
                observer.Progress(new ProgressInfo(Activity, $"validating the estimate in {cgroup.Path}", 92, ActivityId: MainActivity));
                snapshot.Restore(observer); // the host's own KSM state: what a new guest will meet
                result.Validation = await ExperimentValidator.RunAsync(plan, cgroup, started, created, journal, observer, ct).ConfigureAwait(false);
                observer.Verbose("Validation: " + result.Validation);
            }
        }
        finally
        {
            var cleanup = System.Diagnostics.Stopwatch.StartNew();
            observer.Progress(new ProgressInfo(Activity, o.KeepGuests ? "restoring KSM" : "cleaning up: stopping guests, deleting overlays, restoring KSM", 96, ActivityId: MainActivity));
            var problems = new List<string>();
            if (!o.KeepGuests) await CleanUpAsync(plan, started, created, problems, observer).ConfigureAwait(false);
            if (network is not null) await CleanUpNetworkAsync(network, result, plan, problems).ConfigureAwait(false);
            if (plan.CreatesCgroup && !o.KeepGuests && Directory.Exists(plan.Cgroup!))
            {
                // The guests are stopped; whatever is still in the cgroup is the run's own (an OOM victim's zombie, a half-started QEMU).
                var cg = cgroup ?? Memory.MemoryCgroup.Open(plan.Cgroup!, roots);
                if (cg.Remove(TimeSpan.FromSeconds(15)) is { } problem) problems.Add(problem);
                else observer.Verbose($"Removed the memory cgroup {plan.Cgroup}");
            }
            else if (plan.CreatesCgroup && o.KeepGuests) problems.Add($"-KeepGuests: the memory cgroup {plan.Cgroup} stays for the guests in it.");
            try
            {
                var differences = snapshot.Restore(observer);
                result.KsmDifferences = differences.ToArray();
                result.KsmRestored = differences.Count == 0;
                if (differences.Count > 0) problems.Add("KSM settings still differ after the restore: " + string.Join("; ", differences));
            }
            catch (KvmOcException e)
            {
                problems.Add($"Restoring the KSM settings failed: {e.Message}");
            }
            foreach (var p in problems) observer.Warning(p);
            result.CleanupProblems = problems.ToArray();
            phases.Add("cleanup", cleanup.Elapsed);
            result.Phases = phases.Phases;
            if (problems.Count == 0) journal.Complete();
            else observer.Warning($"The journal {journal.JournalPath} is kept: {HostJournal.RecoverCommand(HostJournal.ExperimentKind)} undoes what is left.");
            observer.Progress(new ProgressInfo(Activity, "done", 100, ActivityId: MainActivity, Completed: true));
        }
        result.Profiles = profiles.ToArray();
        result.Overlays = plan.Overlays;
        result.BestProfile = ExperimentMath.Best(profiles)?.Profile.ToString();
        result.EndTime = DateTimeOffset.UtcNow;
        result.Duration = result.EndTime - result.StartTime;
        if (o.ReportPath is not null)
        {
            try
            {
                var files = ExperimentReportWriter.Write(result, Path.GetFullPath(o.ReportPath));
                observer.Verbose($"Report written: {string.Join(", ", files)}");
            }
            catch (KvmOcException e)
            {
                // The measurement is worth more than the report: return it anyway.
                if (onReportError is not null) onReportError(e); else observer.Warning(e.Message);
            }
        }
        return result;
    }

    /// <summary>-Network Isolated: keeps the inventory for the report, then removes the namespace, bridge, taps and dnsmasq (with -KeepGuests the network stays, for the guests on it).</summary>
    static async Task CleanUpNetworkAsync(ExperimentNetwork network, ExperimentResult result, ExperimentPlan plan, List<string> problems)
    {
        var o = plan.Options;
        if (result.Fleet is { } fleet && o.ReportPath is not null && File.Exists(fleet.InventoryFile))
        {
            try
            {
                var dir = Path.GetFullPath(o.ReportPath);
                Directory.CreateDirectory(dir);
                var copy = Path.Combine(dir, "inventory.ini");
                File.Copy(fleet.InventoryFile, copy, true);
                fleet.InventoryFile = copy;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { problems.Add($"Could not keep the inventory: {e.Message}"); }
        }
        if (o.KeepGuests) { problems.Add($"-KeepGuests: the isolated network {network.Network.Namespace} stays for the guests on it (ip netns delete {network.Network.Namespace} removes it)."); return; }
        try { await network.DisposeAsync().ConfigureAwait(false); }
        catch (KvmOcException e) { problems.Add(e.Message); }
        if (IsolatedNetwork.NamespaceExists(network.Network.Namespace)) problems.Add($"The network namespace {network.Network.Namespace} is still there.");
    }

    static async Task SetUpAsync(ExperimentPlan plan, List<string> created, List<KvmGuest> started, ExperimentResult result, HostJournal journal, IOperationObserver observer, CancellationToken ct, ExperimentNetwork? network = null)
    {
        var o = plan.Options;
        try
        {
            if (plan.CreatesWorkDirectory)
            {
                journal.AddFolder(plan.WorkDirectory);
                Directory.CreateDirectory(plan.WorkDirectory);
                created.Add(plan.WorkDirectory);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "ExperimentWorkDirectoryFailed", $"Cannot create '{plan.WorkDirectory}'", plan.WorkDirectory);
        }
        TinyGuestImage? tiny = null;
        if (plan.TinyGuest)
        {
            observer.Progress(new ProgressInfo(Activity, "getting the tiny guest", 1, ActivityId: MainActivity));
            tiny = await TinyGuest.GetAsync(network is null ? null : new TinyGuestOptions { Variant = TinyGuestVariant.Fleet }, observer, ct).ConfigureAwait(false);
        }
        if (plan.CreatesBaseImage)
        {
            var qemuImg = ToolRunner.Require("qemu-img", "qemu-utils");
            string[] args = { "create", "-q", "-f", "qcow2", plan.BaseImage, "64M" };
            observer.Verbose($"{qemuImg} {string.Join(' ', args)}");
            created.Add(plan.BaseImage); // before the call: a half-written file is ours too
            journal.AddFile(plan.BaseImage);
            var r = await ToolRunner.RunAsync(qemuImg, args, null, ct).ConfigureAwait(false);
            if (r.ExitCode != 0)
                throw new KvmOcException(ErrorKind.InvalidOperation, "ExperimentBaseImageFailed", $"qemu-img create {plan.BaseImage} failed: {r.Message}", plan.BaseImage);
        }

        observer.Progress(new ProgressInfo(Activity, $"creating {plan.Overlays.Length} overlay(s)", 3, ActivityId: MainActivity));
        var backing = QcowOverlayWriter.OpenBacking(plan.BaseImage, null, observer);
        foreach (var path in plan.Overlays)
        {
            ct.ThrowIfCancellationRequested();
            var overlayPlan = QcowOverlayWriter.Plan(path, backing, new QcowOverlayOptions(), observer);
            journal.AddFile(path);
            QcowOverlayWriter.Apply(overlayPlan, observer, syncDirectory: false);
            created.Add(path);
        }
        QcowOverlayWriter.SyncDirectories(new[] { plan.WorkDirectory });

        var (capacity, capacitySource) = await CapacityAsync(plan, observer, ct).ConfigureAwait(false);
        var accelerator = o.Accelerator;
        double stagger = o.StaggerSeconds;
        string? autoDecision = null;
        var boots = new List<Task<GuestBootIops?>>();
        using var bootCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var quietBoot = new QuietObserver(observer, warnings: true);
        try
        {
            for (int i = 0; i < plan.GuestNames.Length; i++)
            {
                if (i > 0 && stagger > 0) await GuestLauncher.StaggerAsync(TimeSpan.FromSeconds(stagger), plan.GuestNames[i], observer, ct).ConfigureAwait(false);
                observer.Progress(new ProgressInfo(Activity, $"starting guest {i + 1} of {plan.GuestNames.Length}: {plan.GuestNames[i]}", 5 + 4 * i / plan.GuestNames.Length, ActivityId: MainActivity));
                var start = new GuestStartOptions
                {
                    Name = plan.GuestNames[i],
                    DiskPath = plan.Overlays[i],
                    MemoryMB = o.MemoryMB,
                    CpuCount = o.CpuCount,
                    Accelerator = accelerator,
                    RunDirectory = o.RunDirectory,
                    Cgroup = plan.Cgroup,
                };
                if (tiny is not null)
                {
                    start.Kernel = tiny.Kernel;
                    start.Initrd = tiny.Initrd;
                    start.KernelArguments = plan.KernelArguments;
                    start.Network = GuestNetwork.None;
                    start.NoVnc = true;
                }
                network?.Apply(start, plan.GuestNames[i]);
                var launch = GuestLauncher.Plan(start, i == 0 ? observer : new QuietObserver(observer, warnings: false), o.Roots);
                // Auto under a /dev/kvm that opens but does not work: the launcher retries under TCG (with a warning);
                // the later guests then go straight to TCG.
                journal.SetGuest(launch.Name, 0, launch.RunDirectory);
                long launched = Stopwatch.GetTimestamp();
                var guest = await GuestLauncher.StartAsync(launch, observer, ct, o.Roots).ConfigureAwait(false);
                journal.SetGuest(guest.Name, guest.Id, guest.RunDirectory);
                if (accelerator == GuestAccelerator.Auto && launch.Accelerator == "kvm" && guest.Accelerator == "tcg")
                    accelerator = GuestAccelerator.Tcg;
                started.Add(guest);
                result.Accelerator = guest.Accelerator ?? launch.Accelerator;
                Func<bool>? readyLine = tiny is null ? null : () => AutoStagger.SerialLogSays(guest, tiny.ReadyMarker);
                boots.Add(BootIopsRecorder.RecordAsync(guest, launched, readyLine, quietRule: tiny is null, o.ReadyTimeout, quietBoot, bootCts.Token));
                if (i == 0 && o.StaggerAuto)
                {
                    observer.Progress(new ProgressInfo(Activity, $"-StaggerSeconds Auto: measuring the boot of {guest.Name}", 5, ActivityId: MainActivity));
                    if (tiny is not null) await WaitReadyAsync(started, tiny.ReadyMarker, o, observer, ct).ConfigureAwait(false);
                    var first = await boots[0].ConfigureAwait(false)
                        ?? throw new KvmOcException(ErrorKind.InvalidOperation, "BootIopsUnknown", $"-StaggerSeconds Auto: the block statistics of guest '{guest.Name}' could not be read over QMP.", guest.Name, "Give a number of seconds to -StaggerSeconds.");
                    var decision = BootStorm.Summarize(new[] { first }, capacity, capacitySource, o.GuestCount, 0, true);
                    stagger = decision.RecommendedStaggerSeconds ?? 0;
                    autoDecision = $"-StaggerSeconds Auto, from the boot of the first guest alone: {decision.Explanation} The other guests started {BootStorm.N(stagger)} s apart.";
                    observer.Verbose(autoDecision);
                }
            }
            if (tiny is not null) await WaitReadyAsync(started, tiny.ReadyMarker, o, observer, ct).ConfigureAwait(false);
            var recorded = await Task.WhenAll(boots).ConfigureAwait(false);
            result.BootStorm = BootStorm.Summarize(recorded.OfType<GuestBootIops>().ToList(), capacity, capacitySource, o.GuestCount, stagger, o.StaggerAuto);
            if (autoDecision is not null) result.BootStorm.Explanation = autoDecision + " All guests: " + result.BootStorm.Explanation;
            observer.Verbose($"Boot storm: {result.BootStorm.Explanation}");
        }
        finally
        {
            bootCts.Cancel();
            try { await Task.WhenAll(boots).ConfigureAwait(false); } catch (OperationCanceledException) { }
        }
    }

    /// <summary>The device capacity for the boot storm: given, else measured once with fio in the work folder (where fio exists); a failed probe is a warning unless -StaggerSeconds Auto needs it.</summary>
    static async Task<(double?, string?)> CapacityAsync(ExperimentPlan plan, IOperationObserver observer, CancellationToken ct)
    {
        var o = plan.Options;
        if (o.DeviceIopsCapacity is double c) return (c, "-DeviceIopsCapacity");
        if (ToolRunner.Which("fio") is null)
        {
            observer.Verbose("No -DeviceIopsCapacity and no fio to measure it: the boot storm gets no recommended stagger.");
            return (null, null);
        }
        observer.Progress(new ProgressInfo(Activity, "measuring the device's IOPS capacity (fio, 5 s)", 4, ActivityId: MainActivity));
        try
        {
            var (iops, source) = await AutoStagger.CapacityAsync(null, plan.WorkDirectory, new QuietObserver(observer, warnings: true), ct, o.StaggerAuto ? "-StaggerSeconds Auto" : "The boot storm's recommendation").ConfigureAwait(false);
            return (iops, source);
        }
        catch (KvmOcException e) when (!o.StaggerAuto)
        {
            observer.Warning($"The device's IOPS capacity could not be measured ({e.Message}); the boot storm gets no recommended stagger.");
            return (null, null);
        }
    }

    static async Task WaitReadyAsync(List<KvmGuest> guests, string marker, ExperimentOptions o, IOperationObserver observer, CancellationToken ct)
    {
        var roots = o.Roots ?? HostRoots.Default;
        var sw = Stopwatch.StartNew();
        var waiting = guests.ToList();
        while (waiting.Count > 0)
        {
            foreach (var g in waiting.ToList())
            {
                var log = g.SerialLog is not null && File.Exists(g.SerialLog) ? File.ReadAllText(g.SerialLog) : "";
                if (log.Contains(marker, StringComparison.Ordinal)) waiting.Remove(g);
                else if (log.IndexOf("Kernel panic", StringComparison.Ordinal) is int at and >= 0)
                    throw new KvmOcException(ErrorKind.InvalidOperation, "ExperimentGuestPanicked", $"Guest '{g.Name}' panicked while booting: {log[at..].Split('\n')[0].Trim()}", g.Name,
                        "Give the guests more memory (-MemoryMB) or fill less of it (-FillMiB).");
            }
            if (waiting.Count == 0) break;
            var dead = waiting.FirstOrDefault(g => new QemuProcessScanner(roots).Read(g.Id) is null);
            if (dead is not null)
                throw new KvmOcException(ErrorKind.InvalidOperation, "ExperimentGuestDied", $"Guest '{dead.Name}' exited before it was ready.", dead.Name, $"See its serial log {dead.SerialLog}.");
            if (sw.Elapsed > o.ReadyTimeout)
                throw new KvmOcException(ErrorKind.Timeout, "ExperimentGuestNotReady", $"{waiting.Count} guest(s) did not print '{marker}' within {o.ReadyTimeout.TotalSeconds:0} s: {string.Join(", ", waiting.Select(g => g.Name))}.", waiting[0].Name,
                    "TCG is slow: fewer guests, a smaller fill (-FillMiB) or a longer wait help.");
            observer.Progress(new ProgressInfo(Activity, $"waiting for the guests to boot and fill their memory: {guests.Count - waiting.Count} of {guests.Count} ready", 9, ActivityId: MainActivity));
            await Task.Delay(250, ct).ConfigureAwait(false);
        }
        observer.Verbose($"All {guests.Count} guest(s) ready after {sw.Elapsed.TotalSeconds:0.0} s.");
    }

    static async Task<ExperimentProfileResult> RunProfileAsync(ExperimentPlan plan, ExperimentProfile profile, List<KvmGuest> guests, IOperationObserver observer, CancellationToken ct)
    {
        var o = plan.Options;
        var roots = o.Roots ?? HostRoots.Default;
        var tuner = new KsmTuner(roots, observer);
        var quiet = new QuietObserver(observer, warnings: true);

        var unmerge = Stopwatch.StartNew();
        observer.Progress(new ProgressInfo($"KSM profile {profile}", "unmerging every page (run = 2)", ActivityId: ProfileActivity));
        await UnmergeAsync(tuner, roots, o.UnmergeTimeout, ct).ConfigureAwait(false);
        unmerge.Stop();

        var baseline = ReadGuests(guests, roots);
        long baselineRss = baseline.Sum(g => g?.RssBytes ?? 0);
        var result = new ExperimentProfileResult
        {
            Profile = profile,
            UnmergeDuration = unmerge.Elapsed,
            CommittedBytes = guests.Sum(g => g.MemoryMB * Units.MiB),
            StartTime = DateTimeOffset.UtcNow,
        };
        var hasAdvisor = KsmStatReader.Read(roots).AdvisorMode is not null;
        var advisorOff = new KsmTuning { AdvisorMode = hasAdvisor ? "none" : null, Run = KsmRunState.Merging };
        KsmTuning tuning = profile switch
        {
            ExperimentProfile.Advisor => KsmTuning.ForProfile(KsmTuningProfile.Advisor).With(new KsmTuning { Run = KsmRunState.Merging }),
            ExperimentProfile.Aggressive => KsmTuning.ForProfile(KsmTuningProfile.Aggressive).With(advisorOff),
            _ => KsmTuning.ForProfile(KsmTuningProfile.Default).With(advisorOff),
        };
        result.Tuning = TuningText(profile);
        var first = KsmStatReader.Read(roots);
        var samples = new List<ExperimentSample> { Sample(profile, 0, 0, first, null, baseline, baselineRss) };
        tuner.Set(tuning);

        using var tunerCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Task<KsmAutoTuneResult>? adaptive = profile == ExperimentProfile.Adaptive
            ? Task.Run(() => KsmAutoTuner.RunAsync(new KsmAutoTuneOptions { Roots = o.Roots, Journal = false }, quiet, tunerCts.Token), CancellationToken.None)
            : null;
        var watch = new KsmWatchOptions { Interval = o.Interval, Duration = o.ProfileDuration, UntilStable = o.UntilStable };
        var warnedGone = new HashSet<string>();
        // IOPS beside every sample (the disk under the overlays, the guests' sum); its QMP connections end with the loop.
        ExperimentIopsTracker? iops = null;
        try
        {
            iops = await ExperimentIopsTracker.OpenAsync(guests, Io.BlockDevices.WholeDiskOf(plan.WorkDirectory), o.Roots, ct).ConfigureAwait(false);
            await foreach (var s in new KsmWatcher(roots, quiet).WatchAsync(watch, ct).ConfigureAwait(false))
            {
                if (adaptive is { IsFaulted: true }) await adaptive.ConfigureAwait(false); // its error, now
                var now = ReadGuests(guests, roots);
                for (int i = 0; i < now.Count; i++)
                    if (now[i] is null && warnedGone.Add(guests[i].Name)) observer.Warning($"Guest '{guests[i].Name}' (pid {guests[i].Id}) is gone; it no longer counts.");
                var sample = Sample(profile, s.Index, s.Elapsed.TotalSeconds, s.Stat, s, now, baselineRss);
                var io = await iops.NextAsync(ct).ConfigureAwait(false);
                sample.DeviceIops = io.DeviceIops;
                sample.GuestIops = io.GuestIops;
                samples.Add(sample);
                result.Stable = s.Stable;
                double total = o.ProfileDuration.TotalSeconds;
                observer.Progress(new ProgressInfo($"KSM profile {profile}",
                    $"{s.Elapsed.TotalSeconds:0} s: KSM saved {sample.SavedMiB:0.#} MiB, resident {Units.ToMiB(sample.ResidentBytes):0.#} MiB, ksmd {s.KsmdCpuPercent ?? 0:0.#}% CPU, pages_to_scan {s.PagesToScan}",
                    (int)Math.Min(100, 100 * s.Elapsed.TotalSeconds / total), (int)Math.Max(0, total - s.Elapsed.TotalSeconds), ProfileActivity));
            }
        }
        finally
        {
            if (iops is not null) await iops.DisposeAsync().ConfigureAwait(false);
            if (adaptive is not null)
            {
                tunerCts.Cancel();
                try
                {
                    var tuned = await adaptive.ConfigureAwait(false);
                    result.TunerDecisions = tuned.Decisions.Count;
                }
                catch (Exception e) when (e is OperationCanceledException || ct.IsCancellationRequested) { }
            }
            observer.Progress(new ProgressInfo($"KSM profile {profile}", "done", ActivityId: ProfileActivity, Completed: true));
        }

        result.Samples = samples.ToArray();
        ExperimentMath.Summarize(result);
        var end = ReadGuests(guests, roots);
        result.Guests = guests.Select((g, i) => GuestResult(profile, g, baseline[i], end[i], first.PageSize)).ToArray();
        var alive = end.OfType<KvmGuest>().ToList();
        var report = await new OvercommitReportBuilder(roots, () => alive) { Cgroup = plan.Cgroup }.BuildAsync(o.HeadroomPercent, 0, probeDisks: false, quiet, ct).ConfigureAwait(false);
        result.EstimatedAdditionalGuests = report.EstimatedAdditionalGuests;
        result.EstimateExplanation = report.Explanation.FirstOrDefault(l => l.StartsWith("EstimatedAdditionalGuests ", StringComparison.Ordinal) || l.StartsWith("EstimatedAdditionalGuests:", StringComparison.Ordinal));
        observer.Verbose($"Profile {profile}: KSM saved {result.SavedMiB} MiB, total saved {result.TotalSavedMiB} MiB, 90% in {result.TimeTo90PercentSeconds?.ToString(CultureInfo.InvariantCulture) ?? "–"} s, ksmd {result.KsmdCpuSeconds} CPU-s, overcommit {result.OvercommitRatio}:1, {result.EstimatedAdditionalGuests} more guests would fit.");
        return result;
    }

    /// <summary>run = 2, then waits until pages_shared and pages_sharing are 0 (stale counters clear only on run = 2).</summary>
    static async Task UnmergeAsync(KsmTuner tuner, HostRoots roots, TimeSpan timeout, CancellationToken ct)
    {
        tuner.Set(new KsmTuning { Run = KsmRunState.Unmerging });
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var s = KsmStatReader.Read(roots);
            if ((s.PagesShared ?? 0) == 0 && (s.PagesSharing ?? 0) == 0) return;
            if (sw.Elapsed > timeout)
                throw new KvmOcException(ErrorKind.Timeout, "KsmUnmergeTimeout", $"KSM still had {s.PagesShared} shared / {s.PagesSharing} sharing pages {timeout.TotalSeconds:0} s after run = 2.", KsmKnob.Run);
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
    }

    static List<KvmGuest?> ReadGuests(List<KvmGuest> guests, HostRoots roots)
    {
        var scanner = new QemuProcessScanner(roots);
        return guests.Select(g => scanner.Read(g.Id) is { } now && now.Name == g.Name ? now : null).ToList();
    }

    static ExperimentSample Sample(ExperimentProfile profile, int index, double seconds, KsmStat stat, KsmSample? ksm, List<KvmGuest?> guests, long baselineRss)
    {
        long rss = guests.Sum(g => g?.RssBytes ?? 0);
        long saved = stat.SavedBytes ?? 0;
        return new ExperimentSample
        {
            Profile = profile,
            Index = index,
            Timestamp = stat.Timestamp,
            ElapsedSeconds = Math.Round(seconds, 3),
            PagesToScan = stat.PagesToScan,
            SleepMilliseconds = stat.SleepMilliseconds,
            PagesShared = stat.PagesShared ?? 0,
            PagesSharing = stat.PagesSharing ?? 0,
            SavedBytes = saved,
            ResidentBytes = rss,
            ResidentSavingBytes = baselineRss - rss,
            TotalSavedBytes = baselineRss - rss + saved,
            KsmdCpuSeconds = ksm is null ? 0 : ksm.KsmdCpuSeconds,
            KsmdCpuPercent = ksm?.KsmdCpuPercent,
            FullScans = stat.FullScans,
            GuestRssBytes = guests.Select(g => g?.RssBytes ?? 0).ToArray(),
            GuestKsmMergingPages = guests.Select(g => g?.KsmMergingPages ?? 0).ToArray(),
        };
    }

    static ExperimentGuestResult GuestResult(ExperimentProfile profile, KvmGuest g, KvmGuest? before, KvmGuest? after, long pageSize)
    {
        long memory = g.MemoryMB * Units.MiB;
        long? merged = after?.KsmMergingPages * pageSize;
        long? unique = after?.RssBytes is long rss ? Math.Max(0, rss - (merged ?? 0)) : null;
        return new ExperimentGuestResult
        {
            Name = g.Name,
            Id = g.Id,
            Profile = profile,
            MemoryBytes = memory,
            RssBaselineBytes = before?.RssBytes,
            RssBytes = after?.RssBytes,
            ResidentSavingBytes = before?.RssBytes - after?.RssBytes,
            KsmMergingPages = after?.KsmMergingPages,
            KsmMergedBytes = merged,
            KsmProfitBytes = after?.KsmProfitBytes,
            OvercommitRatio = unique is long u ? ExperimentMath.Ratio(memory, u) : null,
        };
    }

    /// <summary>Stops the guests it started (QMP quit), then deletes what it created (newest first); a guest that does not stop keeps its overlay.</summary>
    static async Task CleanUpAsync(ExperimentPlan plan, List<KvmGuest> started, List<string> created, List<string> problems, IOperationObserver observer)
    {
        var roots = plan.Options.Roots ?? HostRoots.Default;
        // Their overlays are deleted next, so there is nothing to shut down gracefully for: quit (SIGKILL if QEMU hangs).
        var stop = new GuestStopOptions { TurnOff = true, Force = true };
        var stillRunning = new HashSet<string>(StringComparer.Ordinal);
        var stops = started.Select(async g =>
        {
            try { await GuestStopper.StopAsync(g, stop, new QuietObserver(observer, warnings: true), CancellationToken.None, roots).ConfigureAwait(false); }
            catch (KvmOcException e) when (e.ErrorId == "GuestNotRunning") { }
            catch (KvmOcException e)
            {
                lock (problems) { problems.Add($"Guest '{g.Name}' did not stop: {e.Message}"); stillRunning.UnionWith(g.Disks); }
            }
        }).ToList();
        await Task.WhenAll(stops).ConfigureAwait(false);
        for (int i = created.Count - 1; i >= 0; i--)
        {
            var path = created[i];
            try
            {
                if (stillRunning.Contains(path)) { problems.Add($"Kept '{path}': its guest still runs."); continue; }
                if (File.Exists(path)) { File.Delete(path); observer.Verbose($"Deleted {path}"); }
                else if (Directory.Exists(path))
                {
                    if (Directory.EnumerateFileSystemEntries(path).Any()) problems.Add($"Kept the folder '{path}': it holds files the experiment did not create.");
                    else { Directory.Delete(path); observer.Verbose($"Deleted {path}"); }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                problems.Add($"Could not delete '{path}': {e.Message}");
            }
        }
    }

    [DllImport("libc", SetLastError = true)] static extern int access(string path, int mode);
}

/// <summary>Forwards verbose messages (and warnings, if asked) but not progress: inner operations would otherwise overwrite the experiment's own progress bars.</summary>
internal sealed class QuietObserver(IOperationObserver inner, bool warnings) : IOperationObserver
{
    public void Verbose(string message) => inner.Verbose(message);
    public void Warning(string message) { if (warnings) inner.Warning(message); else inner.Verbose(message); }
    public void Progress(ProgressInfo progress) { }
}
