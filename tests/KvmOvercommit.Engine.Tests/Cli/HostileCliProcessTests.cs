using System.Diagnostics;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Cli;

/// <summary>
/// kvmoc as a process (issue 12, findings 8, 9 and 18): a streaming command whose standard output is a pipe that the
/// reader closes (`| head`) exits within 5 s with 141 (the autotuner through its normal exit, leaving KSM at a low
/// rate); SIGTERM exits 143, SIGINT 130, and a second signal never prints a .NET stack trace. HostSerial: the
/// autotuner changes KSM (restored by KsmSettingsGuard).
/// </summary>
[Collection(HostSerialCollection.Name)]
public sealed class HostileCliProcessTests
{
    static Process Start(params string[] args)
    {
        Prereq.Require(File.Exists(KsmWorkloads.KvmocDll), "kvmoc.dll next to the tests");
        return KsmWorkloads.StartKvmoc(args);
    }

    static async Task<List<string>> ReadLines(Process p, int n, TimeSpan within)
    {
        var lines = new List<string>();
        using var cts = new CancellationTokenSource(within);
        while (lines.Count < n)
        {
            var line = await p.StandardOutput.ReadLineAsync(cts.Token);
            if (line is null) break;
            lines.Add(line);
        }
        return lines;
    }

    /// <summary>Reads a few lines, closes the pipe, and requires the process to exit within 5 s with 141.</summary>
    static async Task<string> ClosePipeAndWait(Process p, int lines)
    {
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            var got = await ReadLines(p, lines, TimeSpan.FromSeconds(60));
            Assert.True(got.Count == lines, $"only {got.Count} lines before the output ended: {string.Join("\n", got)}\n{(p.HasExited ? await stderr : "")}");
            var closed = Stopwatch.StartNew();
            p.StandardOutput.Close(); // the reader goes away, as `head` does
            Assert.True(p.WaitForExit(5_000), "kvmoc kept running 5 s after its standard output was closed");
            Assert.True(closed.Elapsed < TimeSpan.FromSeconds(5));
        }
        finally
        {
            if (!p.HasExited) { p.Kill(); p.WaitForExit(10_000); }
        }
        var err = await stderr;
        Assert.True(p.ExitCode == 141, $"exit {p.ExitCode}: {err}");
        Assert.DoesNotContain("Unhandled exception", err);
        Assert.DoesNotContain("Unexpected", err);
        return err;
    }

    [SkippableFact]
    public async Task Ksm_watch_exits_when_its_pipe_closes()
    {
        Prereq.RequireKsm();
        using var p = Start("ksm", "watch", "--interval-seconds", "0.2");
        await ClosePipeAndWait(p, 3);
    }

    [SkippableFact]
    public async Task Iops_continuous_json_exits_when_its_pipe_closes()
    {
        using var p = Start("iops", "--continuous", "--json", "--interval-seconds", "0.2");
        await ClosePipeAndWait(p, 3);
    }

    [SkippableFact]
    public async Task Ksm_autotune_exits_when_its_pipe_closes_and_leaves_a_low_rate()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        using var guard = new KsmSettingsGuard();
        // Start from a burst-like rate: the tuner must not leave anything faster than the kernel default behind.
        new KsmTuner().Set(new KsmTuning { PagesToScan = 5000, SleepMilliseconds = 20, AdvisorMode = KsmStatReader.Read().AdvisorMode is null ? null : "none" });
        using var p = Start("ksm", "autotune", "--json");
        await ClosePipeAndWait(p, 1);
        var s = KsmStatReader.Read();
        Assert.Equal(KsmRunState.Merging, s.Run);
        Assert.True(s.PagesToScan * 20 <= 100 * s.SleepMilliseconds, $"left at {s.PagesToScan} pages / {s.SleepMilliseconds} ms");
    }

    /// <summary>Sends <paramref name="signal"/> <paramref name="times"/> times, back to back, once the command runs.</summary>
    static async Task<(int Code, string Err)> Signal(Process p, int signal, int times)
    {
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadLineAsync();
        try
        {
            Assert.True(await Task.WhenAny(stdout, Task.Delay(60_000)) == stdout && stdout.Result is not null, "no first line");
            _ = p.StandardOutput.ReadToEndAsync();
            for (int i = 0; i < times; i++) Assert.Equal(0, GuestLauncher.kill(p.Id, signal));
            Assert.True(p.WaitForExit(20_000), "kvmoc did not exit on the signal");
        }
        finally
        {
            if (!p.HasExited) { p.Kill(); p.WaitForExit(10_000); }
        }
        var err = await stderr;
        Assert.DoesNotContain("Unhandled exception", err);
        Assert.DoesNotContain("   at ", err);
        Assert.DoesNotContain("Unexpected", err);
        return (p.ExitCode, err);
    }

    [SkippableFact]
    public async Task Ksm_watch_exits_143_on_SIGTERM_also_when_sent_twice()
    {
        Prereq.RequireKsm();
        using (var once = Start("ksm", "watch", "--interval-seconds", "0.3"))
            Assert.Equal(143, (await Signal(once, 15, 1)).Code);
        using var twice = Start("ksm", "watch", "--interval-seconds", "0.3");
        Assert.Equal(143, (await Signal(twice, 15, 2)).Code);
    }

    [SkippableFact]
    public async Task Ksm_watch_exits_130_on_SIGINT()
    {
        Prereq.RequireKsm();
        using var p = Start("ksm", "watch", "--interval-seconds", "0.3");
        Assert.Equal(130, (await Signal(p, 2, 1)).Code);
    }

    [SkippableFact]
    public async Task Ksm_autotune_ends_normally_on_two_SIGTERMs_and_leaves_a_low_rate()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        using var guard = new KsmSettingsGuard();
        using var p = Start("ksm", "autotune", "--json");
        var (code, err) = await Signal(p, 15, 2);
        // The autotuner's documented end on SIGTERM (systemctl stop): its summary, exit 0.
        Assert.True(code == 0, $"exit {code}: {err}");
        var s = KsmStatReader.Read();
        Assert.True(s.PagesToScan * 20 <= 100 * s.SleepMilliseconds, $"left at {s.PagesToScan} pages / {s.SleepMilliseconds} ms");
    }
}
