using KvmOvercommit.Engine.Io;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.HostInfo;

/// <summary>Get-OvercommitReport on the live host: gathers the inputs (meminfo, cpuinfo, KSM, running QEMUs, qemu-img, a short IOPS sample) and computes.</summary>
public sealed class OvercommitReportBuilder
{
    readonly HostRoots _roots;
    readonly HostInfoReader _reader;

    /// <summary>Reads under <paramref name="roots"/>; <paramref name="guests"/> replaces the QEMU scan in tests.</summary>
    public OvercommitReportBuilder(HostRoots? roots = null, Func<IReadOnlyList<KvmGuest>>? guests = null)
    {
        _roots = roots ?? HostRoots.Default;
        _reader = new HostInfoReader(_roots, guests);
    }

    /// <summary>Gathers the inputs. <paramref name="iopsSeconds"/> 0 skips the IOPS sample; <paramref name="probeDisks"/> false skips qemu-img.</summary>
    public async Task<OvercommitInputs> GatherAsync(double headroomPercent, double iopsSeconds, bool probeDisks, IOperationObserver observer, CancellationToken ct)
    {
        var guests = _reader.Guests();
        observer.Verbose($"{guests.Count} running QEMU guest(s).");
        var mem = _reader.ReadMemory(guests);
        var cpu = _reader.ReadCpu(guests);
        var inputs = new OvercommitInputs
        {
            HostName = Environment.MachineName,
            LogicalCpus = cpu.LogicalCpus,
            MemoryTotalBytes = mem.TotalBytes,
            MemoryAvailableBytes = mem.AvailableBytes,
            KsmSavedBytes = mem.KsmSavedBytes,
            PageSize = Environment.SystemPageSize,
            HeadroomPercent = headroomPercent,
            Guests = guests.Select(g => new GuestFacts
            {
                Name = g.Name,
                MemoryBytes = g.MemoryMB * Units.MiB,
                Vcpus = g.CpuCount,
                RssBytes = g.RssBytes,
                KsmMergingPages = g.KsmMergingPages,
                Disks = g.Disks,
            }).ToList(),
        };
        inputs.SwapFreeBytes = mem.SwapFreeBytes;
        inputs.KsmPagesSharing = ReadKsmPagesSharing();
        if (Cgroup is not null) ReadCgroup(inputs, guests, observer);
        if (QueryBalloons) await FillBalloonsAsync(guests, inputs.Guests, observer, ct).ConfigureAwait(false);
        if (probeDisks)
        {
            foreach (var disk in inputs.Guests.SelectMany(g => g.Disks).Distinct(StringComparer.Ordinal))
            {
                var facts = await DiskImageProbe.ProbeAsync(disk, observer, ct).ConfigureAwait(false);
                if (facts is not null) inputs.DiskImages[disk] = facts;
            }
        }
        if (iopsSeconds > 0)
        {
            // One-second intervals (or one shorter one): CurrentIops is the average over the whole sample, PeakIops the busiest interval.
            double step = Math.Min(1, iopsSeconds);
            int count = Math.Max(1, (int)Math.Round(iopsSeconds / step));
            var sampler = new DeviceIopsSampler(_roots);
            var perInterval = new Dictionary<DateTimeOffset, (double Iops, double Seconds)>();
            await foreach (var row in sampler.SampleAsync(new DeviceIopsOptions { Interval = TimeSpan.FromSeconds(step), Count = count }, observer, ct).ConfigureAwait(false))
            {
                perInterval.TryGetValue(row.Timestamp, out var acc);
                perInterval[row.Timestamp] = (acc.Iops + row.Iops, row.IntervalSeconds);
            }
            double seconds = perInterval.Values.Sum(v => v.Seconds);
            inputs.CurrentIops = seconds > 0 ? Math.Round(perInterval.Values.Sum(v => v.Iops * v.Seconds) / seconds, 2) : 0;
            inputs.PeakIops = perInterval.Count > 0 ? Math.Round(perInterval.Values.Max(v => v.Iops), 2) : 0;
        }
        await GatherIopsBudgetAsync(inputs, guests, observer, ct).ConfigureAwait(false);
        return inputs;
    }

