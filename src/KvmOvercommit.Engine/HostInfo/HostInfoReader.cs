using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine.HostInfo;

/// <summary>Get-HostMemory, Get-HostCpu and Get-MdRaid: reads /proc/meminfo, /proc/cpuinfo, /proc/loadavg, /proc/mdstat and KSM, and sums the running guests.</summary>
public sealed class HostInfoReader
{
    readonly HostRoots _roots;
    readonly Func<IReadOnlyList<KvmGuest>> _guests;

    /// <summary>Reads under <paramref name="roots"/>; <paramref name="guests"/> lists running guests (default: QemuProcessScanner over the same roots).</summary>
    public HostInfoReader(HostRoots? roots = null, Func<IReadOnlyList<KvmGuest>>? guests = null)
    {
        _roots = roots ?? HostRoots.Default;
        _guests = guests ?? (() => new QemuProcessScanner(_roots).Scan());
    }

    /// <summary>The running QEMU guests (the scanner's view).</summary>
    public IReadOnlyList<KvmGuest> Guests() => _guests();

    /// <summary>/proc/meminfo, KSM savings and the guests' -m sum.</summary>
    public HostMemory ReadMemory(IReadOnlyList<KvmGuest>? guests = null)
    {
        var path = _roots.ProcFile("meminfo");
        var m = MemInfoParser.ToHostMemory(ReadRequired(path, "MemInfoNotReadable"));
        m.HostName = Environment.MachineName;
        m.Timestamp = DateTimeOffset.UtcNow;
        m.KsmSavedBytes = ReadKsmSaved();
        guests ??= _guests();
        m.GuestCount = guests.Count;
        m.GuestCommittedBytes = guests.Sum(g => g.MemoryMB * Units.MiB);
        return m;
    }

    /// <summary>KSM's saving in bytes, or null when the kernel has no KSM.</summary>
    public long? ReadKsmSaved()
    {
        if (!KsmStatReader.IsAvailable(_roots)) return null;
        try { return KsmStatReader.Read(_roots).SavedBytes; }
        catch (KvmOcException) { return null; }
    }

    /// <summary>/proc/cpuinfo, /proc/loadavg, /dev/kvm and the guests' vCPU sum.</summary>
    public HostCpu ReadCpu(IReadOnlyList<KvmGuest>? guests = null)
    {
        var c = CpuInfoParser.Parse(ReadRequired(_roots.ProcFile("cpuinfo"), "CpuInfoNotReadable"));
        CpuInfoParser.ApplyLoadAvg(c, TryRead(_roots.ProcFile("loadavg")));
        c.HostName = Environment.MachineName;
        c.Timestamp = DateTimeOffset.UtcNow;
        c.KvmDeviceExists = File.Exists(Path.Combine(_roots.Dev, "kvm"));
        guests ??= _guests();
        c.GuestCount = guests.Count;
        c.GuestVcpus = guests.Sum(g => g.CpuCount);
        return c;
    }

    /// <summary>The arrays in /proc/mdstat (or a saved copy at <paramref name="path"/>). No md driver loaded → no arrays.</summary>
    public List<MdRaidArray> ReadMdRaid(string? path = null, IOperationObserver? observer = null)
    {
        if (path is null)
        {
            path = _roots.ProcFile("mdstat");
            if (!File.Exists(path))
            {
                observer?.Verbose($"{path} does not exist: the md driver is not loaded, so there are no software RAID arrays.");
                return new List<MdRaidArray>();
            }
        }
        else
        {
            // A saved copy given with -Path: a folder, FIFO or device is refused before anything opens it.
            FileKind.RequireFile(path, "The mdstat file", directoryId: "MdStatPathIsDirectory", notFileId: "MdStatNotRegularFile");
        }
        return MdStatParser.Parse(ReadRequired(path, "MdStatNotReadable"));
    }

    static string ReadRequired(string path, string errorId)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, errorId, $"Cannot read {path}", path);
        }
    }

    static string? TryRead(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
