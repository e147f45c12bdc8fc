using System.ComponentModel;
using System.Diagnostics;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>The outcome of running an external tool.</summary>
internal sealed record ToolResult(int ExitCode, string StdOut, string StdErr)
{
    /// <summary>The tool's own words about a failure: the last non-empty stderr lines, else stdout.</summary>
    public string Message
    {
        get
        {
            var text = string.IsNullOrWhiteSpace(StdErr) ? StdOut : StdErr;
            var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            return string.Join(" ", lines.TakeLast(4));
        }
    }
}

/// <summary>Runs external tools with an argument array (never a shell string).</summary>
internal static class ToolRunner
{
    /// <summary>Finds an executable on PATH (or returns an absolute path that exists); null when absent.</summary>
    public static string? Which(string name)
    {
        if (name.Contains('/')) return File.Exists(name) ? name : null;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries)
                     .Concat(new[] { "/usr/sbin", "/usr/bin", "/sbin", "/bin" }))
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    /// <summary>Finds a tool or fails with NotInstalled naming the Debian package that provides it.</summary>
    public static string Require(string name, string package) => Which(name)
        ?? throw new KvmOcException(ErrorKind.NotInstalled, "ToolNotInstalled", $"'{name}' is not installed (needed here).", name, $"Install it: apt-get install {package}");

    public static async Task<ToolResult> RunAsync(string file, IEnumerable<string> args, string? workingDirectory = null, CancellationToken ct = default, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (workingDirectory is not null) psi.WorkingDirectory = workingDirectory;
        if (env is not null) foreach (var kv in env) psi.Environment[kv.Key] = kv.Value;
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new KvmOcException(ErrorKind.Unspecified, "ToolStartFailed", $"Cannot start '{file}'.", file);
        }
        catch (Win32Exception e)
        {
            throw KvmOcException.FromIo(e, "ToolStartFailed", $"Cannot start '{file}'", file);
        }
        using (p)
        {
            p.StandardInput.Close();
            var stdout = p.StandardOutput.ReadToEndAsync(ct);
            var stderr = p.StandardError.ReadToEndAsync(ct);
            try
            {
                await p.WaitForExitAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                throw;
            }
            return new ToolResult(p.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
        }
    }
}
