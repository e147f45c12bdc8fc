using System.Diagnostics;
using System.Text.Json;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Guests;

/// <summary>A bare QEMU (-machine none) with a QMP socket, killed on dispose.</summary>
sealed class BareQemu : IDisposable
{
    readonly TempDir _dir = new("kvmoc-qmp");
    public Process Process { get; }
    public string Socket { get; }

    public BareQemu()
    {
        var qemu = Prereq.RequireTool("qemu-system-x86_64");
        Socket = _dir.File("qmp.sock");
        var psi = new ProcessStartInfo(qemu) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "-machine", "none", "-display", "none", "-nodefaults", "-qmp", $"unix:{Socket},server=on,wait=off" })
            psi.ArgumentList.Add(a);
        Process = Process.Start(psi)!;
    }

    public void Dispose()
    {
        try { if (!Process.HasExited) { Process.Kill(); Process.WaitForExit(5000); } } catch (InvalidOperationException) { }
        Process.Dispose();
        _dir.Dispose();
    }
}

[Collection(HostSerialCollection.Name)]
public class QmpClientTests
{
    [SkippableFact]
    public async Task Connects_Executes_And_Reports_Version()
    {
        using var q = new BareQemu();
        await using var c = await QmpClient.ConnectAsync(q.Socket, TimeSpan.FromSeconds(10));
        Assert.Matches(@"^\d+\.\d+\.\d+$", c.QemuVersion);
        var status = await c.ExecuteAsync("query-status");
        Assert.Equal(JsonValueKind.Object, status.ValueKind);
        Assert.True(status.TryGetProperty("status", out _));
        var version = await c.ExecuteAsync("query-version");
        Assert.Equal(c.QemuVersion.Split('.')[0], version.GetProperty("qemu").GetProperty("major").GetInt32().ToString());
    }

    [SkippableFact]
    public async Task Qmp_Errors_Become_KvmOcException_With_Class_And_Description()
    {
        using var q = new BareQemu();
        await using var c = await QmpClient.ConnectAsync(q.Socket, TimeSpan.FromSeconds(10));
        var e = await Assert.ThrowsAsync<KvmOcException>(() => c.ExecuteAsync("no-such-command"));
        Assert.Equal("QmpCommandNotFound", e.ErrorId);
        Assert.Contains("no-such-command", e.Message);
        var e2 = await Assert.ThrowsAsync<KvmOcException>(() => c.ExecuteAsync("query-command-line-options", new System.Text.Json.Nodes.JsonObject { ["option"] = "no-such-option" }));
        Assert.StartsWith("Qmp", e2.ErrorId);
        Assert.Contains("no-such-option", e2.Message);
        // the connection stays usable after errors
        await c.ExecuteAsync("query-status");
    }

    [SkippableFact]
    public async Task Arguments_Are_Passed()
    {
        using var q = new BareQemu();
        await using var c = await QmpClient.ConnectAsync(q.Socket, TimeSpan.FromSeconds(10));
        var r = await c.ExecuteAsync("query-command-line-options", new System.Text.Json.Nodes.JsonObject { ["option"] = "machine" });
        Assert.Equal("machine", r[0].GetProperty("option").GetString());
    }

    [SkippableFact]
    public async Task Quit_Yields_Shutdown_Event_And_Closed_Connection()
    {
        using var q = new BareQemu();
        await using var c = await QmpClient.ConnectAsync(q.Socket, TimeSpan.FromSeconds(10));
        var shutdown = c.WaitForEventAsync("SHUTDOWN", TimeSpan.FromSeconds(10));
        try { await c.ExecuteAsync("quit"); } catch (KvmOcException e) when (e.Kind == ErrorKind.ConnectionError) { }
        var ev = await shutdown;
        Assert.Equal("SHUTDOWN", ev.Event);
        Assert.True(ev.Timestamp > DateTimeOffset.UtcNow.AddMinutes(-5));
        await c.Closed.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains(c.Events, e => e.Event == "SHUTDOWN");
        Assert.True(q.Process.WaitForExit(10000));
        var after = await Assert.ThrowsAsync<KvmOcException>(() => c.ExecuteAsync("query-status"));
        Assert.Equal(ErrorKind.ConnectionError, after.Kind);
    }

    [SkippableFact]
    public async Task Event_Wait_Times_Out()
    {
        using var q = new BareQemu();
        await using var c = await QmpClient.ConnectAsync(q.Socket, TimeSpan.FromSeconds(10));
        var e = await Assert.ThrowsAsync<KvmOcException>(() => c.WaitForEventAsync("NEVER_HAPPENS", TimeSpan.FromMilliseconds(200)));
        Assert.Equal(ErrorKind.Timeout, e.Kind);
    }

    [SkippableFact]
    public async Task Missing_Socket_Is_QmpSocketMissing_After_Timeout()
    {
        using var d = new TempDir();
        var sw = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<KvmOcException>(() => QmpClient.ConnectAsync(d.File("none.sock"), TimeSpan.FromMilliseconds(300)));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
        Assert.Equal("QmpSocketMissing", e.ErrorId);
        Assert.True(sw.Elapsed >= TimeSpan.FromMilliseconds(250));
    }

    [SkippableFact]
    public async Task Killed_Qemu_Fails_Pending_Waits_With_ConnectionError()
    {
        using var q = new BareQemu();
        await using var c = await QmpClient.ConnectAsync(q.Socket, TimeSpan.FromSeconds(10));
        var wait = c.WaitForEventAsync("SHUTDOWN", TimeSpan.FromSeconds(30));
        q.Process.Kill();
        var e = await Assert.ThrowsAsync<KvmOcException>(() => wait);
        Assert.Equal(ErrorKind.ConnectionError, e.Kind);
    }
}
