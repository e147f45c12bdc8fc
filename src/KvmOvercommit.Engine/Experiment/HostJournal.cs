using System.Text.Json;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Ksm.AutoTune;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Fleet;

namespace KvmOvercommit.Engine.Experiment;

/// <summary>One guest a journaled run started (or was about to start).</summary>
[OutputObject]
public sealed class HostJournalGuest
{
    /// <summary>The guest's name (unique to the run: prefix-runid-N).</summary>
    public string Name { get; set; } = "";

    /// <summary>Its QEMU pid; 0 while it is being started.</summary>
    public int Id { get; set; }

    /// <summary>Its run directory (QMP socket, pid file, serial log).</summary>
    public string? RunDirectory { get; set; }
}

/// <summary>
/// What a run that changes host state (an experiment, the KSM autotuner) has changed so far, written before the first
/// change and updated as it goes: its pid, the KSM settings it found, every guest, file and folder it creates. A clean
/// end deletes it; a journal whose process is gone (kill -9, a crash, a power cut) is what -Recover undoes.
/// Kept under the run root: /run/kvmovercommit/.journal/&lt;kind&gt;-&lt;id&gt;.json.
/// </summary>
[OutputObject]
/// <summary>An isolated network in a journal: its namespace and folder.</summary>
public sealed class HostJournalNetwork
{
    /// <summary>The namespace (kvmoc-net-…).</summary>
    public string Namespace { get; set; } = "";
    /// <summary>Its folder of leases, SSH key and inventory.</summary>
    public string Directory { get; set; } = "";
}

public sealed class HostJournal
{
    /// <summary>"experiment" or "ksm-autotune".</summary>
    public string Kind { get; set; } = "";

    /// <summary>The run id (the experiment's; the autotuner's pid).</summary>
    public string Id { get; set; } = "";

    /// <summary>The process that writes the journal.</summary>
    public int Pid { get; set; }

    /// <summary>Its start time in clock ticks after boot (tells a reused pid from the writer).</summary>
    public ulong? PidStartTicks { get; set; }

    /// <summary>When the run started (UTC).</summary>
    public DateTimeOffset StartTime { get; set; }

    /// <summary>Every writable KSM setting as the run found it (restored by -Recover).</summary>
    public KsmTuning? KsmSettings { get; set; }

    /// <summary>The sysfs root the KSM settings were read under (/sys; a test's fake tree otherwise): -Recover restores them there.</summary>
    public string? SysRoot { get; set; }

    /// <summary>pages_shared when the run started (0: nothing was merged).</summary>
    public long KsmPagesShared { get; set; }

    /// <summary>The autotuner: the low rate it leaves at exit (pages_to_scan, sleep_millisecs), from the rate it found.</summary>
    public long? ExitPagesToScan { get; set; }

    /// <summary>…and sleep_millisecs.</summary>
    public long? ExitSleepMilliseconds { get; set; }

    /// <summary>Guests the run started (recorded before each start).</summary>
    public List<HostJournalGuest> Guests { get; set; } = new();

    /// <summary>Files the run created (recorded before each is created), oldest first.</summary>
    public List<string> Files { get; set; } = new();

    /// <summary>Folders the run created, oldest first (removed by -Recover only when empty).</summary>
    public List<string> Folders { get; set; } = new();

    /// <summary>Isolated networks the run made (-Network Isolated): namespace and folder.</summary>
    public List<HostJournalNetwork> Networks { get; set; } = new();

    /// <summary>Where this journal is (or was) kept.</summary>
    public string? JournalPath { get; set; }

    /// <summary>Set by -Recover: true when everything recorded was undone.</summary>
    public bool Recovered { get; set; }

    /// <summary>Set by -Recover: what could not be undone.</summary>
    public string[] RecoveryProblems { get; set; } = Array.Empty<string>();

    /// <summary>The folder journals are kept in: &lt;run root&gt;/.journal (/run/kvmovercommit/.journal as root; the dot keeps it apart from guests' run directories).</summary>
    public static string DefaultDirectory => Path.Combine(GuestLauncher.DefaultRunRoot, ".journal");

    /// <summary>Experiment journals.</summary>
    public const string ExperimentKind = "experiment";

    /// <summary>KSM autotuner journals.</summary>
    public const string AutoTuneKind = "ksm-autotune";

    readonly object _gate = new();

