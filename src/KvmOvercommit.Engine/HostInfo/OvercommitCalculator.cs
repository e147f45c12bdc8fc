using System.Globalization;

namespace KvmOvercommit.Engine.HostInfo;

/// <summary>The arithmetic of Get-OvercommitReport, on explicit inputs (so it is testable and explainable).</summary>
public static class OvercommitCalculator
{
    /// <summary>Red Hat's guidance: up to 5 vCPUs per logical CPU for single-vCPU guests.</summary>
    public const double VcpuGuidance = 5;

    static string Mib(long bytes) => Units.ToMiB(bytes).ToString("0.##", CultureInfo.InvariantCulture) + " MiB";
    static string N(double d) => d.ToString("0.###", CultureInfo.InvariantCulture);

    /// <summary>Computes the report.</summary>
    public static OvercommitReport Compute(OvercommitInputs inp)
    {
        if (inp.HeadroomPercent is < 0 or >= 100 || double.IsNaN(inp.HeadroomPercent))
            throw new KvmOcException(ErrorKind.InvalidArgument, "InvalidHeadroom", $"HeadroomPercent must be from 0 to below 100 (got {inp.HeadroomPercent}).", inp.HeadroomPercent);
        var ex = new List<string>();
        var guests = inp.Guests;
        var r = new OvercommitReport
        {
            HostName = inp.HostName,
            Timestamp = DateTimeOffset.UtcNow,
            GuestCount = guests.Count,
            LogicalCpus = inp.LogicalCpus,
            MemoryTotalBytes = inp.MemoryTotalBytes,
            MemoryAvailableBytes = inp.MemoryAvailableBytes,
            KsmSavedBytes = inp.KsmSavedBytes,
            HeadroomPercent = inp.HeadroomPercent,
            CurrentIops = inp.CurrentIops,
            Guests = guests.ToArray(),
            VcpuGuidanceMax = VcpuGuidance,
        };

        // CPU
        r.GuestVcpus = guests.Sum(g => g.Vcpus);
        r.MultiVcpuGuests = guests.Count(g => g.Vcpus > 1);
        r.VcpuRatio = inp.LogicalCpus > 0 ? Math.Round((double)r.GuestVcpus / inp.LogicalCpus, 3) : 0;
        r.VcpuAboveGuidance = r.VcpuRatio > VcpuGuidance;
        ex.Add($"VcpuRatio = guest vCPUs / host logical CPUs = {r.GuestVcpus} / {inp.LogicalCpus} = {N(r.VcpuRatio)}"
            + $" ({(r.VcpuAboveGuidance ? "above" : "within")} the {N(VcpuGuidance)}:1 guidance for single-vCPU guests, at most {N(VcpuGuidance * inp.LogicalCpus)} vCPUs"
            + (r.MultiVcpuGuests > 0 ? $"; {r.MultiVcpuGuests} guest(s) have more than one vCPU, where the guidance is lower)" : ")"));

        // Memory
        r.GuestMemoryBytes = guests.Sum(g => g.MemoryBytes);
        r.MemoryRatio = inp.MemoryTotalBytes > 0 ? Math.Round((double)r.GuestMemoryBytes / inp.MemoryTotalBytes, 3) : 0;
        ex.Add($"MemoryRatio = guest memory / host memory = {Mib(r.GuestMemoryBytes)} / {Mib(inp.MemoryTotalBytes)} = {N(r.MemoryRatio)}");
        r.GuestResidentBytes = guests.Sum(g => g.RssBytes ?? 0);
        long ksm = inp.KsmSavedBytes ?? 0;
        r.EffectiveResidentBytes = Math.Max(0, r.GuestResidentBytes - (guests.Count > 0 ? ksm : 0));
        r.EffectiveMemoryRatio = inp.MemoryTotalBytes > 0 ? Math.Round((double)r.EffectiveResidentBytes / inp.MemoryTotalBytes, 3) : 0;
        ex.Add(guests.Count == 0
            ? "EffectiveMemoryRatio = 0: no guests are running."
            : $"EffectiveMemoryRatio = (guest resident − KSM saved) / host memory = ({Mib(r.GuestResidentBytes)} − {Mib(ksm)}) / {Mib(inp.MemoryTotalBytes)} = {N(r.EffectiveMemoryRatio)}"
              + (inp.KsmSavedBytes is null ? " (this kernel has no KSM)" : " (KSM's saving is host-wide; other mergeable processes count in it too)"));

        // Capacity
        r.HeadroomBytes = (long)Math.Round(inp.MemoryTotalBytes * inp.HeadroomPercent / 100.0);
        long spare = inp.MemoryAvailableBytes - r.HeadroomBytes;
        var withRss = guests.Where(g => g.RssBytes is not null).ToList();
        if (withRss.Count == 0)
        {
            ex.Add(guests.Count == 0
                ? $"EstimatedAdditionalGuests: unknown — no guests are running, so there is no average guest to size. Memory free for guests: available − headroom = {Mib(inp.MemoryAvailableBytes)} − {N(inp.HeadroomPercent)}% of {Mib(inp.MemoryTotalBytes)} ({Mib(r.HeadroomBytes)}) = {Mib(Math.Max(0, spare))}."
                : "EstimatedAdditionalGuests: unknown — no guest's resident memory could be read (run as root).");
        }
        else
        {
            long unique;
            if (withRss.All(g => g.KsmMergingPages is not null))
            {
                long total = withRss.Sum(g => Math.Max(0, g.RssBytes!.Value - g.KsmMergingPages!.Value * inp.PageSize));
                unique = total / withRss.Count;
                ex.Add($"Unique resident per guest = average of (RSS − KSM-merged pages × {inp.PageSize}) over {withRss.Count} guest(s) = {Mib(total)} / {withRss.Count} = {Mib(unique)}");
            }
            else
            {
                long total = Math.Max(0, withRss.Sum(g => g.RssBytes!.Value) - ksm);
                unique = total / withRss.Count;
                ex.Add($"Unique resident per guest = (sum of RSS − KSM saved) / guests = ({Mib(withRss.Sum(g => g.RssBytes!.Value))} − {Mib(ksm)}) / {withRss.Count} = {Mib(unique)} (per-guest KSM counts are not available on this kernel)");
            }
            r.UniqueResidentPerGuestBytes = unique;
            if (unique <= 0)
                ex.Add("EstimatedAdditionalGuests: unknown — the guests hold no unique resident memory yet (just started, or everything is merged).");
            else
            {
                r.EstimatedAdditionalGuests = (int)Math.Max(0, Math.Floor((double)spare / unique));
                ex.Add($"EstimatedAdditionalGuests = floor((available − headroom) / unique per guest) = floor(({Mib(inp.MemoryAvailableBytes)} − {N(inp.HeadroomPercent)}% of {Mib(inp.MemoryTotalBytes)} = {Mib(r.HeadroomBytes)}) / {Mib(unique)}) = {r.EstimatedAdditionalGuests}");
            }
        }

        if (inp.Cgroup is not null)
        {
            for (int i = 0; i < ex.Count; i++)
                if (ex[i].StartsWith("EstimatedAdditionalGuests ", StringComparison.Ordinal) || ex[i].StartsWith("EstimatedAdditionalGuests:", StringComparison.Ordinal)) ex[i] = "Host-wide (not the estimate with -Cgroup): " + ex[i];
            ComputeCgroupCapacity(inp, r, ex);
        }

        // Risk (issue 14): what the KSM saving costs if it goes away, and what the balloons hold back.
        var warnings = new List<string>();
        r.SwapFreeBytes = inp.SwapFreeBytes;
        if (inp.KsmPagesSharing is { } sharing)
        {
            r.KsmUnmergeRiskBytes = sharing * inp.PageSize;
            long cover = inp.MemoryAvailableBytes + inp.SwapFreeBytes;
            r.KsmUnmergeRiskExceedsAvailable = r.KsmUnmergeRiskBytes > cover;
            ex.Add($"KsmUnmergeRiskBytes = pages_sharing × page size = {sharing} × {inp.PageSize} = {Mib(r.KsmUnmergeRiskBytes.Value)}; covered by available + free swap = {Mib(inp.MemoryAvailableBytes)} + {Mib(inp.SwapFreeBytes)} = {Mib(cover)}"
                + (r.KsmUnmergeRiskExceedsAvailable ? $": short by {Mib(r.KsmUnmergeRiskBytes.Value - cover)}" : ""));
            if (r.KsmUnmergeRiskExceedsAvailable)
                warnings.Add($"If KSM unmerged (run=2) or the guests' merged pages diverged, the host would need {Mib(r.KsmUnmergeRiskBytes.Value)} at once, but only {Mib(cover)} is available with free swap: the OOM killer would end guests. Add swap or memory, or run fewer guests.");
        }
        else
        {
            ex.Add("KsmUnmergeRiskBytes: none — this kernel has no KSM.");
        }
        var ballooned = guests.Where(g => g.BalloonActualBytes is not null).ToList();
        r.BalloonedBytes = ballooned.Sum(g => Math.Max(0, g.MemoryBytes - g.BalloonActualBytes!.Value));
        ex.Add(ballooned.Count == 0
            ? "BalloonedBytes = 0: no guest's balloon could be read."
            : $"BalloonedBytes = sum of (-m − balloon actual) over {ballooned.Count} guest(s) with a readable balloon = {Mib(ballooned.Sum(g => g.MemoryBytes))} − {Mib(ballooned.Sum(g => g.BalloonActualBytes!.Value))} = {Mib(r.BalloonedBytes)} (what the guests get back when their balloons deflate)");
        r.Warnings = warnings.ToArray();

        // Disk
        var groups = new Dictionary<string, (int Count, long Virtual, Dictionary<string, long> Alloc)>(StringComparer.Ordinal);
        foreach (var disk in guests.SelectMany(g => g.Disks))
        {
            if (!inp.DiskImages.TryGetValue(disk, out var img)) continue;
            var bottom = img.BackingChain.Length > 0 ? img.BackingChain[^1].Path : img.Path;
            if (!groups.TryGetValue(bottom, out var grp)) grp = (0, 0, new Dictionary<string, long>(StringComparer.Ordinal));
            grp.Count++;
            grp.Virtual += img.VirtualSizeBytes;
            grp.Alloc[img.Path] = img.AllocatedBytes;
            foreach (var b in img.BackingChain) grp.Alloc[b.Path] = b.AllocatedBytes;
            groups[bottom] = grp;
        }
        r.DiskRatios = groups.OrderBy(g => g.Key, StringComparer.Ordinal).Select(g =>
        {
            long alloc = g.Value.Alloc.Values.Sum();
            return new DiskRatio { BaseImage = g.Key, DiskCount = g.Value.Count, VirtualBytes = g.Value.Virtual, AllocatedBytes = alloc, Ratio = alloc > 0 ? Math.Round((double)g.Value.Virtual / alloc, 3) : 0 };
        }).ToArray();
        foreach (var d in r.DiskRatios)
            ex.Add($"DiskRatio for {d.BaseImage}: {d.DiskCount} disk(s), virtual {Mib(d.VirtualBytes)} / allocated {Mib(d.AllocatedBytes)} (overlays + base once) = {N(d.Ratio)}");
        long allV = r.DiskRatios.Sum(d => d.VirtualBytes), allA = r.DiskRatios.Sum(d => d.AllocatedBytes);
        bool anyDisk = guests.Any(g => g.Disks.Length > 0);
        r.DiskRatio = r.DiskRatios.Length == 0 ? (anyDisk ? null : 0) : allA > 0 ? Math.Round((double)allV / allA, 3) : 0;
        if (r.DiskRatios.Length == 0)
            ex.Add(!anyDisk ? "DiskRatio = 0: no guest has a disk image." : "DiskRatio: unknown — the guests' disk images could not be inspected (qemu-img missing or failing).");
        else
            ex.Add($"DiskRatio = all virtual / all allocated = {Mib(allV)} / {Mib(allA)} = {N(r.DiskRatio ?? 0)}");

        // IOPS
        if (inp.CurrentIops is not null)
        {
            r.IopsPerGuest = guests.Count > 0 ? Math.Round(inp.CurrentIops.Value / guests.Count, 2) : null;
            ex.Add($"CurrentIops = {N(inp.CurrentIops.Value)} over the host's whole disks" + (r.IopsPerGuest is null ? "" : $" = {N(r.IopsPerGuest.Value)} per guest; IOPS cannot be overcommitted, compare with what the disks can sustain"));
        }
        ComputeIopsBudget(inp, r, ex);
        r.Explanation = ex.ToArray();
        return r;
    }

