using System.Text;

namespace KvmOvercommit.Engine.Tests.GuestOps;

/// <summary>
/// Builds a fake /proc tree (cmdline, stat, status, ksm_stat per pid, and /proc/stat with btime) for the scanner's
/// tests and the listing benchmark. Shared with tests/KvmOvercommit.Benchmarks by a linked Compile item.
/// </summary>
public static class FakeProc
{
    public const long BootTime = 1_795_328_353;

    public static void WriteStat(string proc) => File.WriteAllText(Path.Combine(proc, "stat"), $"cpu  1 2 3 4\nbtime {BootTime}\nprocesses 100\n");

    /// <summary>One process. <paramref name="startTicks"/> and <paramref name="cpuTicks"/> are in clock ticks (1/100 s).</summary>
    public static void WriteProcess(string proc, int pid, IEnumerable<string> argv, long startTicks = 599705, long utime = 300, long stime = 100,
        long rssKb = 21812, long swapKb = 0, long? ksmMergingPages = 0, long? ksmProfit = 0, string comm = "qemu-system-x86")
    {
        var dir = Path.Combine(proc, pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var cmdline = new StringBuilder();
        foreach (var a in argv) cmdline.Append(a).Append('\0');
        File.WriteAllText(Path.Combine(dir, "cmdline"), cmdline.ToString());
        File.WriteAllText(Path.Combine(dir, "stat"),
            $"{pid} ({comm}) S 1 {pid} {pid} 0 -1 138412480 1100 0 0 0 {utime} {stime} 0 0 20 0 3 0 {startTicks} 1348775936 5402 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n");
        File.WriteAllText(Path.Combine(dir, "status"),
            $"Name:\t{comm}\nState:\tS (sleeping)\nPid:\t{pid}\nVmPeak:\t 1317164 kB\nVmRSS:\t   {rssKb} kB\nRssAnon:\t    9000 kB\nVmSwap:\t       {swapKb} kB\nThreads:\t3\n");
        if (ksmMergingPages is not null)
            File.WriteAllText(Path.Combine(dir, "ksm_stat"),
                $"ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages {ksmMergingPages}\nksm_process_profit {ksmProfit}\nksm_merge_any: no\nksm_mergeable: yes\n");
    }

    /// <summary>A fake /proc with <paramref name="qemuCount"/> blog-style guests and <paramref name="otherCount"/> other processes.</summary>
    public static void Populate(string proc, int qemuCount, int otherCount)
    {
        Directory.CreateDirectory(proc);
        WriteStat(proc);
        for (int i = 0; i < otherCount; i++)
            WriteProcess(proc, 100 + i, new[] { "/usr/sbin/sshd", "-D", "-o", $"option{i}" }, comm: "sshd", ksmMergingPages: null);
        for (int i = 1; i <= qemuCount; i++)
            WriteProcess(proc, 10000 + i, BlogArgv(i), ksmMergingPages: i * 10, ksmProfit: i * 40960 - 640);
    }

    /// <summary>The blog's launch line for guest <paramref name="i"/>.</summary>
    public static string[] BlogArgv(int i) =>
        $"/usr/bin/kvm -M pc-1.0 -smp 2 -enable-kvm -m 4048 -drive file=win7-{i}.qcow2,if=virtio -net nic,model=virtio -net user -vnc :{i} -device virtio-balloon-pci -daemonize"
            .Split(' ');
}
