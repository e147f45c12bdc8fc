using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using KvmOvercommit.Engine.Tests.Guests;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Native;

/// <summary>
/// kvmoc as users get it from `./build.sh publish`: one executable compiled ahead of time (Native AOT), where the
/// trimmer drops whatever nothing names and there is no reflection-based JSON. Each test runs the same command lines
/// through that executable and through the JIT build in-process (Program.Run), and requires the same exit code and
/// the same stdout and stderr byte for byte (or, where the figures move between two runs — KSM counters, free
/// memory — the same JSON shape). The executable is $KVMOC_NATIVE (build.sh sets it) or out/kvmoc/kvmoc.
/// HostSerial: `ksm set --what-if` reads KSM settings that other host tests change.
/// </summary>
[Collection(HostSerialCollection.Name)]
public class NativeKvmocTests
{
    static string NativePath()
    {
        var env = Environment.GetEnvironmentVariable("KVMOC_NATIVE");
        var path = string.IsNullOrEmpty(env) ? Path.Combine(Fixture.RepoRoot(), "out", "kvmoc", "kvmoc") : env;
        Prereq.Require(File.Exists(path), $"kvmoc compiled ahead of time at {path} (./build.sh publish)");
        return path;
    }

    static (int Code, string Out, string Err) RunNative(params string[] args)
    {
        var psi = new ProcessStartInfo(NativePath()) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException("kvmoc " + string.Join(' ', args)); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>The same exit code, stdout and stderr from the native executable and from the JIT build.</summary>
    static (int Code, string Out, string Err) Same(params string[] args)
    {
        var jit = Kvmoc.Run(args);
        // In-process, the executable's name in the usage lines is the test host's.
        jit = (jit.Code, jit.Out.Replace("  testhost ", "  kvmoc "), jit.Err.Replace("  testhost ", "  kvmoc "));
        var native = RunNative(args);
        var what = "kvmoc " + string.Join(' ', args);
        Assert.True(jit.Code == native.Code, $"{what}: exit code {native.Code} native, {jit.Code} JIT\nnative stderr: {native.Err}\nJIT stderr: {jit.Err}");
        Assert.True(jit.Out == native.Out, $"{what}: stdout differs\n--- native\n{native.Out}\n--- JIT\n{jit.Out}");
        Assert.True(jit.Err == native.Err, $"{what}: stderr differs\n--- native\n{native.Err}\n--- JIT\n{jit.Err}");
        return native;
    }

    /// <summary>The same exit code and the same JSON shape (property names and value kinds, recursively).</summary>
    static JsonElement SameShape(params string[] args)
    {
        var jit = Kvmoc.Run(args);
        var native = RunNative(args);
        var what = "kvmoc " + string.Join(' ', args);
        Assert.True(jit.Code == 0 && native.Code == 0, $"{what}: exit codes {native.Code} native, {jit.Code} JIT\n{native.Err}\n{jit.Err}");
        var n = JsonDocument.Parse(native.Out).RootElement;
        Assert.Equal(Shape(JsonDocument.Parse(jit.Out).RootElement), Shape(n));
        return n;
    }

    static string Shape(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "{" + string.Join(",", e.EnumerateObject().Select(p => p.Name + ":" + Shape(p.Value))) + "}",
        JsonValueKind.Array => "[" + (e.GetArrayLength() > 0 ? Shape(e[0]) : "") + "]",
        JsonValueKind.True or JsonValueKind.False => "bool",
        JsonValueKind.Null => "null",
        _ => e.ValueKind.ToString(),
    };

    static IEnumerable<string[]> CommandPaths(Command c, string[] prefix)
    {
        foreach (var sub in c.Subcommands)
        {
            var path = prefix.Append(sub.Name).ToArray();
            yield return path;
            foreach (var deeper in CommandPaths(sub, path)) yield return deeper;
        }
    }

    [SkippableFact]
    public void IsANativeExecutableWithoutTheRuntimeBesideIt()
    {
        var path = NativePath();
        var head = new byte[4];
        using (var f = File.OpenRead(path)) f.ReadExactly(head);
        Assert.Equal(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }, head);
        var dir = Path.GetDirectoryName(path)!;
        Assert.False(File.Exists(Path.Combine(dir, "kvmoc.dll")), "a JIT kvmoc.dll beside the native executable");
        Assert.False(File.Exists(Path.Combine(dir, "libcoreclr.so")), "the CoreCLR runtime beside the native executable");
        Assert.True(File.Exists(Path.Combine(dir, "systemd", "kvmoc-autotune.service")), "the systemd unit beside kvmoc");
    }

