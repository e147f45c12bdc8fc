using System.Text.Json;
using KvmOvercommit.Cli;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Guests;

[Collection(HostSerialCollection.Name)]
public class GuestsCliTests
{
    static (int Code, string Out, string Err) Kvmoc(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [SkippableFact]
    public async Task TinyGuest_Start_And_Stop_Through_Kvmoc()
    {
        using var f = await GuestFixture.CreateAsync();
        var tiny = Kvmoc("tiny-guest", "--json");
        Assert.True(tiny.Code == 0, tiny.Err);
        var image = JsonDocument.Parse(tiny.Out).RootElement;
        Assert.Equal(f.Image.Kernel, image.GetProperty("Kernel").GetString());
        Assert.Equal(f.Image.Initrd, image.GetProperty("Initrd").GetString());

        var name = f.Name("cli, one");
        var whatIf = Kvmoc("guest", "start", "--tiny", "--name", name, "--memory-mb", "128", "--accelerator", "Tcg", "--network", "None", "--run-directory", f.RunRoot, "--what-if");
        Assert.Equal(0, whatIf.Code);
        Assert.Contains("guest=cli,, one", whatIf.Err);
        Assert.Empty(f.Running());

        var start = Kvmoc("guest", "start", "--tiny", "--name", name, "--memory-mb", "128", "--accelerator", "Tcg", "--network", "None", "--no-vnc",
            "--kernel-arguments", "quiet kvmoc.quiet", "--run-directory", f.RunRoot, "--json");
        Assert.True(start.Code == 0, start.Err);
        var started = JsonDocument.Parse(start.Out).RootElement;
        var g = JsonSerializer.Deserialize<KvmGuest>(started.ValueKind == JsonValueKind.Array ? started[0].GetRawText() : started.GetRawText())!;
        Assert.Equal(name, g.Name);
        Assert.Equal("running", g.State);
        Assert.Null(g.VncDisplay);
        Assert.Single(f.Running());
        await GuestFixture.WaitForSerialAsync(g, "KVMOC-READY");
        Assert.DoesNotContain("kvmoc:", File.ReadAllText(g.SerialLog!)); // kvmoc.quiet

        var stop = Kvmoc("guest", "stop", name, "--run-directory", f.RunRoot, "--timeout-seconds", "20", "--json");
        Assert.True(stop.Code == 0, stop.Err);
        Assert.Equal("stopped", JsonDocument.Parse(stop.Out).RootElement.GetProperty("State").GetString());
        Assert.Empty(f.Running());
        Assert.False(Directory.Exists(g.RunDirectory));
    }

    [SkippableFact]
    public void Errors_Have_Ids_And_Exit_Codes()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        using var d = new TempDir();
        var missing = Kvmoc("guest", "start", d.File("nope.qcow2"), "--run-directory", d.Path);
        Assert.Equal(3, missing.Code);
        Assert.Contains("DiskNotFound", missing.Err);
        Assert.False(Directory.Exists(Path.Combine(d.Path, "nope")));
        var stop = Kvmoc("guest", "stop", "no-such-guest-" + Guid.NewGuid().ToString("N"), "--run-directory", d.Path);
        Assert.Equal(3, stop.Code);
        Assert.Contains("GuestNotFound", stop.Err);
    }
}
