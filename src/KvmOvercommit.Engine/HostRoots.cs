namespace KvmOvercommit.Engine;

/// <summary>
/// Where the kernel interfaces live. Real hosts use the defaults; tests point these at fake trees for edge cases
/// (old kernels, odd devices, corrupt files) a real host cannot show.
/// </summary>
public sealed record HostRoots(string Sys = "/sys", string Proc = "/proc", string Dev = "/dev")
{
    public static readonly HostRoots Default = new();

    public string Ksm => Path.Combine(Sys, "kernel", "mm", "ksm");
    public string ProcFile(string name) => Path.Combine(Proc, name);
    public string Pid(int pid, string file) => Path.Combine(Proc, pid.ToString(System.Globalization.CultureInfo.InvariantCulture), file);
}
