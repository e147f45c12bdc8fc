using System.Runtime.InteropServices;
using System.Text;

namespace KvmOvercommit.Engine.Ksm;

/// <summary>One sysfs write of a tuning plan.</summary>
public sealed class KsmWrite
{
    /// <summary>File name under /sys/kernel/mm/ksm.</summary>
    public string File { get; set; } = "";
    /// <summary>The text written.</summary>
    public string Value { get; set; } = "";
    /// <summary>The value before (what a rollback writes back).</summary>
    public string? OldValue { get; set; }
    /// <summary>Why this write is there (shown by -WhatIf and -Verbose).</summary>
    public string Reason { get; set; } = "";

    /// <inheritdoc />
    public override string ToString() => $"{File}: {OldValue ?? "?"} -> {Value}" + (Reason.Length > 0 ? $" ({Reason})" : "");
}

/// <summary>What Set-KsmTuning will do: the writes in the order the kernel accepts them, and what they replace.</summary>
public sealed class KsmTuningPlan
{
    /// <summary>The KSM folder written to.</summary>
    public string KsmPath { get; set; } = "";
    /// <summary>The writes, in order.</summary>
    public List<KsmWrite> Writes { get; set; } = new();
    /// <summary>The settings the writes replace (their values before), to restore later.</summary>
    public KsmTuning Replaced { get; set; } = new();
    /// <summary>True when nothing needs writing (every value is already set).</summary>
    public bool IsEmpty => Writes.Count == 0;
    /// <summary>One line per write, for -WhatIf.</summary>
    public string Describe() => IsEmpty ? "nothing to change" : string.Join("; ", Writes.Select(w => w.ToString()));
}

/// <summary>
/// Set-KsmTuning's engine: validates every value before writing anything, orders the writes so the kernel accepts
/// them (advisor_mode before/after pages_to_scan, unmerge before max_page_sharing/merge_across_nodes under Force,
/// run last), rolls back what it wrote if a write fails, and returns what it replaced.
/// </summary>
public sealed class KsmTuner
{
    readonly HostRoots _roots;
    readonly IOperationObserver _observer;

    /// <summary>A tuner for the KSM folder under <paramref name="roots"/>.</summary>
    public KsmTuner(HostRoots? roots = null, IOperationObserver? observer = null)
    {
        _roots = roots ?? HostRoots.Default;
        _observer = observer ?? NullObserver.Instance;
    }

    /// <summary>How a value reaches a file. Tests replace it with a fake kernel that refuses writes like the real one.</summary>
    internal Action<string, string> WriteFile { get; set; } = WriteSysfs;

    /// <summary>Plans and applies; returns the settings replaced.</summary>
    public KsmTuning Set(KsmTuning desired, bool force = false) => Apply(Plan(desired, force));

