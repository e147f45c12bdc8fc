namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// One QEMU guest on this host: what Start-KvmGuest returns and Get-KvmGuest lists. Plain data (survives remoting and
/// ConvertTo-Json); Name and Id bind by property name into Stop-KvmGuest and the other guest cmdlets.
/// </summary>
public sealed class KvmGuest
{
    /// <summary>The guest name (QEMU's -name guest=…).</summary>
    public string Name { get; set; } = "";

    /// <summary>The QEMU process id.</summary>
    public int Id { get; set; }

    /// <summary>Guest RAM in MiB (QEMU's -m).</summary>
    public long MemoryMB { get; set; }

    /// <summary>Number of vCPUs (QEMU's -smp).</summary>
    public int CpuCount { get; set; }

    /// <summary>Disk image files attached to the guest.</summary>
    public string[] Disks { get; set; } = Array.Empty<string>();

    /// <summary>VNC display number (port 5900 + display), or null without VNC.</summary>
    public int? VncDisplay { get; set; }

    /// <summary>The QMP unix socket, when the guest has one.</summary>
    public string? QmpSocket { get; set; }

    /// <summary>kvm or tcg.</summary>
    public string? Accelerator { get; set; }

    /// <summary>When the QEMU process started (UTC).</summary>
    public DateTimeOffset? StartTime { get; set; }

    /// <summary>The guest's run directory (QMP socket, pid file, serial log, command line), when it has one.</summary>
    public string? RunDirectory { get; set; }

    /// <summary>QMP's run state (running, paused, shutdown, …), or null when QMP is not reachable.</summary>
    public string? State { get; set; }

    /// <summary>The serial console log, when the guest was started by Start-KvmGuest.</summary>
    public string? SerialLog { get; set; }

    /// <summary>Time since the QEMU process started.</summary>
    public TimeSpan? Uptime { get; set; }

    /// <summary>Resident memory of the QEMU process in bytes.</summary>
    public long? RssBytes { get; set; }

    /// <summary>Swapped-out memory of the QEMU process in bytes.</summary>
    public long? SwapBytes { get; set; }

    /// <summary>CPU time the QEMU process used (user + system).</summary>
    public TimeSpan? CpuTime { get; set; }

    /// <summary>Pages of this guest that KSM has merged (/proc/&lt;pid&gt;/ksm_stat or ksm_merging_pages).</summary>
    public long? KsmMergingPages { get; set; }

    /// <summary>KSM's profit for this process in bytes (/proc/&lt;pid&gt;/ksm_stat ksm_process_profit).</summary>
    public long? KsmProfitBytes { get; set; }

    /// <summary>The guest's IP address, when known (e.g. from a dnsmasq lease).</summary>
    public string? IPAddress { get; set; }

    /// <summary>The guest's first NIC MAC address, when known.</summary>
    public string? MacAddress { get; set; }

    // Memory beyond KSM (issue 14), from the command line (also for guests started by hand).

    /// <summary>False when KSM may not merge this guest's RAM (<c>-machine mem-merge=off</c>); QEMU's default is true.</summary>
    public bool MemoryMerge { get; set; } = true;

    /// <summary>The balloon's free page reporting (<c>free-page-reporting=on</c>); null without a balloon device.</summary>
    public bool? FreePageReporting { get; set; }

    /// <summary>The balloon's <c>deflate-on-oom</c>; null without a balloon device.</summary>
    public bool? DeflateOnOom { get; set; }
}