    /// <summary>Every command survived trimming: its help is the JIT build's, for the whole command tree.</summary>
    [SkippableFact]
    public void VersionAndTheHelpOfEveryCommandAreTheJitBuildsOwn()
    {
        // --version is the entry assembly's: in-process that is the test host, so compare with kvmoc's own.
        var version = RunNative("--version");
        Assert.Equal(0, version.Code);
        Assert.Equal(typeof(KvmOvercommit.Cli.Program).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .Cast<System.Reflection.AssemblyInformationalVersionAttribute>().Single().InformationalVersion, version.Out.Trim());
        Same("--help");
        var paths = CommandPaths(KvmOvercommit.Cli.Program.BuildRoot(TextWriter.Null, TextWriter.Null), Array.Empty<string>()).ToList();
        Assert.True(paths.Count >= 20, $"only {paths.Count} commands");
        foreach (var p in paths) Same(p.Append("--help").ToArray());
        var unknown = Same("no-such-command");
        Assert.NotEqual(0, unknown.Code);
    }

    [SkippableFact]
    public void QcowOverlaysInfoTablesAndErrorsAreTheJitBuildsOwn()
    {
        var qemuImg = Prereq.RequireTool("qemu-img");
        using var d = new TempDir("kvmoc native, qcow ü");
        var raw = d.File("base raw.img");
        using (var f = File.Create(raw)) f.SetLength(1 << 30);
        var q2 = d.File("base, q2.qcow2");
        Run(qemuImg, "create", "-q", "-f", "qcow2", q2, "20G");

        // native creates; both read back; the bytes are qemu-img's own
        var names = Enumerable.Range(1, 5).Select(i => d.File($"guest-{i}.qcow2")).ToArray();
        var made = RunNative(new[] { "qcow", "overlay", "--backing-path", q2, "--json" }.Concat(names).ToArray());
        Assert.True(made.Code == 0, made.Err);
        Assert.Equal(5, JsonDocument.Parse(made.Out).RootElement.GetArrayLength());
        var byQemu = d.File("by-qemu.qcow2");
        Run(qemuImg, "create", "-q", "-f", "qcow2", "-b", q2, "-F", "qcow2", byQemu);
        Assert.Equal(File.ReadAllBytes(byQemu), File.ReadAllBytes(names[0]));
        var fromRaw = RunNative("qcow", "overlay", "--backing-path", raw, "--relative-backing-path", d.File("on-raw.qcow2"));
        Assert.True(fromRaw.Code == 0, fromRaw.Err);

        Same(new[] { "qcow", "info", "--json" }.Concat(names).ToArray());
        Same(new[] { "qcow", "info" }.Concat(names).Append(raw).Append(d.File("on-raw.qcow2")).ToArray());
        Same("qcow", "info", d.File("on-raw.qcow2"));
        Same("qcow", "info", "--json", d.File("guest-*.qcow2"));
        Same("qcow", "overlay", "--backing-path", q2, "--what-if", d.File("not-made.qcow2"));
        Assert.False(File.Exists(d.File("not-made.qcow2")));

        // errors: the same ids, messages, hints and exit codes
        var exists = Same("qcow", "overlay", "--backing-path", q2, names[0]);
        Assert.Equal(5, exists.Code);
        Assert.Equal(3, Same("qcow", "overlay", "--backing-path", d.File("missing.qcow2"), d.File("x.qcow2")).Code);
        Assert.Equal(2, Same("qcow", "overlay", "--backing-path", names[1], names[1], "--force").Code);
        File.WriteAllBytes(d.File("corrupt.qcow2"), File.ReadAllBytes(names[2]).AsSpan(0, 40).ToArray());
        Assert.Equal(7, Same("qcow", "info", d.File("corrupt.qcow2")).Code);
    }

    [SkippableFact]
    public void KsmHostGuestAndReportJsonHaveTheJitBuildsShape()
    {
        Prereq.RequireKsm();
        var ksm = SameShape("ksm", "stat", "--json");
        Assert.True(ksm.GetProperty("PagesToScan").GetInt64() > 0);
        SameShape("host", "memory", "--json");
        SameShape("host", "cpu", "--json");
        SameShape("report", "--json", "--skip-disk-images", "--iops-sample-seconds", "0");
        Same("guest", "list", "--json", "no-such-guest-" + Guid.NewGuid().ToString("N"));
        Same("ksm", "tune", "--pages-to-scan", "20000", "--sleep-milliseconds", "20", "--what-if");
        Assert.Equal(2, Same("ksm", "tune", "--pages-to-scan", "-5").Code);
        Same("leases", "--path", Fixture.PathOf("fleet/dnsmasq.leases"), "--path", Fixture.PathOf("fleet/virbr0.status"), "--json");
        Same("leases", "--path", Fixture.PathOf("fleet/dnsmasq.leases"));
        Same("inventory", "--path", Fixture.PathOf("fleet/dnsmasq.leases"));
        var plan = SameShape("experiment", "--what-if", "--json", "--guest-count", "2", "--duration", "10");
        Assert.Equal(2, plan.GetProperty("Overlays").GetArrayLength());
    }

