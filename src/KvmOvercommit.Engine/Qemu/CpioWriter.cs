using System.Text;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// Writes a cpio archive in the "newc" format (magic 070701) the Linux kernel unpacks as an initramfs:
/// a 110-byte ASCII header of 13 hex fields, the NUL-terminated name padded to 4 bytes, the data padded to 4 bytes,
/// and a TRAILER!!! entry.
/// </summary>
internal sealed class CpioWriter : IDisposable
{
    const int S_IFDIR = 0x4000, S_IFREG = 0x8000, S_IFLNK = 0xA000, S_IFCHR = 0x2000;
    readonly Stream _out;
    readonly uint _mtime;
    uint _ino = 1;
    long _pos;

    public CpioWriter(Stream output, DateTimeOffset? mtime = null)
    {
        _out = output;
        _mtime = (uint)(mtime ?? DateTimeOffset.UnixEpoch).ToUnixTimeSeconds();
    }

    public void Directory(string name, int perm = 0x1ED /* 0755 */) => Entry(name, S_IFDIR | perm, ReadOnlySpan<byte>.Empty, nlink: 2);

    public void File(string name, ReadOnlySpan<byte> data, int perm = 0x1A4 /* 0644 */) => Entry(name, S_IFREG | perm, data);

    public void Symlink(string name, string target) => Entry(name, S_IFLNK | 0x1FF, Encoding.UTF8.GetBytes(target));

    public void CharDevice(string name, int major, int minor, int perm = 0x180 /* 0600 */) => Entry(name, S_IFCHR | perm, ReadOnlySpan<byte>.Empty, rdevMajor: major, rdevMinor: minor);

    /// <summary>Writes the trailer; the archive is complete afterwards.</summary>
    public void Finish()
    {
        Entry("TRAILER!!!", 0, ReadOnlySpan<byte>.Empty, nlink: 1, ino: 0);
        _out.Flush();
    }

    void Entry(string name, int mode, ReadOnlySpan<byte> data, int nlink = 1, int rdevMajor = 0, int rdevMinor = 0, uint? ino = null)
    {
        var nameBytes = Encoding.UTF8.GetBytes(name.TrimStart('/'));
        var header = new StringBuilder(110);
        header.Append("070701");
        foreach (var v in new uint[]
                 {
                     ino ?? _ino++, (uint)mode, 0, 0, (uint)nlink, _mtime, (uint)data.Length,
                     0, 0, (uint)rdevMajor, (uint)rdevMinor, (uint)nameBytes.Length + 1, 0,
                 })
            header.Append(v.ToString("x8", System.Globalization.CultureInfo.InvariantCulture));
        Write(Encoding.ASCII.GetBytes(header.ToString()));
        Write(nameBytes);
        Write(new byte[] { 0 });
        Pad();
        Write(data);
        Pad();
    }

    void Write(ReadOnlySpan<byte> b)
    {
        _out.Write(b);
        _pos += b.Length;
    }

    void Pad()
    {
        int n = (int)((4 - _pos % 4) % 4);
        if (n > 0) Write(new byte[n]);
    }

    public void Dispose() => _out.Dispose();
}
