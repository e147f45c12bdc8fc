using System.Globalization;

namespace KvmOvercommit.Engine.Ksm;

/// <summary>Small helpers for the text formats of /sys/kernel/mm/ksm and /proc/&lt;pid&gt;/ksm_*.</summary>
internal static class KsmFile
{
    /// <summary>Reads a whole small file, or null when it does not exist (older kernels, a process that exited).</summary>
    public static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
        catch (IOException e) when (e.HResult == Errno.ESRCH || Errno.FromHResult(e.HResult) == Errno.ESRCH) { return null; }
    }

    /// <summary>
    /// Reads a small file (a sysfs value) with one open/read/close into <paramref name="buffer"/>; null when it does
    /// not exist or is not readable (write-only sysfs files).
    /// </summary>
    public static string? TryReadSmall(string path, byte[] buffer)
    {
        try
        {
            using var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
            int total = 0, n;
            while (total < buffer.Length && (n = RandomAccess.Read(h, buffer.AsSpan(total), total)) > 0) total += n;
            return System.Text.Encoding.UTF8.GetString(buffer, 0, total);
        }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    public static long? ParseLong(string? text)
    {
        if (text is null) return null;
        return long.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : null;
    }

    public static bool? ParseBool(string? text)
    {
        if (text is null) return null;
        var t = text.Trim().ToLowerInvariant();
        return t switch
        {
            "1" or "y" or "yes" or "on" or "true" => true,
            "0" or "n" or "no" or "off" or "false" => false,
            _ => null,
        };
    }

    /// <summary>The selected choice of a sysfs choice file: "[none] scan-time" → "none"; a plain value is returned as is.</summary>
    public static string? ParseChoice(string? text)
    {
        if (text is null) return null;
        var t = text.Trim();
        int open = t.IndexOf('[');
        int close = open < 0 ? -1 : t.IndexOf(']', open + 1);
        return open >= 0 && close > open ? t.Substring(open + 1, close - open - 1) : t;
    }

    /// <summary>All choices of a sysfs choice file: "[none] scan-time" → none, scan-time.</summary>
    public static string[] ParseChoices(string? text) =>
        text is null ? Array.Empty<string>() : text.Replace("[", "").Replace("]", "").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
}
