using System.Management.Automation;
using KvmOvercommit.Engine.Io;

namespace KvmOvercommit.Commands;

/// <summary>Measures how many IOPS the device under a folder sustains, with a short fio random read/write probe.</summary>
/// <remarks>
/// Runs fio (random 4 KiB reads and writes, 50% each, O_DIRECT through libaio, 32 in flight) for -DurationSeconds on a
/// temporary file (-FileSizeMB) in -Path, the folder that holds the overlays, and removes the file afterwards, also on
/// failure and Ctrl+C. Iops (reads + writes per second) is the capacity Get-OvercommitReport -DeviceIopsCapacity takes;
/// the object binds to it by property name. The probe loads the device while it runs: guests on it see slower disks
/// for that time. Needs fio (apt-get install fio) and a file system that allows O_DIRECT (not tmpfs).
/// </remarks>
/// <example>
/// <code>Measure-DeviceIopsCapacity -Path /var/lib/libvirt/images</code>
/// <para>What the disk under the overlays sustains.</para>
/// </example>
/// <example>
/// <code>Measure-DeviceIopsCapacity /srv/overlays -DurationSeconds 10 | Get-OvercommitReport</code>
/// <para>The overcommit report with its IOPS budget against the measured capacity.</para>
/// </example>
[Cmdlet(VerbsDiagnostic.Measure, "DeviceIopsCapacity")]
[OutputType(typeof(DeviceIopsCapacity))]
public sealed class MeasureDeviceIopsCapacityCommand : KvmCmdlet
{
    /// <summary>The folder for the probe file (the overlays' folder); default the current location.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = ".";

    /// <summary>How long fio runs, in seconds (default 5).</summary>
    [Parameter]
    [ValidateRange(1, 3600)]
    public int DurationSeconds { get; set; } = 5;

    /// <summary>The probe file's size in MiB (default 256).</summary>
    [Parameter]
    [ValidateRange(1, 1048576)]
    public long FileSizeMB { get; set; } = 256;

    /// <summary>Percent of the operations that are reads (default 50).</summary>
    [Parameter]
    [ValidateRange(0, 100)]
    public int ReadPercent { get; set; } = 50;

    /// <summary>The block size in bytes (default 4096).</summary>
    [Parameter]
    [ValidateRange(512, 16777216)]
    public int BlockSizeBytes { get; set; } = 4096;

    /// <summary>Requests in flight (default 32).</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int IoDepth { get; set; } = 32;

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        var options = new DeviceIopsCapacityOptions
        {
            Path = ResolvePath(Path), Duration = TimeSpan.FromSeconds(DurationSeconds), FileSizeBytes = FileSizeMB * Engine.Units.MiB,
            ReadPercent = ReadPercent, BlockSizeBytes = BlockSizeBytes, IoDepth = IoDepth,
        };
        InvokeAsync(async (observer, emit, ct) => emit(await DeviceIopsCapacityProbe.MeasureAsync(options, observer, ct).ConfigureAwait(false)));
    }
}
