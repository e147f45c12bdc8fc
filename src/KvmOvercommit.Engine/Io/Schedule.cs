using System.Diagnostics;

namespace KvmOvercommit.Engine.Io;

/// <summary>Interval scheduling shared by the samplers: deadlines on a fixed grid from the first reading, so a long run does not drift.</summary>
public static class Schedule
{
    /// <summary>
    /// Time until the next grid point (start + k × interval) that is at least a tenth of an interval away. When the
    /// caller fell behind (a slow consumer, an overloaded host), missed grid points are skipped instead of taking
    /// readings back to back, which would give near-zero intervals and meaningless rates.
    /// </summary>
    public static TimeSpan NextDue(long startTimestamp, TimeSpan interval)
    {
        var elapsed = Stopwatch.GetElapsedTime(startTimestamp);
        long k = elapsed.Ticks / interval.Ticks + 1;
        var due = TimeSpan.FromTicks(interval.Ticks * k) - elapsed;
        if (due.Ticks < interval.Ticks / 10) due += interval;
        return due;
    }
}
