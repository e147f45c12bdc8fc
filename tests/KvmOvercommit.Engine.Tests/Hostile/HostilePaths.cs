using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Hostile;

/// <summary>
/// The hostile kinds of path every path parameter is tried with (issue 12): a FIFO, a unix socket, a character device,
/// a directory, a symlink loop, a dangling symlink and a name with `[`. Made fresh in a temporary folder per test.
/// </summary>
public sealed class HostilePaths : IDisposable
{
    readonly Socket _socket;
    public TempDir Dir { get; } = new("kvmoc-hostile");
    public string Fifo { get; }
    public string UnixSocket { get; }
    public string CharDevice { get; } = "/dev/null";
    public string Directory { get; }
    public string SymlinkLoop { get; }
    public string Dangling { get; }
    public string Bracket { get; }

    public HostilePaths()
    {
        Fifo = Dir.File("fifo.qcow2");
        if (mkfifo(Fifo, 0x1A4) != 0) throw new InvalidOperationException($"mkfifo failed: errno {Marshal.GetLastPInvokeError()}");
        UnixSocket = Dir.File("sock.qcow2");
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _socket.Bind(new UnixDomainSocketEndPoint(UnixSocket));
        Directory = System.IO.Directory.CreateDirectory(Dir.File("dir.qcow2")).FullName;
        SymlinkLoop = Dir.File("loop-a.qcow2");
        File.CreateSymbolicLink(SymlinkLoop, Dir.File("loop-b.qcow2"));
        File.CreateSymbolicLink(Dir.File("loop-b.qcow2"), SymlinkLoop);
        Dangling = Dir.File("dangling.qcow2");
        File.CreateSymbolicLink(Dangling, Dir.File("nothing-here.qcow2"));
        Bracket = Dir.File("hx-[br].qcow2");
    }

    /// <summary>The kinds that are not files at all (never opened, never replaced), with their names for messages.</summary>
    public IEnumerable<(string Kind, string Path)> NotFiles() => new[]
    {
        ("FIFO", Fifo), ("socket", UnixSocket), ("character device", CharDevice), ("directory", Directory), ("symlink loop", SymlinkLoop),
    };

    /// <summary>lstat-level fingerprint of the hostile entries: type and inode, to prove nothing was replaced.</summary>
    public string Fingerprint()
    {
        var parts = new List<string>();
        foreach (var p in new[] { Fifo, UnixSocket, Directory, SymlinkLoop, Dangling }.Append(CharDevice))
        {
            var fi = new FileInfo(p);
            parts.Add($"{p}:{fi.Attributes}:{fi.LinkTarget}:{FileKind.Of(p)}");
        }
        parts.Add(string.Join(",", System.IO.Directory.GetFileSystemEntries(Dir.Path).OrderBy(x => x, StringComparer.Ordinal)));
        return string.Join("\n", parts);
    }

    /// <summary>Runs <paramref name="body"/> on the thread pool and fails when it takes longer than 5 s (a blocked open).</summary>
    public static T Bounded<T>(Func<T> body, string what)
    {
        var sw = Stopwatch.StartNew();
        var t = Task.Run(body);
        if (!t.Wait(TimeSpan.FromSeconds(5)))
            throw new Xunit.Sdk.XunitException($"{what} did not return within 5 s (blocked on a FIFO?)");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5));
        return t.Result;
    }

    /// <summary>The KvmOcException <paramref name="body"/> throws, within 5 s; fails when it returns or throws anything else.</summary>
    public static KvmOcException Refused(Action body, string what) => Bounded(() =>
    {
        try { body(); }
        catch (KvmOcException e) { return e; }
        catch (AggregateException a) when (a.InnerException is KvmOcException k) { return k; }
        throw new Xunit.Sdk.XunitException($"{what} was not refused");
    }, what);

    public void Dispose()
    {
        _socket.Dispose();
        Dir.Dispose();
    }

    [DllImport("libc", SetLastError = true)] static extern int mkfifo(string path, uint mode);
}
