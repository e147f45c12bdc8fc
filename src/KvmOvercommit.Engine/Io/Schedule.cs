using System.Diagnostics;

namespace KvmOvercommit.Engine.Io;

/// <summary>Interval scheduling shared by the samplers: deadlines on a fixed grid from the first reading, so a long run does not drift.</summary>
public static class Schedule
{
    /// <summary>
    /// Time until the next grid point (start + k × interval) that is at least half an interval away. When the
    /// caller fell behind (a slow consumer, an overloaded host), missed grid points are skipped instead of taking
    /// readings back to back, which would give near-zero intervals and meaningless rates: every interval reported is at
    /// least half the one asked for (a CI run under load once reported 0.045 s for 0.1 s).
    /// </summary>
    public static TimeSpan NextDue(long startTimestamp, TimeSpan interval)
    {
        var elapsed = Stopwatch.GetElapsedTime(startTimestamp);
        long k = elapsed.Ticks / interval.Ticks + 1;
        var due = TimeSpan.FromTicks(interval.Ticks * k) - elapsed;
        if (due.Ticks < interval.Ticks / 2) due += interval;
        return due;
    }
}
