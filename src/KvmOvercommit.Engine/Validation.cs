using System.Globalization;

namespace KvmOvercommit.Engine;

/// <summary>
/// The rules for durations, intervals, counts, staggers and timeouts, in one place for the cmdlets and kvmoc: both
/// call these (the engine operations call them again on their options), so `Watch-KsmStat -Duration 0` and
/// `kvmoc ksm watch --duration 0` fail the same way, with the same error id. Messages name the PowerShell parameter
/// (-IntervalSeconds); kvmoc rewrites such names into its own options (--interval-seconds). Every failure is a
/// <see cref="KvmOcException"/> of kind InvalidArgument (kvmoc exit code 2). NaN, ±Infinity and values beyond what a
/// TimeSpan or a timer can hold are refused, never turned into a raw ArgumentException or OverflowException.
/// </summary>
public static class Validation
{
    /// <summary>The longest -Duration anything runs for (365 days); without a duration a command runs until stopped.</summary>
    public static readonly TimeSpan MaxDuration = TimeSpan.FromDays(365);

    /// <summary>The longest sampling interval (one day).</summary>
    public static readonly TimeSpan MaxInterval = TimeSpan.FromDays(1);

    /// <summary>The shortest interval of the /proc and sysfs samplers (Watch-KsmStat, Measure-DeviceIops, Measure-ProcessIops): 10 ms.</summary>
    public static readonly TimeSpan MinSamplerInterval = TimeSpan.FromMilliseconds(10);

    /// <summary>The shortest interval of Measure-KvmGuestIops (a QMP round trip per guest): 50 ms.</summary>
    public static readonly TimeSpan MinGuestIopsInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>The shortest sampling interval of the experiment: 100 ms.</summary>
    public static readonly TimeSpan MinExperimentInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest stagger between guest starts (one day).</summary>
    public static readonly TimeSpan MaxStagger = TimeSpan.FromDays(1);

    /// <summary>The range of -TimeoutSeconds (start, stop, balloon wait): 1 to 3600 seconds.</summary>
    public const int MinTimeoutSeconds = 1, MaxTimeoutSeconds = 3600;

    /// <summary>The range of -StableSamples.</summary>
    public const int MinStableSamples = 1, MaxStableSamples = 1000;

    static KvmOcException Bad(string id, string message, object? target, string? hint = null) => new(ErrorKind.InvalidArgument, id, message, target, hint);

    static string Num(double d) => d.ToString(double.IsFinite(d) && Math.Abs(d) >= 1e15 ? "G4" : "0.###", CultureInfo.InvariantCulture);

