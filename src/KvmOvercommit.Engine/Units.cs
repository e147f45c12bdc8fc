namespace KvmOvercommit.Engine;

/// <summary>Size conversions used for the MB/MiB convenience properties. MB here means MiB (2^20 bytes), as QEMU's -m does.</summary>
public static class Units
{
    public const long MiB = 1024L * 1024L;
    public const long GiB = 1024L * MiB;
    public static double ToMiB(long bytes) => Math.Round(bytes / (double)MiB, 2);
    public static double? ToMiB(long? bytes) => bytes is null ? null : ToMiB(bytes.Value);
    public static double ToGiB(long bytes) => Math.Round(bytes / (double)GiB, 3);
}