    /// <summary>A memory cgroup (folder or name) to size EstimatedAdditionalGuests against instead of the host (-Cgroup).</summary>
    public string? Cgroup { get; set; }

    /// <summary>The cgroup's limit, usage (minus inactive file cache), which guests are in it and what its other processes hold.</summary>
    void ReadCgroup(OvercommitInputs inputs, IReadOnlyList<KvmGuest> guests, IOperationObserver observer)
    {
        var cg = Memory.MemoryCgroup.Open(Cgroup!, _roots);
        var reading = cg.Read(); // CgroupHasNoLimit: nothing to size against
        var pids = cg.Pids().ToHashSet();
        inputs.Cgroup = cg.Path;
        inputs.CgroupLimitBytes = reading.TotalBytes;
        inputs.CgroupUsedBytes = reading.UsedBytes;
        for (int i = 0; i < guests.Count; i++) inputs.Guests[i].InCgroup = pids.Contains(guests[i].Id);
        var others = pids.Except(guests.Select(g => g.Id)).ToList();
        inputs.CgroupOtherProcesses = others.Count;
        inputs.CgroupOtherBytes = others.Sum(p => ProcFiles.ReadText(_roots.Pid(p, "status")) is { } status ? ProcFiles.StatusKb(status, "VmRSS") ?? 0 : 0);
        try { inputs.KsmRunning = Ksm.KsmStatReader.IsAvailable(_roots) && Ksm.KsmStatReader.Read(_roots).Run == Ksm.KsmRunState.Merging; }
        catch (KvmOcException) { inputs.KsmRunning = false; }
        observer.Verbose($"Cgroup {cg.Path}: limit {Units.ToMiB(reading.TotalBytes)} MiB, used {Units.ToMiB(reading.UsedBytes)} MiB, {pids.Count - others.Count} guest(s) and {others.Count} other process(es) in it.");
    }

    /// <summary>Ask each guest's QMP for its balloon (query-balloon) for BalloonedBytes; default true.</summary>
    public bool QueryBalloons { get; set; } = true;

    long? ReadKsmPagesSharing()
    {
        if (!Ksm.KsmStatReader.IsAvailable(_roots)) return null;
        try { return Ksm.KsmStatReader.Read(_roots).PagesSharing; }
        catch (KvmOcException) { return null; }
    }