    /// <summary>A real guest through the native executable: QEMU started, QMP spoken (balloon, powerdown), stopped.</summary>
    [SkippableFact]
    public async Task StartsBalloonsAndStopsATinyGuest()
    {
        NativePath();
        using var f = await GuestFixture.CreateAsync();
        var name = f.Name("native");
        var start = RunNative("guest", "start", "--tiny", "--name", name, "--memory-mb", "128", "--accelerator", "Tcg", "--network", "None", "--no-vnc",
            "--run-directory", f.RunRoot, "--json");
        Assert.True(start.Code == 0, start.Err);
        var started = JsonDocument.Parse(start.Out).RootElement;
        var g = JsonSerializer.Deserialize(started.ValueKind == JsonValueKind.Array ? started[0].GetRawText() : started.GetRawText(), OutputJson.Default.KvmGuest)!;
        Assert.Equal("running", g.State);
        await GuestFixture.WaitForSerialAsync(g, Qemu.TinyGuestInit.ReadyMarker);

        var listed = JsonDocument.Parse(RunNative("guest", "list", "--json", name).Out).RootElement;
        Assert.Equal(g.Id, listed.GetProperty("Id").GetInt32());
        Assert.Equal("running", listed.GetProperty("State").GetString());
        var balloon = RunNative("guest", "memory", name, "--target-mb", "64", "--wait", "--timeout-seconds", "60", "--json");
        Assert.True(balloon.Code == 0, balloon.Err);
        Assert.InRange(JsonDocument.Parse(balloon.Out).RootElement.GetProperty("ActualMB").GetDouble(), 63, 65);

        var stop = RunNative("guest", "stop", name, "--run-directory", f.RunRoot, "--timeout-seconds", "30", "--json");
        Assert.True(stop.Code == 0, stop.Err);
        Assert.Equal("stopped", JsonDocument.Parse(stop.Out).RootElement.GetProperty("State").GetString());
        Assert.Empty(f.Running());
    }

    /// <summary>
    /// The main job through the native executable: two tiny guests on overlays of a base, the aggressive profile and
    /// the adaptive tuner on the real KSM, the report (JSON from generated metadata, CSV, SVG), and the cleanup.
    /// </summary>
    [SkippableFact]
    public async Task RunsTheExperimentAndLeavesTheHostAsItWas()
    {
        NativePath();
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        using var f = await GuestFixture.CreateAsync();
        using var guard = new KvmOvercommit.Engine.Ksm.KsmSettingsGuard();
        var before = KvmOvercommit.Engine.Ksm.KsmTuning.FromStat(KvmOvercommit.Engine.Ksm.KsmStatReader.Read());
        var baseImage = f.CreateDisk(f.Dir.File("base.qcow2"), size: "8M");
        var baseHash = QcowTestHash(baseImage);
        var work = f.Dir.File("work");
        var report = f.Dir.File("report");
        var run = RunNative("experiment", "--base-image", baseImage, "--tiny-guest", "--guest-count", "2", "--memory-mb", "128", "--fill-mib", "32",
            "--ksm-profile", "Aggressive,Adaptive", "--duration", "8", "--interval-seconds", "1", "--accelerator", "Tcg",
            "--work-directory", work, "--run-directory", f.RunRoot, "--report-path", report, "--json");
        Assert.True(run.Code == 0, run.Err);
        var result = JsonSerializer.Deserialize(run.Out, OutputJson.Default.ExperimentResult)!;
        Assert.Equal(new[] { KvmOvercommit.Engine.Experiment.ExperimentProfile.Aggressive, KvmOvercommit.Engine.Experiment.ExperimentProfile.Adaptive }, result.Profiles.Select(p => p.Profile));
        Assert.All(result.Profiles, p => Assert.True(p.SavedBytes > 16L * 1024 * 1024, $"{p.Profile}: saved {p.SavedMiB} MiB"));
        Assert.NotNull(result.Profiles[1].TunerDecisions);
        Assert.Empty(result.CleanupProblems);
        var fromFile = JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(report, KvmOvercommit.Engine.Experiment.ExperimentReportWriter.JsonFile)), OutputJson.Default.ExperimentResult)!;
        Assert.Equal(result.Profiles.Select(p => p.SavedBytes), fromFile.Profiles.Select(p => p.SavedBytes));
        Assert.True(File.Exists(Path.Combine(report, KvmOvercommit.Engine.Experiment.ExperimentReportWriter.CsvFile)));
        Assert.True(File.Exists(Path.Combine(report, KvmOvercommit.Engine.Experiment.ExperimentReportWriter.SvgFile)));

        Assert.Empty(f.Running());
        Assert.Empty(new Qemu.QemuProcessScanner().Scan().Where(g => g.Disks.Any(d => d.StartsWith(work, StringComparison.Ordinal))));
        Assert.False(Directory.Exists(work), "the work directory is left");
        Assert.Equal(baseHash, QcowTestHash(baseImage));
        Assert.Empty(KvmOvercommit.Engine.Ksm.KsmTuning.FromStat(KvmOvercommit.Engine.Ksm.KsmStatReader.Read()).Differences(before));
    }

    static string QcowTestHash(string path) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)));

    static void Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{exe} {string.Join(' ', args)}: {err}");
    }
}