    /// <summary>
    /// -Cgroup: EstimatedAdditionalGuests against the cgroup's limit instead of the host. One more guest costs what the
    /// guests in the cgroup are charged on average — the cgroup's usage (minus inactive file cache, minus what other
    /// processes in it hold) over their number, so QEMU's page tables, kernel memory and the KSM savings already made are
    /// in it — plus, when KSM is not running, the pages KSM merged per guest (a new guest's are not merged).
    /// </summary>
    static void ComputeCgroupCapacity(OvercommitInputs inp, OvercommitReport r, List<string> ex)
    {
        var inside = inp.Guests.Where(g => g.InCgroup).ToList();
        r.Cgroup = inp.Cgroup;
        r.CgroupLimitBytes = inp.CgroupLimitBytes;
        r.CgroupUsedBytes = inp.CgroupUsedBytes;
        r.CgroupGuestCount = inside.Count;
        r.HeadroomBytes = (long)Math.Round(inp.CgroupLimitBytes * inp.HeadroomPercent / 100.0);
        long spare = inp.CgroupLimitBytes - r.HeadroomBytes - inp.CgroupUsedBytes;
        string spareText = $"limit − headroom − used = {Mib(inp.CgroupLimitBytes)} − {N(inp.HeadroomPercent)}% ({Mib(r.HeadroomBytes)}) − {Mib(inp.CgroupUsedBytes)} = {Mib(spare)}";
        r.EstimatedAdditionalGuests = null;
        if (inside.Count == 0)
        {
            ex.Add($"EstimatedAdditionalGuests in cgroup {inp.Cgroup}: unknown — no guest runs in it, so there is no guest to size ({spareText}; start guests there with Start-KvmGuest -Cgroup).");
            return;
        }
        long guestCharge = Math.Max(0, inp.CgroupUsedBytes - inp.CgroupOtherBytes);
        long perGuest = guestCharge / inside.Count;
        string perText = $"Per guest in cgroup {inp.Cgroup} = (used − other processes) / guests = ({Mib(inp.CgroupUsedBytes)} − {Mib(inp.CgroupOtherBytes)} in {inp.CgroupOtherProcesses} other process(es)) / {inside.Count} = {Mib(perGuest)}";
        if (!inp.KsmRunning && inside.All(g => g.KsmMergingPages is not null))
        {
            long merged = inside.Sum(g => g.KsmMergingPages!.Value) * inp.PageSize / inside.Count;
            if (merged > 0)
            {
                perGuest += merged;
                perText += $" + {Mib(merged)} KSM-merged per guest (KSM is not running: a new guest's pages stay unmerged) = {Mib(perGuest)}";
            }
        }
        ex.Add(perText + " (what a guest of this kind really charges the cgroup: QEMU's RSS with its page tables and kernel memory, after KSM)");
        r.CgroupPerGuestBytes = perGuest;
        if (perGuest <= 0)
        {
            ex.Add($"EstimatedAdditionalGuests in cgroup {inp.Cgroup}: unknown — its guests are charged nothing yet.");
            return;
        }
        r.EstimatedAdditionalGuests = (int)Math.Max(0, Math.Floor((double)spare / perGuest));
        ex.Add($"EstimatedAdditionalGuests = floor((cgroup {spareText}) / per guest {Mib(perGuest)}) = {r.EstimatedAdditionalGuests} (sized against the cgroup's limit, not the host)");
    }

