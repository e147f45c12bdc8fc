using System.Diagnostics;

namespace KvmOvercommit.Engine.Tests.Infrastructure;

/// <summary>
/// N child processes running `dotnet kvmoc.dll ksm workload` (mergeable memory with a deterministic pattern), ready
/// when constructed; killed in Dispose. kvmoc.dll is next to the test assembly (the test project references the CLI).
/// </summary>
public sealed class KsmWorkloads : IDisposable
{
    readonly List<Process> _processes = new();

    public KsmWorkloads(int count, int sizeMb, int seed = 1, int holdSeconds = 300)
    {
        try
        {
            for (int i = 0; i < count; i++) _processes.Add(Start(sizeMb, seed, holdSeconds));
            foreach (var p in _processes) WaitReady(p);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public IReadOnlyList<int> Ids => _processes.Select(p => p.Id).ToList();

    public static string KvmocDll => Path.Combine(AppContext.BaseDirectory, "kvmoc.dll");

    /// <summary>Starts `dotnet kvmoc.dll args…` with stdout/stderr redirected.</summary>
    public static Process StartKvmoc(IEnumerable<string> args, string? prefixProgram = null, IEnumerable<string>? prefixArgs = null)
    {
        var psi = new ProcessStartInfo(prefixProgram ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (prefixArgs is not null) foreach (var a in prefixArgs) psi.ArgumentList.Add(a);
        if (prefixProgram is not null) psi.ArgumentList.Add(Prereq.Which("dotnet") ?? "/usr/bin/dotnet");
        psi.ArgumentList.Add(KvmocDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        return Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet");
    }

    static Process Start(int sizeMb, int seed, int holdSeconds) =>
        StartKvmoc(new[] { "ksm", "workload", "--size-mb", sizeMb.ToString(), "--seed", seed.ToString(), "--hold-seconds", holdSeconds.ToString() });

    static void WaitReady(Process p)
    {
        var line = Task.Run(() => p.StandardOutput.ReadLine());
        if (!line.Wait(TimeSpan.FromSeconds(60)) || line.Result is null || !line.Result.StartsWith("READY pid=" + p.Id, StringComparison.Ordinal))
            throw new InvalidOperationException($"workload {p.Id} did not get ready: '{(line.IsCompleted ? line.Result : "(timeout)")}' {(p.HasExited ? p.StandardError.ReadToEnd() : "")}");
    }

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            try { if (!p.HasExited) { p.Kill(); p.WaitForExit(10_000); } } catch (InvalidOperationException) { }
            p.Dispose();
        }
        _processes.Clear();
    }
}
