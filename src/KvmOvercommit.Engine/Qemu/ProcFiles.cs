using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// Small, allocation-light readers for /proc/&lt;pid&gt; files. A process can exit at any moment while it is read:
/// every reader returns null instead of throwing when its file has gone.
/// </summary>
internal static class ProcFiles
{
    [ThreadStatic] static byte[]? t_buffer;

    /// <summary>Reads a whole (small, size-less) proc file into a shared per-thread buffer; null when it cannot be read.</summary>
    public static ReadOnlySpan<byte> ReadBytes(string path, out bool ok)
    {
        var buffer = t_buffer ??= new byte[16384];
        ok = false;
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.None);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return default;
        }
        using (handle)
        {
            int total = 0;
            try
            {
                while (true)
                {
                    if (total == buffer.Length)
                    {
                        Array.Resize(ref buffer, buffer.Length * 2);
                        t_buffer = buffer;
                    }
                    int n = RandomAccess.Read(handle, buffer.AsSpan(total), total);
                    if (n <= 0) break;
                    total += n;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // ESRCH / EACCES mid-read (process exited or not ours): return what we have only if nothing failed.
                return default;
            }
            ok = true;
            return buffer.AsSpan(0, total);
        }
    }

    /// <summary>Reads a text proc file; null when it cannot be read.</summary>
    public static string? ReadText(string path)
    {
        var bytes = ReadBytes(path, out bool ok);
        return ok ? Encoding.UTF8.GetString(bytes) : null;
    }

    /// <summary>/proc/&lt;pid&gt;/cmdline split at NULs (a trailing NUL ends the last argument); null when unreadable or empty (kernel threads).</summary>
    public static string[]? ReadCmdline(string path)
    {
        var bytes = ReadBytes(path, out bool ok);
        if (!ok || bytes.IsEmpty) return null;
        if (bytes[^1] == 0) bytes = bytes[..^1];
        var args = new List<string>();
        while (true)
        {
            int nul = bytes.IndexOf((byte)0);
            if (nul < 0) { args.Add(Encoding.UTF8.GetString(bytes)); break; }
            args.Add(Encoding.UTF8.GetString(bytes[..nul]));
            bytes = bytes[(nul + 1)..];
        }
        return args.ToArray();
    }

    /// <summary>True when argv[0] in /proc/&lt;pid&gt;/cmdline names a QEMU executable — checked on the raw bytes, without decoding the rest.</summary>
    public static bool Argv0IsQemu(ReadOnlySpan<byte> cmdline)
    {
        int nul = cmdline.IndexOf((byte)0);
        var argv0 = nul < 0 ? cmdline : cmdline[..nul];
        int slash = argv0.LastIndexOf((byte)'/');
        var name = slash < 0 ? argv0 : argv0[(slash + 1)..];
        return name.StartsWith("qemu-system-"u8) || name.SequenceEqual("kvm"u8) || name.SequenceEqual("qemu-kvm"u8) || name.SequenceEqual("qemu-system"u8);
    }

    /// <summary>The value in kB of a "Key:   123 kB" line of /proc/&lt;pid&gt;/status, in bytes; null when absent.</summary>
    public static long? StatusKb(string status, string key)
    {
        int i = FindLine(status, key);
        if (i < 0) return null;
        int j = i;
        while (j < status.Length && status[j] is ' ' or '\t') j++;
        int start = j;
        while (j < status.Length && char.IsAsciiDigit(status[j])) j++;
        return long.TryParse(status.AsSpan(start, j - start), out long kb) ? kb * 1024 : null;
    }

    /// <summary>Finds "key" at the start of a line, followed by ':' or ' ' (returns the index just after the separator), or -1.</summary>
    public static int FindLine(string text, string key)
    {
        int from = 0;
        while (true)
        {
            int i = text.IndexOf(key, from, StringComparison.Ordinal);
            if (i < 0) return -1;
            int after = i + key.Length;
            if ((i == 0 || text[i - 1] == '\n') && after < text.Length && text[after] is ':' or ' ')
                return after + (text[after] == ':' ? 1 : 0);
            from = after;
        }
    }

    /// <summary>A "key value" line's number (ksm_stat, /proc/stat btime); null when absent.</summary>
    public static long? KeyNumber(string text, string key)
    {
        int i = FindLine(text, key);
        if (i < 0) return null;
        while (i < text.Length && text[i] is ' ' or '\t') i++;
        int start = i;
        if (i < text.Length && text[i] == '-') i++;
        while (i < text.Length && char.IsAsciiDigit(text[i])) i++;
        return long.TryParse(text.AsSpan(start, i - start), out long v) ? v : null;
    }

    /// <summary>
    /// Fields of /proc/&lt;pid&gt;/stat after the command name (which may hold spaces and parentheses): index 0 is
    /// field 3 (state), so field N is at N - 3.
    /// </summary>
    public static string[]? StatFields(string? stat)
    {
        if (stat is null) return null;
        int close = stat.LastIndexOf(')');
        if (close < 0) return null;
        return stat.Substring(close + 1).Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    static long? s_clockTicks;

    /// <summary>sysconf(_SC_CLK_TCK): the unit of utime/stime/starttime in /proc/&lt;pid&gt;/stat (100 on Linux).</summary>
    public static long ClockTicks => s_clockTicks ??= QueryClockTicks();

    static long QueryClockTicks()
    {
        try
        {
            long v = sysconf(2 /* _SC_CLK_TCK */);
            return v > 0 ? v : 100;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return 100;
        }
    }

    [DllImport("libc", SetLastError = true)] static extern long sysconf(int name);
}
