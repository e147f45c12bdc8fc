using System.Diagnostics;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.AutoTune;

/// <summary>
/// The shipped systemd unit (src/KvmOvercommit.Cli/systemd/kvmoc-autotune.service, copied next to kvmoc): what it runs,
/// that it replaces ksmtuned, and that `systemd-analyze verify` accepts it without a single complaint.
/// </summary>
public class KsmAutoTuneServiceUnitTests
{
    static readonly string UnitPath = Path.Combine(AppContext.BaseDirectory, "systemd", "kvmoc-autotune.service");

    static Dictionary<string, List<string>> Keys(string section)
    {
        var keys = new Dictionary<string, List<string>>();
        string? current = null;
        foreach (var raw in File.ReadAllLines(UnitPath))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] is '#' or ';') continue;
            if (line.StartsWith('[')) { current = line.Trim('[', ']'); continue; }
            int eq = line.IndexOf('=');
            if (current != section || eq <= 0) continue;
            var key = line[..eq];
            if (!keys.TryGetValue(key, out var values)) keys[key] = values = new List<string>();
            values.Add(line[(eq + 1)..]);
        }
        return keys;
    }

    [Fact]
    public void Unit_runs_kvmoc_autotune_quietly_in_place_of_ksmtuned_and_restarts_on_failure()
    {
        Assert.True(File.Exists(UnitPath), $"{UnitPath} is not in the build output");
        var unit = Keys("Unit");
        var service = Keys("Service");
        Assert.Equal(new[] { "/opt/kvmoc/kvmoc ksm autotune --quiet" }, service["ExecStart"]);
        Assert.Contains("ksmtuned.service", unit["Conflicts"].SelectMany(v => v.Split(' ')));
        Assert.Equal(new[] { "on-failure" }, service["Restart"]);
        Assert.Equal(new[] { "SIGTERM" }, service["KillSignal"]); // kvmoc restores the low rate on SIGTERM
        Assert.Equal(new[] { "multi-user.target" }, Keys("Install")["WantedBy"]);
    }

    [SkippableFact]
    public void Systemd_analyze_verify_accepts_the_unit()
    {
        var analyze = Prereq.RequireTool("systemd-analyze");
        using var dir = new TempDir();
        // verify checks that ExecStart's program exists: point it at the kvmoc built next to the tests.
        var kvmoc = Path.Combine(AppContext.BaseDirectory, "kvmoc");
        Prereq.Require(File.Exists(kvmoc), "the kvmoc apphost next to the tests");
        var copy = Path.Combine(dir.Path, "kvmoc-autotune.service");
        File.WriteAllText(copy, File.ReadAllText(UnitPath).Replace("/opt/kvmoc/kvmoc", kvmoc));

        var (rc, output) = Run(analyze, "verify", copy);
        Assert.True(rc == 0 && output.Trim().Length == 0, $"systemd-analyze verify: exit {rc}\n{output}");

        // The check has teeth: a misspelt key and a bad value are reported.
        File.WriteAllText(copy, File.ReadAllText(copy).Replace("Restart=on-failure", "Restart=sometimes\nRestrat=always"));
        var (_, bad) = Run(analyze, "verify", copy);
        Assert.Contains("Restrat", bad);
        Assert.Contains("sometimes", bad);
    }

    static (int Rc, string Output) Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(60_000), "systemd-analyze did not finish");
        return (p.ExitCode, output + err.Result);
    }
}
