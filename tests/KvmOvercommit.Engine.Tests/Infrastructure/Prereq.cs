namespace KvmOvercommit.Engine.Tests.Infrastructure;

/// <summary>
/// Prerequisites of host tests. Outside CI a missing prerequisite skips the test (with the reason); in CI
/// (CI=true) it fails it, so a broken CI machine can never pass by skipping.
/// </summary>
public static class Prereq
{
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static void Require(bool condition, string what)
    {
        if (condition) return;
        if (InCi) throw new Xunit.Sdk.XunitException($"Prerequisite missing in CI: {what}");
        Skip.If(true, $"Prerequisite missing: {what}");
    }

    public static void RequireRoot() => Require(Environment.UserName == "root" || geteuid() == 0, "root (tests write /sys/kernel/mm/ksm)");

    public static void RequireKsm() => Require(File.Exists("/sys/kernel/mm/ksm/run"), "a kernel with KSM (/sys/kernel/mm/ksm)");

    public static string RequireTool(string name)
    {
        var path = Which(name);
        Require(path is not null, $"'{name}' on PATH (apt-get install the package that provides it; .ci/run does)");
        return path!;
    }

    public static string? Which(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':'))
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    [System.Runtime.InteropServices.DllImport("libc")] static extern uint geteuid();
}