    /// <summary>Seconds as a TimeSpan, or null when they are NaN, infinite or beyond what a TimeSpan holds.</summary>
    public static TimeSpan? FromSeconds(double seconds)
    {
        if (!double.IsFinite(seconds) || Math.Abs(seconds) >= TimeSpan.MaxValue.TotalSeconds) return null;
        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>A -Duration: above zero and at most <see cref="MaxDuration"/>. Null (run until stopped) passes.</summary>
    public static TimeSpan? Duration(TimeSpan? duration, string parameter = "-Duration")
    {
        if (duration is TimeSpan d && (d <= TimeSpan.Zero || d > MaxDuration))
            throw Bad("InvalidDuration", $"{parameter} {d} must be above 0 and at most {MaxDuration.TotalDays:0} days.", d,
                "Give seconds (30) or a time span (00:05:00); leave it out to run until stopped.");
        return duration;
    }

    /// <summary>A -Duration given as seconds (NaN, ±Infinity, 0, negative and huge values are refused).</summary>
    public static TimeSpan DurationSeconds(double seconds, string parameter = "-Duration") =>
        Duration(FromSeconds(seconds) ?? throw Bad("InvalidDuration", $"{parameter} {Num(seconds)} is not a duration.", seconds,
            "Give seconds (30) or a time span (00:05:00); leave it out to run until stopped."), parameter)!.Value;

    /// <summary>Parses a duration as kvmoc takes it: seconds ("30", "1.5") or a time span ("00:05:00"); null or blank is none.</summary>
    public static TimeSpan? ParseDuration(string? text, string parameter = "-Duration")
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var sec)) return DurationSeconds(sec, parameter);
        if (TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var ts)) return Duration(ts, parameter);
        throw Bad("InvalidDuration", $"{parameter} '{text}' is not a duration.", text, "Give seconds (30) or a time span (00:05:00).");
    }

    /// <summary>A sampling interval: at least <paramref name="min"/> (default <see cref="MinSamplerInterval"/>), at most <see cref="MaxInterval"/>.</summary>
    public static TimeSpan Interval(TimeSpan interval, TimeSpan? min = null, string parameter = "-IntervalSeconds")
    {
        var lo = min ?? MinSamplerInterval;
        if (interval < lo || interval > MaxInterval)
            throw Bad("InvalidInterval", $"{parameter} {Num(interval.TotalSeconds)} must be from {Num(lo.TotalSeconds)} to {Num(MaxInterval.TotalSeconds)} seconds.", interval.TotalSeconds);
        return interval;
    }

    /// <summary>A sampling interval in seconds (NaN, ±Infinity, 0, negative, too short or too long are refused).</summary>
    public static TimeSpan IntervalSeconds(double seconds, TimeSpan? min = null, string parameter = "-IntervalSeconds")
    {
        var lo = min ?? MinSamplerInterval;
        if (!double.IsFinite(seconds) || seconds < lo.TotalSeconds || seconds > MaxInterval.TotalSeconds)
            throw Bad("InvalidInterval", $"{parameter} {Num(seconds)} must be from {Num(lo.TotalSeconds)} to {Num(MaxInterval.TotalSeconds)} seconds.", seconds);
        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>A -Count of samples or intervals: at least 1. Null (no count) passes.</summary>
    public static int? Count(int? count, string parameter = "-Count")
    {
        if (count is < 1) throw Bad("InvalidCount", $"{parameter} {count} must be at least 1.", count);
        return count;
    }

    /// <summary>-Count and -Continuous exclude each other: a clear error instead of PowerShell's AmbiguousParameterSet.</summary>
    public static void CountOrContinuous(bool countGiven, bool continuous)
    {
        if (countGiven && continuous)
            throw Bad("CountWithContinuous", "-Count and -Continuous exclude each other: -Count N samples N intervals, -Continuous samples until Ctrl+C.", null,
                "Give one of them.");
    }

    /// <summary>-StableSamples: from 1 to 1000.</summary>
    public static int StableSamples(int samples, string parameter = "-StableSamples")
    {
        if (samples is < MinStableSamples or > MaxStableSamples)
            throw Bad("InvalidStableSamples", $"{parameter} {samples} must be from {MinStableSamples} to {MaxStableSamples}.", samples);
        return samples;
    }

    /// <summary>A stagger between guest starts: from 0 to <see cref="MaxStagger"/>.</summary>
    public static TimeSpan Stagger(TimeSpan stagger, string parameter = "-StaggerSeconds")
    {
        if (stagger < TimeSpan.Zero || stagger > MaxStagger)
            throw Bad("InvalidStagger", $"{parameter} {Num(stagger.TotalSeconds)} must be from 0 to {Num(MaxStagger.TotalSeconds)} seconds.", stagger.TotalSeconds);
        return stagger;
    }

    /// <summary>A stagger in seconds (NaN, ±Infinity, negative or over a day are refused; fractions are kept).</summary>
    public static TimeSpan StaggerSeconds(double seconds, string parameter = "-StaggerSeconds")
    {
        if (!double.IsFinite(seconds) || seconds < 0 || seconds > MaxStagger.TotalSeconds)
            throw Bad("InvalidStagger", $"{parameter} {Num(seconds)} must be from 0 to {Num(MaxStagger.TotalSeconds)} seconds.", seconds);
        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>
    /// The value -StaggerSeconds Auto binds to (a double parameter keeps its type): a quiet NaN with its own payload,
    /// so no number a user can type — [double]::NaN included, which has another payload — is taken for Auto.
    /// </summary>
    public static readonly double AutoStagger = BitConverter.Int64BitsToDouble(0x7FF8_4B56_4F43_0A70);

    /// <summary>True when <paramref name="seconds"/> is <see cref="AutoStagger"/> (exactly those bits).</summary>
    public static bool IsAutoStagger(double seconds) => BitConverter.DoubleToInt64Bits(seconds) == BitConverter.DoubleToInt64Bits(AutoStagger);

    /// <summary>
    /// kvmoc's --stagger-seconds: "auto" (any case) or seconds (invariant culture, fractions allowed, 0 to
    /// <see cref="MaxStagger"/>); null or empty is 0. Returns the seconds, or <see cref="AutoStagger"/>.
    /// </summary>
    public static double ParseStaggerSeconds(string? text, string parameter = "--stagger-seconds")
    {
        if (string.IsNullOrWhiteSpace(text)) return 0;
        var t = text.Trim();
        if (t.Equals("auto", StringComparison.OrdinalIgnoreCase)) return AutoStagger;
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds))
            throw Bad("InvalidStagger", $"{parameter} '{text}' is neither a number of seconds nor auto.", text,
                $"Give seconds from 0 to {Num(MaxStagger.TotalSeconds)} (1.5 is allowed), or auto: the first guest's boot IOPS and the device's capacity decide.");
        StaggerSeconds(seconds, parameter);
        return seconds;
    }

    /// <summary>A device IOPS capacity (-DeviceIopsCapacity): a finite number above 0.</summary>
    public static double DeviceIopsCapacity(double iops, string parameter = "-DeviceIopsCapacity")
    {
        if (!double.IsFinite(iops) || iops <= 0)
            throw Bad("InvalidDeviceIopsCapacity", $"{parameter} {Num(iops)} must be a number of IOPS above 0.", iops,
                "Give what the device under the overlays sustains, e.g. Measure-DeviceIopsCapacity's Iops, or leave it out to have it measured.");
        return iops;
    }

    /// <summary>-TimeoutSeconds of a start, a stop or a balloon wait: from 1 to 3600 seconds.</summary>
    public static TimeSpan TimeoutSeconds(int seconds, string parameter = "-TimeoutSeconds")
    {
        if (seconds is < MinTimeoutSeconds or > MaxTimeoutSeconds)
            throw Bad("InvalidTimeout", $"{parameter} {seconds} must be from {MinTimeoutSeconds} to {MaxTimeoutSeconds} seconds.", seconds);
        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>A timeout as a TimeSpan (the engine's options): from 1 to 3600 seconds.</summary>
    public static TimeSpan Timeout(TimeSpan timeout, string parameter = "-TimeoutSeconds")
    {
        if (timeout < TimeSpan.FromSeconds(MinTimeoutSeconds) || timeout > TimeSpan.FromSeconds(MaxTimeoutSeconds))
            throw Bad("InvalidTimeout", $"{parameter} {Num(timeout.TotalSeconds)} must be from {MinTimeoutSeconds} to {MaxTimeoutSeconds} seconds.", timeout.TotalSeconds);
        return timeout;
    }
}