    /// <summary>
    /// Starts a journal for this process and writes it (before the run changes anything). Fails with the error of
    /// <see cref="RefuseIfDeadRunFound"/> when a dead run's journal is there.
    /// </summary>
    public static HostJournal Begin(string kind, string id, string? directory, KsmSettingsSnapshot? ksm)
    {
        var dir = directory ?? DefaultDirectory;
        RefuseIfDeadRunFound(dir);
        int pid = Environment.ProcessId;
        var j = new HostJournal
        {
            Kind = kind,
            Id = id,
            Pid = pid,
            PidStartTicks = ProcessLiveness.StartTicks(HostRoots.Default, pid),
            StartTime = DateTimeOffset.UtcNow,
            KsmSettings = ksm?.Settings,
            KsmPagesShared = ksm?.PagesSharedAtCapture ?? 0,
            SysRoot = ksm?.Roots.Sys,
            JournalPath = Path.Combine(dir, $"{kind}-{id}.json"),
        };
        try
        {
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "JournalWriteFailed", $"Cannot create the journal folder '{dir}'", dir);
        }
        j.Save();
        return j;
    }

    /// <summary>Writes the journal (temporary file, then rename: a kill never leaves half a journal).</summary>
    public void Save()
    {
        lock (_gate)
        {
            var path = JournalPath!;
            var tmp = path + ".tmp";
            try
            {
                File.WriteAllText(tmp, JsonSerializer.Serialize(this, OutputJson.Default.HostJournal));
                File.Move(tmp, path, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw KvmOcException.FromIo(e, "JournalWriteFailed", $"Cannot write the journal '{path}'", path);
            }
        }
    }

    /// <summary>Records a file before it is created.</summary>
    public void AddFile(string path) { lock (_gate) Files.Add(path); Save(); }

    /// <summary>Records an isolated network (namespace and its folder of leases, key and inventory) before it is created.</summary>
    public void AddNetwork(string name, string directory) { lock (_gate) Networks.Add(new HostJournalNetwork { Namespace = name, Directory = directory }); Save(); }

    /// <summary>Records a folder before it is created.</summary>
    public void AddFolder(string path) { lock (_gate) Folders.Add(path); Save(); }

    /// <summary>Records a guest before it starts (pid 0) and again once it runs.</summary>
    public void SetGuest(string name, int pid, string? runDirectory)
    {
        lock (_gate)
        {
            var g = Guests.FirstOrDefault(x => x.Name == name);
            if (g is null) Guests.Add(g = new HostJournalGuest { Name = name });
            g.Id = pid;
            g.RunDirectory = runDirectory ?? g.RunDirectory;
        }
        Save();
    }

    /// <summary>The run ended and cleaned up: the journal goes.</summary>
    public void Complete()
    {
        try { if (JournalPath is not null) File.Delete(JournalPath); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>True while the process that wrote this journal runs (not a zombie, same start time).</summary>
    public bool IsWriterAlive() => ProcessLiveness.IsAlive(HostRoots.Default, Pid, PidStartTicks);

    /// <summary>Every journal in <paramref name="directory"/> (unreadable ones are skipped).</summary>
    public static List<HostJournal> ReadAll(string? directory = null)
    {
        var dir = directory ?? DefaultDirectory;
        var found = new List<HostJournal>();
        if (!Directory.Exists(dir)) return found;
        foreach (var f in Directory.GetFiles(dir, "*.json").OrderBy(f => f, StringComparer.Ordinal))
        {
            try
            {
                if (FileKind.Of(f) != PathKind.Regular) continue;
                var j = JsonSerializer.Deserialize(File.ReadAllText(f), OutputJson.Default.HostJournal);
                if (j is null) continue;
                j.JournalPath = f;
                found.Add(j);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException) { }
        }
        return found;
    }

    /// <summary>Journals of runs whose process is gone (or a zombie): what -Recover undoes.</summary>
    public static List<HostJournal> FindDead(string? directory = null, string? kind = null) =>
        ReadAll(directory).Where(j => (kind is null || j.Kind == kind) && !j.IsWriterAlive()).ToList();

    /// <summary>The command that recovers a journal of this kind.</summary>
    public static string RecoverCommand(string kind) => kind == AutoTuneKind
        ? "Invoke-KsmAutoTune -Recover (kvmoc ksm autotune --recover)"
        : "Invoke-OvercommitExperiment -Recover (kvmoc experiment --recover)";

    /// <summary>
    /// Refuses to start while a dead run's journal is there (its guests, files and KSM settings are still as it left
    /// them): ExperimentJournalFound or KsmAutoTuneJournalFound, with the command that recovers.
    /// </summary>
    public static void RefuseIfDeadRunFound(string? directory = null)
    {
        var dead = FindDead(directory);
        if (dead.Count == 0) return;
        var j = dead[0];
        var what = j.Kind == AutoTuneKind ? "A KSM autotuner" : "An experiment";
        throw new KvmOcException(ErrorKind.InvalidOperation, j.Kind == AutoTuneKind ? "KsmAutoTuneJournalFound" : "ExperimentJournalFound",
            $"{what} run ({j.Id}, pid {j.Pid}, started {j.StartTime:u}) ended without cleaning up: its journal {j.JournalPath} records "
            + $"{j.Guests.Count} guest(s), {j.Files.Count} file(s), {j.Folders.Count} folder(s)" + (j.Networks.Count > 0 ? $", {j.Networks.Count} network namespace(s)" : "")
            + (j.KsmSettings is null ? "" : $" and the KSM settings it found (run = {j.KsmSettings.Run}, pages_to_scan = {j.KsmSettings.PagesToScan}, sleep_millisecs = {j.KsmSettings.SleepMilliseconds})")
            + ". Starting now would adopt what it left as the original state.", j.JournalPath,
            $"{RecoverCommand(j.Kind)} stops those guests, deletes only those files and folders and restores KSM as that run found it.");
    }

    /// <summary>
    /// Undoes every dead run of <paramref name="kind"/> (all kinds when null): stops the guests it recorded (QMP quit,
    /// SIGKILL if needed) and removes their run directories, deletes the files it recorded (regular files only) and the
    /// folders it created when they are empty, restores the KSM settings it found (the autotuner: the low exit rate it
    /// would have left), then deletes the journal. Returns each journal with Recovered and RecoveryProblems set.
    /// </summary>
    public static async Task<List<HostJournal>> RecoverAsync(string? kind, string? directory, IOperationObserver observer, CancellationToken ct, HostRoots? roots = null,
        Func<HostJournal, bool>? shouldProcess = null)
    {
        roots ??= HostRoots.Default;
        var done = new List<HostJournal>();
        foreach (var j in FindDead(directory, kind))
        {
            ct.ThrowIfCancellationRequested();
            if (shouldProcess is not null && !shouldProcess(j)) continue;
            var problems = new List<string>();
            observer.Verbose($"Recovering {j.Kind} {j.Id} (pid {j.Pid}) from {j.JournalPath}");
            var scanner = new QemuProcessScanner(roots);
            var running = scanner.Scan();
            var stop = new GuestStopOptions { TurnOff = true, Force = true };
            var kept = new HashSet<string>(StringComparer.Ordinal);
            foreach (var g in j.Guests)
            {
                var proc = running.FirstOrDefault(p => p.Name == g.Name && (g.Id == 0 || p.Id == g.Id));
                if (proc is null)
                {
                    if (g.RunDirectory is not null && Directory.Exists(g.RunDirectory)) GuestLauncher.RemoveRunDirectory(g.RunDirectory);
                    continue;
                }
                try
                {
                    await GuestStopper.StopAsync(proc, stop, observer, ct, roots).ConfigureAwait(false);
                    observer.Verbose($"Stopped guest '{g.Name}' (pid {proc.Id})");
                }
                catch (KvmOcException e) when (e.ErrorId != "GuestNotRunning")
                {
                    problems.Add($"Guest '{g.Name}' did not stop: {e.Message}");
                    kept.UnionWith(proc.Disks);
                }
                catch (KvmOcException) { }
            }
            for (int i = j.Files.Count - 1; i >= 0; i--)
            {
                var f = j.Files[i];
                try
                {
                    var k = FileKind.Of(f);
                    if (k == PathKind.Missing) continue;
                    if (kept.Contains(f)) { problems.Add($"Kept '{f}': its guest still runs."); continue; }
                    if (k != PathKind.Regular) { problems.Add($"Kept '{f}': it is {FileKind.Describe(k)}, not the file the run created."); continue; }
                    File.Delete(f);
                    observer.Verbose($"Deleted {f}");
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    problems.Add($"Could not delete '{f}': {e.Message}");
                }
            }
            for (int i = j.Folders.Count - 1; i >= 0; i--)
            {
                var d = j.Folders[i];
                try
                {
                    if (!Directory.Exists(d)) continue;
                    // A memory cgroup the run created: its guests are gone by now, so rmdir removes it (its files are the kernel's).
                    if (File.Exists(Path.Combine(d, "cgroup.procs"))) { Directory.Delete(d); observer.Verbose($"Removed the cgroup {d}"); continue; }
                    if (Directory.EnumerateFileSystemEntries(d).Any()) { problems.Add($"Kept the folder '{d}': it holds files the run did not create."); continue; }
                    Directory.Delete(d);
                    observer.Verbose($"Deleted {d}");
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    problems.Add($"Could not delete '{d}': {e.Message}");
                }
            }
            foreach (var n in j.Networks)
            {
                // Only what the run named: a kvmoc-net-* namespace and its own folder of that name.
                if (!n.Namespace.StartsWith(IsolatedNetwork.NamespacePrefix, StringComparison.Ordinal) || Path.GetFileName(n.Directory) != n.Namespace)
                {
                    problems.Add($"Kept the network '{n.Namespace}' ({n.Directory}): not a name the experiment makes.");
                    continue;
                }
                try
                {
                    if (IsolatedNetwork.NamespaceExists(n.Namespace))
                    {
                        await IsolatedNetwork.RemoveNamespaceAsync(n.Namespace).ConfigureAwait(false);
                        observer.Verbose($"Deleted the network namespace {n.Namespace} (dnsmasq, bridge, taps)");
                    }
                    if (Directory.Exists(n.Directory))
                    {
                        Directory.Delete(n.Directory, true);
                        observer.Verbose($"Deleted {n.Directory}");
                    }
                }
                catch (KvmOcException e) { problems.Add(e.Message); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { problems.Add($"Could not delete '{n.Directory}': {e.Message}"); }
            }
            var ksmRoots = j.SysRoot is null ? roots : roots with { Sys = j.SysRoot };
            try
            {
                if (j.Kind == AutoTuneKind && j.ExitPagesToScan is long pages && j.ExitSleepMilliseconds is long sleep)
                {
                    new KsmTuner(ksmRoots, observer).Set(new KsmTuning { PagesToScan = pages, SleepMilliseconds = sleep });
                    observer.Verbose($"KSM left at the autotuner's exit rate {pages} pages / {sleep} ms");
                }
                else if (j.KsmSettings is not null)
                {
                    var differences = KsmSettingsSnapshot.From(ksmRoots, j.KsmSettings, j.KsmPagesShared).Restore(observer);
                    if (differences.Count > 0) problems.Add("KSM settings still differ after the restore: " + string.Join("; ", differences));
                }
            }
            catch (KvmOcException e)
            {
                problems.Add($"Restoring the KSM settings failed: {e.Message}");
            }
            j.RecoveryProblems = problems.ToArray();
            j.Recovered = problems.Count == 0;
            foreach (var p in problems) observer.Warning(p);
            if (j.Recovered) j.Complete();
            else observer.Warning($"The journal {j.JournalPath} is kept; -Recover tries again.");
            done.Add(j);
        }
        if (done.Count == 0) observer.Verbose("No journal of a dead run found: nothing to recover.");
        return done;
    }

    /// <summary>The autotuner's journal (KSM rate found and exit rate), unless <paramref name="options"/> opts out.</summary>
    internal static HostJournal? ForAutoTune(KsmAutoTuneOptions options, long exitPages, long exitSleep)
    {
        // Only on the real kernel: a test on a fake sysfs tree leaves nothing in /run.
        if (!options.Journal || options.Roots is not null && options.Roots != HostRoots.Default) return null;
        var j = Begin(AutoTuneKind, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), options.JournalDirectory,
            KsmSettingsSnapshot.Capture(options.Roots), exitPages, exitSleep);
        return j;
    }

    static HostJournal Begin(string kind, string id, string? directory, KsmSettingsSnapshot ksm, long exitPages, long exitSleep)
    {
        var dir = directory ?? DefaultDirectory;
        RefuseIfDeadRunFound(dir);
        var j = Begin(kind, id, dir, ksm);
        j.ExitPagesToScan = exitPages;
        j.ExitSleepMilliseconds = exitSleep;
        j.Save();
        return j;
    }
}
