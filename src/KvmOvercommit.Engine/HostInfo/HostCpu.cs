using System.Globalization;

namespace KvmOvercommit.Engine.HostInfo;

/// <summary>Host CPUs as /proc/cpuinfo and /proc/loadavg show them, plus the vCPUs of running guests.</summary>
public sealed class HostCpu
{
    /// <summary>The host's name.</summary>
    public string HostName { get; set; } = "";
    /// <summary>Logical CPUs (the "processor" entries; what vCPU ratios are counted against).</summary>
    public int LogicalCpus { get; set; }
    /// <summary>Sockets (distinct physical ids; 1 when cpuinfo has none).</summary>
    public int Sockets { get; set; }
    /// <summary>Physical cores over all sockets (distinct physical id/core id pairs).</summary>
    public int Cores { get; set; }
    /// <summary>Hardware threads per core (LogicalCpus / Cores).</summary>
    public int ThreadsPerCore { get; set; }
    /// <summary>CPU model name.</summary>
    public string? Model { get; set; }
    /// <summary>Vendor (GenuineIntel, AuthenticAMD, …).</summary>
    public string? Vendor { get; set; }
    /// <summary>Average current clock over the logical CPUs, in MHz; null when cpuinfo has no "cpu MHz".</summary>
    public double? Mhz { get; set; }
    /// <summary>The first CPU's feature flags.</summary>
    public string[] Flags { get; set; } = Array.Empty<string>();
    /// <summary>vmx (Intel VT-x) or svm (AMD-V) is in the flags: KVM can use hardware virtualization.</summary>
    public bool VirtualizationSupported { get; set; }
    /// <summary>"vmx", "svm" or null.</summary>
    public string? VirtualizationFlag { get; set; }
    /// <summary>/dev/kvm exists.</summary>
    public bool KvmDeviceExists { get; set; }
    /// <summary>1-minute load average.</summary>
    public double? LoadAverage1 { get; set; }
    /// <summary>5-minute load average.</summary>
    public double? LoadAverage5 { get; set; }
    /// <summary>15-minute load average.</summary>
    public double? LoadAverage15 { get; set; }
    /// <summary>Runnable scheduling entities now (the first half of loadavg's "2/134").</summary>
    public int? RunnableTasks { get; set; }
    /// <summary>Sum of the vCPUs (-smp) of the running QEMU guests.</summary>
    public int GuestVcpus { get; set; }
    /// <summary>Number of running QEMU guests.</summary>
    public int GuestCount { get; set; }
    /// <summary>GuestVcpus : LogicalCpus.</summary>
    public double VcpuRatio => LogicalCpus == 0 ? 0 : Math.Round((double)GuestVcpus / LogicalCpus, 3);
    /// <summary>When it was read (UTC).</summary>
    public DateTimeOffset Timestamp { get; set; }
}

/// <summary>Parsers of /proc/cpuinfo and /proc/loadavg.</summary>
public static class CpuInfoParser
{
    /// <summary>Fills the CPU topology, model and flags from cpuinfo text (x86 layout; other architectures give what they have).</summary>
    public static HostCpu Parse(string cpuinfo)
    {
        var blocks = new List<Dictionary<string, string>>();
        Dictionary<string, string>? cur = null;
        foreach (var line in cpuinfo.Split('\n'))
        {
            if (line.Trim().Length == 0) { cur = null; continue; }
            int colon = line.IndexOf(':');
            if (colon < 0) continue;
            var key = line[..colon].Trim();
            var value = line[(colon + 1)..].Trim();
            if (key == "processor" || cur is null) { cur = new Dictionary<string, string>(StringComparer.Ordinal); blocks.Add(cur); }
            cur[key] = value;
        }
        var cpus = blocks.Where(b => b.ContainsKey("processor") && int.TryParse(b["processor"], out _)).ToList();
        var c = new HostCpu { LogicalCpus = cpus.Count };
        if (cpus.Count == 0) return c;
        var first = cpus[0];
        c.Model = first.GetValueOrDefault("model name") ?? blocks.SelectMany(b => b).FirstOrDefault(kv => kv.Key is "Hardware" or "Model" or "cpu model").Value;
        c.Vendor = first.GetValueOrDefault("vendor_id");
        var flags = first.GetValueOrDefault("flags") ?? first.GetValueOrDefault("Features") ?? "";
        c.Flags = flags.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        c.VirtualizationFlag = c.Flags.Contains("vmx") ? "vmx" : c.Flags.Contains("svm") ? "svm" : null;
        c.VirtualizationSupported = c.VirtualizationFlag is not null;
        var mhz = cpus.Select(b => b.GetValueOrDefault("cpu MHz")).Where(v => v is not null)
            .Select(v => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : (double?)null).Where(v => v is not null).ToList();
        c.Mhz = mhz.Count == 0 ? null : Math.Round(mhz.Average()!.Value, 3);
        var sockets = cpus.Select(b => b.GetValueOrDefault("physical id")).Where(v => v is not null).Distinct().Count();
        c.Sockets = Math.Max(1, sockets);
        if (cpus.All(b => b.ContainsKey("core id")))
            c.Cores = cpus.Select(b => (b.GetValueOrDefault("physical id") ?? "0") + "/" + b["core id"]).Distinct().Count();
        else
            c.Cores = c.LogicalCpus;
        c.ThreadsPerCore = c.Cores == 0 ? 1 : Math.Max(1, c.LogicalCpus / c.Cores);
        return c;
    }

    /// <summary>Parses /proc/loadavg ("1.66 1.81 1.06 2/134 15847") into the CPU object.</summary>
    public static void ApplyLoadAvg(HostCpu c, string? loadavg)
    {
        var f = loadavg?.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (f is null || f.Length < 3) return;
        static double? D(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : null;
        c.LoadAverage1 = D(f[0]);
        c.LoadAverage5 = D(f[1]);
        c.LoadAverage15 = D(f[2]);
        if (f.Length > 3 && f[3].Split('/') is { Length: 2 } rt && int.TryParse(rt[0], out int r)) c.RunnableTasks = r;
    }
}
