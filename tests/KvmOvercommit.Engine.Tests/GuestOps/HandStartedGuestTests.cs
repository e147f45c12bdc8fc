using System.Diagnostics;
using System.Net.Sockets;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.GuestOps;

/// <summary>Real qemu-system-x86_64 processes started by hand (no guest OS needed): discovery, QMP state, balloon and blockstats plumbing.</summary>
[Collection(HostSerialCollection.Name)]
public class HandStartedGuestTests
{
    static string Qemu() => Prereq.RequireTool("qemu-system-x86_64");

    [SkippableFact]
    public async Task AHandStartedQemuIsDiscoveredWithItsFields()
    {
        using var q = new HandStartedQemu(Qemu(), "-machine", "none", "-name", "guest=hand,debug-threads=on", "-m", "64");
        var before = DateTimeOffset.UtcNow;
        var guests = await new KvmGuestInventory().GetAsync(new[] { "hand" }, null, queryState: true, null, NullObserver.Instance, default);
        var g = Assert.Single(guests, x => x.Id == q.Pid);
        Assert.Equal("hand", g.Name);
        Assert.Equal(64, g.MemoryMB);
        Assert.Equal(1, g.CpuCount);
        Assert.Equal("tcg", g.Accelerator);
        Assert.Equal(q.QmpSocket, g.QmpSocket);
        Assert.Equal("running", g.State);
        Assert.Empty(g.Disks);
        Assert.True(g.RssBytes > 1024 * 1024, $"RSS {g.RssBytes}");
        Assert.NotNull(g.SwapBytes);
        Assert.NotNull(g.CpuTime);
        Assert.InRange(g.StartTime!.Value, before.AddSeconds(-30), before.AddSeconds(1));
        Assert.True(g.Uptime >= TimeSpan.Zero);
        if (File.Exists($"/proc/{q.Pid}/ksm_stat")) Assert.NotNull(g.KsmMergingPages);
        Assert.Null(g.RunDirectory); // q.sock, not a Start-KvmGuest run directory

        // By id, and by wildcard; a missing exact name is an error, a missing wildcard is not.
        Assert.Equal(q.Pid, Assert.Single(new KvmGuestInventory().Find(null, new[] { q.Pid })).Id);
        Assert.Contains(new KvmGuestInventory().Find(new[] { "ha*" }, null), x => x.Id == q.Pid);
        var errors = new List<KvmOcException>();
        Assert.Empty(new KvmGuestInventory().Find(new[] { "no-such-guest", "no-such-*" }, null, errors.Add));
        Assert.Equal("GuestNotFound", Assert.Single(errors).ErrorId);
    }