    /// <summary>Validates <paramref name="desired"/> against this kernel and orders the writes. Writes nothing.</summary>
    public KsmTuningPlan Plan(KsmTuning desired, bool force = false)
    {
        if (!KsmStatReader.IsAvailable(_roots))
            throw new KvmOcException(ErrorKind.NotInstalled, "KsmNotAvailable", $"This kernel has no KSM: {_roots.Ksm} does not exist.", _roots.Ksm,
                "Use a kernel built with CONFIG_KSM=y.");
        var cur = KsmStatReader.Read(_roots);
        var want = desired.With(null);
        Validate(want, cur);

        string? advisorTarget = want.AdvisorMode ?? cur.AdvisorMode;
        bool advisorChanges = want.AdvisorMode is not null && want.AdvisorMode != cur.AdvisorMode;
        if (want.PagesToScan is not null && advisorTarget == "scan-time")
        {
            if (desired.AdvisorMode == "scan-time")
            {
                if (want.PagesToScan != cur.PagesToScan) _observer.Verbose("pages_to_scan is left out: the scan-time advisor sets it itself.");
                want.PagesToScan = null;
            }
            else if (want.PagesToScan != cur.PagesToScan)
            {
                throw new KvmOcException(ErrorKind.InvalidOperation, "KsmAdvisorOwnsPagesToScan",
                    "pages_to_scan cannot be written while advisor_mode is scan-time (the kernel refuses it).", KsmKnob.PagesToScan,
                    "Add -AdvisorMode none (or -Profile Default/Aggressive) to switch the advisor off first.");
            }
        }

        var changes = KsmTuning.Knobs
            .Select(k => (Knob: k, Value: k.Format(k.Get(want)), Old: k.Format(k.Current(cur))))
            .Where(c => c.Value is not null && c.Value != c.Old)
            .ToDictionary(c => c.Knob.File);

        var plan = new KsmTuningPlan { KsmPath = _roots.Ksm, Replaced = new KsmTuning { HostName = cur.HostName } };
        void Add(string file, string reason = "")
        {
            if (!changes.Remove(file, out var c)) return;
            plan.Writes.Add(new KsmWrite { File = file, Value = c.Value!, OldValue = c.Old, Reason = reason });
            c.Knob.Set(plan.Replaced, c.Knob.Current(cur));
        }

        bool needsNoMerged = changes.ContainsKey(KsmKnob.MaxPageSharing) || changes.ContainsKey(KsmKnob.MergeAcrossNodes);
        bool merged = (cur.PagesShared ?? 0) > 0 || (cur.StableNodeChains ?? 0) > 0 || (cur.StableNodeDups ?? 0) > 0;
        bool unmergeRequested = want.Run == KsmRunState.Unmerging;
        if (needsNoMerged && merged && !unmergeRequested)
        {
            if (!force)
                throw new KvmOcException(ErrorKind.ResourceBusy, "KsmPagesMerged",
                    $"max_page_sharing and merge_across_nodes change only while no pages are merged ({cur.PagesShared} KSM pages now).",
                    string.Join(",", new[] { KsmKnob.MaxPageSharing, KsmKnob.MergeAcrossNodes }.Where(changes.ContainsKey)),
                    "Use -Force to unmerge every page first (run=2; ksmd merges again afterwards if it was running), or -Run Unmerge.");
            plan.Writes.Add(new KsmWrite { File = KsmKnob.Run, Value = "2", OldValue = KsmTuning.Knobs[0].Format(cur.Run), Reason = "unmerge first (-Force)" });
            plan.Replaced.Run = cur.Run;
            if (!changes.ContainsKey(KsmKnob.Run) && cur.Run is not null && cur.Run != KsmRunState.Unmerging)
                changes[KsmKnob.Run] = (KsmTuning.Knobs[0], KsmTuning.Knobs[0].Format(cur.Run), "2");
        }
        if (unmergeRequested) Add(KsmKnob.Run, "unmerge before the other changes");

        if (advisorChanges && want.AdvisorMode != "scan-time") Add(KsmKnob.AdvisorMode, "before pages_to_scan: the kernel refuses it under the advisor");
        Add(KsmKnob.PagesToScan);
        Add(KsmKnob.SleepMilliseconds);
        Add(KsmKnob.MaxPageSharing);
        Add(KsmKnob.MergeAcrossNodes);
        Add(KsmKnob.UseZeroPages);
        Add(KsmKnob.SmartScan);
        Add(KsmKnob.StableNodeChainsPruneMilliseconds);
        Add(KsmKnob.AdvisorMaxCpu);
        Add(KsmKnob.AdvisorTargetScanTime);
        // Keep min <= max at every step.
        if (want.AdvisorMinPagesToScan > (cur.AdvisorMaxPagesToScan ?? long.MaxValue)) { Add(KsmKnob.AdvisorMaxPagesToScan); Add(KsmKnob.AdvisorMinPagesToScan); }
        else { Add(KsmKnob.AdvisorMinPagesToScan); Add(KsmKnob.AdvisorMaxPagesToScan); }
        if (advisorChanges) Add(KsmKnob.AdvisorMode, "after the other knobs");
        if (advisorChanges) plan.Replaced.PagesToScan ??= cur.PagesToScan; // the kernel resets pages_to_scan when the advisor mode changes
        Add(KsmKnob.Run, plan.Writes.Any(w => w.File == KsmKnob.Run) ? "back to the state before the unmerge" : "last, after the tuning");
        return plan;
    }

    /// <summary>Writes the plan. A failing write rolls back the ones before it; returns the settings replaced.</summary>
    public KsmTuning Apply(KsmTuningPlan plan)
    {
        foreach (var w in plan.Writes.Select(w => w.File).Distinct())
            CheckWritable(Path.Combine(_roots.Ksm, w));
        var done = new List<KsmWrite>();
        foreach (var w in plan.Writes)
        {
            var path = Path.Combine(_roots.Ksm, w.File);
            _observer.Verbose($"echo {w.Value} > {path}" + (w.Reason.Length > 0 ? $"   # {w.Reason}" : ""));
            try
            {
                WriteFile(path, w.Value);
                done.Add(w);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or KvmOcException)
            {
                var rollback = Rollback(done);
                var inner = KvmOcException.FromIo(e, "KsmWriteFailed", $"Writing '{w.Value}' to {path} failed", path);
                throw new KvmOcException(inner.Kind, "KsmWriteFailed",
                    $"{inner.Message}. {rollback}", path,
                    inner.Kind == ErrorKind.InvalidArgument ? "The kernel refused the value; check it against the kernel's KSM documentation." : inner.Hint, e);
            }
        }
        return plan.Replaced;
    }

