using System.Diagnostics;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.GuestOps;

/// <summary>
/// A QEMU started by hand, the way an admin (or the blog's loop) would: -daemonize with a pid file, QMP on a unix
/// socket. No guest OS. Killed (by its pid) and its folder removed on Dispose.
/// </summary>
public sealed class HandStartedQemu : IDisposable
{
    readonly TempDir _dir;

    public HandStartedQemu(string qemu, params string[] args)
    {
        _dir = new TempDir("kvmoc-hand");
        QmpSocket = _dir.File("q.sock");
        var pidFile = _dir.File("qemu.pid");
        var psi = new ProcessStartInfo(qemu) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a.Replace("{dir}", _dir.Path, StringComparison.Ordinal));
        foreach (var a in new[] { "-display", "none", "-nodefaults", "-qmp", $"unix:{QmpSocket},server=on,wait=off", "-daemonize", "-pidfile", pidFile })
            psi.ArgumentList.Add(a);
        CommandLine = psi.ArgumentList.Prepend(qemu).ToArray();
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0 || !File.Exists(pidFile))
        {
            _dir.Dispose();
            throw new InvalidOperationException($"QEMU did not start (exit {p.ExitCode}): {err}");
        }
        Pid = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    public int Pid { get; }
    public string QmpSocket { get; }
    public string Folder => _dir.Path;
    public string[] CommandLine { get; }

    public void Dispose()
    {
        try
        {
            using var p = Process.GetProcessById(Pid);
            p.Kill();
            // Not our child (-daemonize): wait until /proc no longer shows it.
            var sw = Stopwatch.StartNew();
            while (Directory.Exists($"/proc/{Pid}") && sw.ElapsedMilliseconds < 5000) Thread.Sleep(20);
        }
        catch (ArgumentException) { /* already gone */ }
        catch (InvalidOperationException) { }
        _dir.Dispose();
    }
}
