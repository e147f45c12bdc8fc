using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Ksm;

/// <summary>
/// A copy of a captured /sys/kernel/mm/ksm in a temp folder plus a writer that refuses writes the way the real
/// kernel does (pages_to_scan under the scan-time advisor → EINVAL; max_page_sharing / merge_across_nodes while
/// pages are merged → EBUSY; advisor_mode resets pages_to_scan; run=2 unmerges), and can fail chosen files (EIO).
/// </summary>
public sealed class FakeKsmKernel : IDisposable
{
    readonly TempDir _dir = new("kvmoc-fakeksm");

    public FakeKsmKernel(string fixture = "sys-6.18")
    {
        var src = Path.Combine(Fixture.PathOf($"ksm/{fixture}"), "kernel", "mm", "ksm");
        Roots = new HostRoots(Sys: _dir.Path);
        Directory.CreateDirectory(Roots.Ksm);
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(Roots.Ksm, Path.GetFileName(f)));
    }

    public HostRoots Roots { get; }
    public List<string> Log { get; } = new();
    public HashSet<string> FailOn { get; } = new();

    public string this[string file]
    {
        get => File.ReadAllText(Path.Combine(Roots.Ksm, file)).Trim();
        set => File.WriteAllText(Path.Combine(Roots.Ksm, file), value + "\n");
    }

    public Dictionary<string, string> AllFiles() => Directory.GetFiles(Roots.Ksm).ToDictionary(Path.GetFileName, f => File.ReadAllText(f))!;

    public KsmTuner Tuner(IOperationObserver? observer = null) => new(Roots, observer) { WriteFile = Write };

    public void Write(string path, string value)
    {
        var file = Path.GetFileName(path);
        var v = value.Trim();
        if (FailOn.Contains(file)) throw new IOException("Input/output error", Errno.EIO);
        switch (file)
        {
            case "pages_to_scan" when this["advisor_mode"].Contains("[scan-time]"):
                throw new IOException("Invalid argument", Errno.EINVAL);
            case "max_page_sharing" or "merge_across_nodes" when this[file] != v && long.Parse(this["pages_shared"]) > 0:
                throw new IOException("Device or resource busy", Errno.EBUSY);
            case "advisor_mode":
                if (v != "none" && v != "scan-time") throw new IOException("Invalid argument", Errno.EINVAL);
                if (!this["advisor_mode"].Contains($"[{v}]"))
                    this["pages_to_scan"] = v == "none" ? "100" : this["advisor_min_pages_to_scan"];
                this["advisor_mode"] = v == "none" ? "[none] scan-time" : "none [scan-time]";
                Log.Add($"{file}={v}");
                return;
            case "run" when v == "2":
                this["pages_shared"] = "0";
                this["pages_sharing"] = "0";
                break;
        }
        File.WriteAllText(path, v + "\n");
        Log.Add($"{file}={v}");
    }

    public void Dispose() => _dir.Dispose();
}