    string Rollback(List<KsmWrite> done)
    {
        if (done.Count == 0) return "Nothing had been changed.";
        var failed = new List<string>();
        for (int i = done.Count - 1; i >= 0; i--)
        {
            var w = done[i];
            if (w.OldValue is null) continue;
            var path = Path.Combine(_roots.Ksm, w.File);
            _observer.Verbose($"rollback: echo {w.OldValue} > {path}");
            try { WriteFile(path, w.OldValue); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or KvmOcException) { failed.Add($"{w.File} ({e.Message})"); }
        }
        return failed.Count == 0
            ? $"Rolled back the {done.Count} earlier write(s)."
            : $"Rolled back the earlier writes except {string.Join(", ", failed)}.";
    }

    void Validate(KsmTuning t, KsmStat cur)
    {
        foreach (var k in KsmTuning.Knobs)
        {
            if (k.Get(t) is not null && k.Current(cur) is null)
            {
                if (k.File.StartsWith("advisor", StringComparison.Ordinal))
                    throw new KvmOcException(ErrorKind.NotInstalled, "KsmAdvisorNotAvailable", $"This kernel has no {k.File} (the scan-time advisor arrived in Linux 6.8).", k.File,
                        "Use -Profile Aggressive or -PagesToScan/-SleepMilliseconds instead.");
                throw new KvmOcException(ErrorKind.NotInstalled, "KsmKnobNotAvailable", $"This kernel has no {Path.Combine(_roots.Ksm, k.File)}.", k.File,
                    "Leave this setting out on this kernel.");
            }
        }
        static KvmOcException Bad(string knob, object value, string rule) =>
            new(ErrorKind.InvalidArgument, "KsmInvalidValue", $"{knob} = {value} is not valid: {rule}. Nothing was written.", knob,
                $"Give {knob} a value that fits ({rule}).");
        void Range(string knob, long? v, long min, long max)
        {
            if (v is not null && (v < min || v > max)) throw Bad(knob, v, $"must be between {min} and {max}");
        }
        if (t.Run is not null && !Enum.IsDefined(t.Run.Value)) throw Bad(KsmKnob.Run, t.Run, "must be Stopped, Merging or Unmerging");
        Range(KsmKnob.PagesToScan, t.PagesToScan, 0, uint.MaxValue);
        Range(KsmKnob.SleepMilliseconds, t.SleepMilliseconds, 0, uint.MaxValue);
        Range(KsmKnob.MaxPageSharing, t.MaxPageSharing, 2, int.MaxValue);
        Range(KsmKnob.StableNodeChainsPruneMilliseconds, t.StableNodeChainsPruneMilliseconds, 0, uint.MaxValue);
        Range(KsmKnob.AdvisorMaxCpu, t.AdvisorMaxCpu, 1, 100);
        Range(KsmKnob.AdvisorTargetScanTime, t.AdvisorTargetScanTime, 1, uint.MaxValue);
        Range(KsmKnob.AdvisorMinPagesToScan, t.AdvisorMinPagesToScan, 1, uint.MaxValue);
        Range(KsmKnob.AdvisorMaxPagesToScan, t.AdvisorMaxPagesToScan, 1, uint.MaxValue);
        if (t.AdvisorMode is not null)
        {
            t.AdvisorMode = t.AdvisorMode.Trim().ToLowerInvariant();
            if (cur.AdvisorModes is { Length: > 0 } modes && !modes.Contains(t.AdvisorMode))
                throw Bad(KsmKnob.AdvisorMode, t.AdvisorMode, $"this kernel offers {string.Join(", ", modes)}");
        }
        long? min = t.AdvisorMinPagesToScan ?? cur.AdvisorMinPagesToScan, max = t.AdvisorMaxPagesToScan ?? cur.AdvisorMaxPagesToScan;
        if (min is not null && max is not null && min > max && (t.AdvisorMinPagesToScan is not null || t.AdvisorMaxPagesToScan is not null))
            throw Bad(KsmKnob.AdvisorMinPagesToScan, min, $"must not exceed advisor_max_pages_to_scan ({max})");
    }

    void CheckWritable(string path)
    {
        if (access(path, 2 /* W_OK */) == 0) return;
        int errno = Marshal.GetLastPInvokeError();
        if (errno is Errno.EACCES or Errno.EPERM or 30 /* EROFS */)
            throw new KvmOcException(ErrorKind.PermissionDenied, "KsmPermissionDenied", $"No permission to write {path}. Nothing was written.", path,
                "Run as root: sudo pwsh (then Set-KsmTuning …), or sudo kvmoc ksm tune ….");
        if (errno == Errno.ENOENT)
            throw new KvmOcException(ErrorKind.NotInstalled, "KsmKnobNotAvailable", $"{path} does not exist on this kernel.", path);
    }

    static void WriteSysfs(string path, string value)
    {
        using var h = File.OpenHandle(path, FileMode.Truncate, FileAccess.Write);
        RandomAccess.Write(h, Encoding.ASCII.GetBytes(value + "\n"), 0);
    }

    [DllImport("libc", SetLastError = true)] static extern int access(string path, int mode);
}
