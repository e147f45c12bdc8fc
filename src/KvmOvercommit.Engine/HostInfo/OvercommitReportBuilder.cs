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
            var sampler = new DeviceIopsSampler(_roots);
            double total = 0;
            await foreach (var row in sampler.SampleAsync(new DeviceIopsOptions { Interval = TimeSpan.FromSeconds(iopsSeconds), Count = 1 }, observer, ct).ConfigureAwait(false))
                total += row.Iops;
            inputs.CurrentIops = Math.Round(total, 2);
        }
        return inputs;
    }

    /// <summary>Gathers and computes.</summary>
    public async Task<OvercommitReport> BuildAsync(double headroomPercent, double iopsSeconds, bool probeDisks, IOperationObserver observer, CancellationToken ct)
    {
        if (!(headroomPercent is >= 0 and < 100))
            throw new KvmOcException(ErrorKind.InvalidArgument, "InvalidHeadroom", $"-HeadroomPercent must be from 0 to below 100 (got {headroomPercent}).", headroomPercent);
        if (!(iopsSeconds is >= 0 and <= 3600))
            throw new KvmOcException(ErrorKind.InvalidArgument, "InvalidInterval", $"-IopsSampleSeconds must be from 0 to 3600 (got {iopsSeconds}).", iopsSeconds);
        var inputs = await GatherAsync(headroomPercent, iopsSeconds, probeDisks, observer, ct).ConfigureAwait(false);
        return OvercommitCalculator.Compute(inputs);
    }
}