    /// <summary>
    /// The IOPS budget: IopsRatio = sum of limits / capacity; IOPS per guest = the average limit when every guest has
    /// one (what the limits allow), else the peak device IOPS / guests (what they do); EstimatedAdditionalGuestsByIops =
    /// floor((capacity − IOPS in use) / per guest), where IOPS in use is the limit sum or the peak; LimitingResource is
    /// the resource whose estimate is smaller.
    /// </summary>
    static void ComputeIopsBudget(OvercommitInputs inp, OvercommitReport r, List<string> ex)
    {
        var guests = inp.Guests;
        r.DeviceIopsCapacity = inp.DeviceIopsCapacity;
        r.DeviceIopsCapacitySource = inp.DeviceIopsCapacitySource;
        r.PeakIops = inp.PeakIops;
        r.IopsLimitSum = inp.IopsLimitSum;
        r.GuestsWithIopsLimit = inp.GuestsWithIopsLimit;
        if (inp.PeakIops is { } peak)
            ex.Add($"PeakIops = {N(peak)}: the busiest second of the sample" + (inp.CurrentIops is { } cur ? $" (average {N(cur)})" : ""));
        if (inp.IopsLimitSum is { } sum)
            ex.Add($"IopsLimitSum = {sum} IOPS: the limits of {inp.GuestsWithIopsLimit} of {guests.Count} guest(s) (a throttle group counted once)");
        if (inp.DeviceIopsCapacity is not { } cap || cap <= 0)
        {
            ex.Add("EstimatedAdditionalGuestsByIops: unknown — no device IOPS capacity (give -DeviceIopsCapacity, or measure it with Measure-DeviceIopsCapacity on the overlays' folder).");
            return;
        }
        if (inp.IopsLimitSum is { } limits)
        {
            r.IopsRatio = Math.Round(limits / cap, 3);
            ex.Add($"IopsRatio = IOPS limits / capacity = {limits} / {N(cap)} ({inp.DeviceIopsCapacitySource ?? "given"}) = {N(r.IopsRatio.Value)}"
                + (r.IopsRatio > 1 ? " (the limits promise more IOPS than the device has: they can all be used at once only if the guests never are)" : ""));
        }
        if (guests.Count == 0)
        {
            ex.Add($"EstimatedAdditionalGuestsByIops: unknown — no guests are running, so there is no IOPS per guest (capacity {N(cap)} IOPS).");
        }
        else
        {
            bool allLimited = inp.IopsLimitSum is not null && inp.GuestsWithIopsLimit == guests.Count;
            double used, perGuest;
            string how;
            if (allLimited)
            {
                used = inp.IopsLimitSum!.Value;
                perGuest = used / guests.Count;
                how = $"IOPS in use = the limits' sum {N(used)}; per guest = {N(used)} / {guests.Count} = {N(Math.Round(perGuest, 2))} (every guest has a limit)";
            }
            else
            {
                used = inp.PeakIops ?? inp.CurrentIops ?? 0;
                perGuest = used / guests.Count;
                how = $"IOPS in use = the {(inp.PeakIops is null ? "current" : "peak")} device IOPS {N(used)}; per guest = {N(used)} / {guests.Count} = {N(Math.Round(perGuest, 2))}"
                    + (inp.GuestsWithIopsLimit > 0 ? $" (only {inp.GuestsWithIopsLimit} of {guests.Count} guests have a limit, so the measured IOPS count)" : " (no guest has an IOPS limit, so the measured IOPS count)");
            }
            if (perGuest <= 0)
                ex.Add($"EstimatedAdditionalGuestsByIops: unknown — {how}: the guests do no I/O now, so IOPS do not bound them (sample longer, or under load, or set limits).");
            else
            {
                r.EstimatedAdditionalGuestsByIops = (int)Math.Max(0, Math.Floor((cap - used) / perGuest));
                ex.Add($"EstimatedAdditionalGuestsByIops = floor((capacity − IOPS in use) / IOPS per guest) = floor(({N(cap)} − {N(used)}) / {N(Math.Round(perGuest, 2))}) = {r.EstimatedAdditionalGuestsByIops}; {how}");
            }
        }
        if (r.EstimatedAdditionalGuests is { } byMemory && r.EstimatedAdditionalGuestsByIops is { } byIops)
        {
            r.LimitingResource = byIops < byMemory ? "Iops" : "Memory";
            ex.Add($"LimitingResource = {r.LimitingResource}: memory allows {byMemory} more guest(s), IOPS allow {byIops}");
        }
    }
}