    [SkippableFact]
    public void TheCliListsItAsJson()
    {
        using var q = new HandStartedQemu(Qemu(), "-machine", "pc", "-name", "guest=cli hand,,comma", "-m", "48", "-smp", "2");
        var (rc, stdout, stderr) = Cli("guest", "list", "cli hand,comma", "--json");
        Assert.True(rc == 0, stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(stdout);
        Assert.Equal("cli hand,comma", doc.RootElement.GetProperty("Name").GetString());
        Assert.Equal(q.Pid, doc.RootElement.GetProperty("Id").GetInt32());
        Assert.Equal(48, doc.RootElement.GetProperty("MemoryMB").GetInt32());
        Assert.Equal(2, doc.RootElement.GetProperty("CpuCount").GetInt32());
        Assert.Equal("running", doc.RootElement.GetProperty("State").GetString());

        var (rc2, table, _) = Cli("guest", "list");
        Assert.Equal(0, rc2);
        Assert.Contains("cli hand,comma", table);
        var (rc3, _, err3) = Cli("guest", "list", "surely-not-running");
        Assert.Equal(3, rc3);
        Assert.Contains("GuestNotFound", err3);
    }

    [SkippableFact]
    public async Task ABusyOrSilentQmpSocketDoesNotHoldTheListingUp()
    {
        using var q = new HandStartedQemu(Qemu(), "-machine", "none", "-name", "busy", "-m", "32");
        using var tmp = new TempDir();
        // QEMU serves one QMP client at a time: hold the connection, so the listing's connect gets no greeting.
        await using var holder = await QmpClient.ConnectAsync(q.QmpSocket);
        var inv = new KvmGuestInventory { StateTimeout = TimeSpan.FromMilliseconds(400) };
        var sw = Stopwatch.StartNew();
        var g = Assert.Single(await inv.GetAsync(new[] { "busy" }, null, true, null, NullObserver.Instance, default));
        Assert.Null(g.State);
        Assert.InRange(sw.Elapsed.TotalSeconds, 0, 3);

        // A socket that accepts and never speaks.
        var path = tmp.File("silent.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(4);
        sw.Restart();
        var e = await Assert.ThrowsAsync<KvmOcException>(() => KvmGuestInventory.QueryStatusAsync(path, TimeSpan.FromMilliseconds(300), default));
        Assert.Equal(ErrorKind.Timeout, e.Kind);
        Assert.InRange(sw.Elapsed.TotalSeconds, 0, 3);
        // A socket nobody listens on any more.
        var dead = tmp.File("dead.sock");
        using (var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)) { s.Bind(new UnixDomainSocketEndPoint(dead)); }
        sw.Restart();
        await Assert.ThrowsAsync<KvmOcException>(() => KvmGuestInventory.QueryStatusAsync(dead, TimeSpan.FromMilliseconds(300), default));
        Assert.InRange(sw.Elapsed.TotalSeconds, 0, 3);
    }

    [SkippableFact]
    public async Task AGuestWithoutABalloonGetsAClearError()
    {
        using var q = new HandStartedQemu(Qemu(), "-machine", "none", "-name", "noballoon", "-m", "32");
        var g = Assert.Single(new KvmGuestInventory().Find(new[] { "noballoon" }, null));
        var e = await Assert.ThrowsAsync<KvmOcException>(() => KvmGuestBalloon.GetAsync(g, default));
        Assert.Equal("GuestHasNoBalloon", e.ErrorId);
        Assert.Equal(ErrorKind.InvalidOperation, e.Kind);
        Assert.Contains("No balloon device has been activated", e.Message);
        var set = await Assert.ThrowsAsync<KvmOcException>(() => KvmGuestBalloon.ApplyAsync(KvmGuestBalloon.Plan(g, 16), false, TimeSpan.FromSeconds(1), NullObserver.Instance, default));
        Assert.Equal("GuestHasNoBalloon", set.ErrorId);
    }

    [SkippableFact]
    public async Task BlockstatsOfARealQemuAreSampledPerDrive()
    {
        Prereq.RequireTool("qemu-img");
        using var tmp = new TempDir();
        var disk = tmp.File("disk, one.qcow2");
        var img = Process.Start("qemu-img", new[] { "create", "-q", "-f", "qcow2", disk, "16M" })!;
        img.WaitForExit();
        using var q = new HandStartedQemu(Qemu(), "-machine", "pc", "-name", "iops", "-m", "32",
            "-drive", $"file={QemuOptionString.Escape(disk)},if=virtio,id=vd0,format=qcow2");
        var g = Assert.Single(new KvmGuestInventory().Find(new[] { "iops" }, null));
        Assert.Equal(new[] { disk }, g.Disks);
        var rows = new List<KvmGuestIops>();
        var errors = new List<KvmOcException>();
        await new KvmGuestIopsSampler().RunAsync(new[] { g }, TimeSpan.FromMilliseconds(300), 2, rows.Add, errors.Add, NullObserver.Instance, default);
        Assert.Empty(errors);
        Assert.Equal(2, rows.Count);
        Assert.All(rows, r =>
        {
            Assert.Equal("iops", r.Name);
            Assert.Equal(q.Pid, r.Id);
            Assert.Equal("vd0", r.Drive);
            Assert.InRange(r.IntervalSeconds, 0.15, 2.0); // never under half the 0.3 s asked for (Io.Schedule), also on a loaded host
            Assert.Equal(0, r.WriteOpsPerSec);
        });
    }

    internal static (int Rc, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = KvmOvercommit.Cli.Program.Run(args, o, e);
        return (rc, o.ToString(), e.ToString());
    }
}