    /// <summary>query-balloon of every guest with a QMP socket, in parallel, 2 s each; unreachable ones stay null.</summary>
    static async Task FillBalloonsAsync(IReadOnlyList<KvmGuest> guests, List<GuestFacts> facts, IOperationObserver observer, CancellationToken ct)
    {
        using var gate = new SemaphoreSlim(16);
        await Task.WhenAll(guests.Select(async (g, i) =>
        {
            if (g.QmpSocket is null) return;
            await gate.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                var ret = await KvmGuestInventory.ExecuteOnceAsync(g.QmpSocket, "query-balloon", null, TimeSpan.FromSeconds(2), ct).ConfigureAwait(false);
                if (ret.ValueKind == System.Text.Json.JsonValueKind.Object && ret.TryGetProperty("actual", out var a) && a.TryGetInt64(out long actual))
                    facts[i].BalloonActualBytes = actual;
            }
            catch (KvmOcException e) { observer.Verbose($"Guest '{g.Name}': no balloon reading ({e.Message})."); }
            finally { gate.Release(); }
        })).ConfigureAwait(false);
    }

    /// <summary>The device's IOPS capacity as given (Get-OvercommitReport -DeviceIopsCapacity), or null.</summary>
    public double? DeviceIopsCapacity { get; set; }

    /// <summary>Measure the capacity with the fio probe in this folder (Measure-DeviceIopsCapacity) when none is given.</summary>
    public DeviceIopsCapacityOptions? MeasureCapacity { get; set; }

    /// <summary>Read the guests' IOPS limits over QMP (query-block); false skips it.</summary>
    public bool ReadIopsLimits { get; set; } = true;

    async Task GatherIopsBudgetAsync(OvercommitInputs inputs, IReadOnlyList<KvmGuest> guests, IOperationObserver observer, CancellationToken ct)
    {
        if (DeviceIopsCapacity is { } given) { inputs.DeviceIopsCapacity = given; inputs.DeviceIopsCapacitySource = "given"; }
        else if (MeasureCapacity is { } probe)
        {
            var measured = await DeviceIopsCapacityProbe.MeasureAsync(probe, observer, ct).ConfigureAwait(false);
            inputs.DeviceIopsCapacity = measured.Iops;
            inputs.DeviceIopsCapacitySource = $"measured (fio on {measured.Path}{(measured.Device is null ? "" : ", device " + measured.Device)})";
        }
        if (!ReadIopsLimits) return;
        var limits = new List<KvmGuestIoLimit>();
        var limited = 0;
        foreach (var g in guests.Where(g => g.QmpSocket is not null))
        {
            try
            {
                var drives = await KvmGuestIoLimits.GetAsync(g, null, ct).ConfigureAwait(false);
                if (drives.Count > 0 && drives.All(d => IopsLimitOf(d) > 0)) limited++;
                limits.AddRange(drives);
            }
            catch (KvmOcException e) { observer.Verbose($"IOPS limits of guest '{g.Name}' unknown: {e.Message}"); }
        }
        inputs.GuestsWithIopsLimit = limited;
        inputs.IopsLimitSum = SumIopsLimits(limits);
    }

    /// <summary>A drive's IOPS limit: the total, else read + write when both are set; 0 when it is not fully limited.</summary>
    public static long IopsLimitOf(KvmGuestIoLimit d) => d.Iops > 0 ? d.Iops : d.IopsRead > 0 && d.IopsWrite > 0 ? d.IopsRead + d.IopsWrite : 0;

    /// <summary>The sum of the drives' IOPS limits, each throttle group once (its members share one limit); null when no drive has one.</summary>
    public static long? SumIopsLimits(IEnumerable<KvmGuestIoLimit> drives)
    {
        var byGroup = new Dictionary<string, long>(StringComparer.Ordinal);
        long sum = 0;
        bool any = false;
        foreach (var d in drives)
        {
            long l = IopsLimitOf(d);
            if (l <= 0) continue;
            any = true;
            if (string.IsNullOrEmpty(d.Group)) { sum += l; continue; }
            byGroup[d.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) + "/" + d.Group] = l; // groups live inside one QEMU process
        }
        return any ? sum + byGroup.Values.Sum() : null;
    }

    /// <summary>Gathers and computes.</summary>
    public async Task<OvercommitReport> BuildAsync(double headroomPercent, double iopsSeconds, bool probeDisks, IOperationObserver observer, CancellationToken ct)
    {
        if (!(headroomPercent is >= 0 and < 100))
            throw new KvmOcException(ErrorKind.InvalidArgument, "InvalidHeadroom", $"-HeadroomPercent must be from 0 to below 100 (got {headroomPercent}).", headroomPercent);
        if (!(iopsSeconds is >= 0 and <= 3600))
            throw new KvmOcException(ErrorKind.InvalidArgument, "InvalidInterval", $"-IopsSampleSeconds must be from 0 to 3600 (got {iopsSeconds}).", iopsSeconds);
        var inputs = await GatherAsync(headroomPercent, iopsSeconds, probeDisks, observer, ct).ConfigureAwait(false);
        var report = OvercommitCalculator.Compute(inputs);
        foreach (var w in report.Warnings) observer.Warning(w);
        return report;
    }
}
