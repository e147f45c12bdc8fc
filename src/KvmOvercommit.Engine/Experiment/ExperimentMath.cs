namespace KvmOvercommit.Engine.Experiment;

/// <summary>The arithmetic of an experiment on explicit inputs: time to a fraction of the final savings, the per-profile summary, chart ticks.</summary>
public static class ExperimentMath
{
    /// <summary>
    /// The first time (seconds) at which <paramref name="values"/> reaches <paramref name="fraction"/> of its final
    /// (last) value, interpolated linearly between the two samples around the crossing; null when the final value is
    /// not positive. Points must be in time order.
    /// </summary>
    public static double? TimeToFraction(IReadOnlyList<(double Seconds, long Value)> values, double fraction = 0.9)
    {
        if (fraction is <= 0 or > 1 || double.IsNaN(fraction))
            throw new KvmOcException(ErrorKind.InvalidArgument, "InvalidFraction", $"The fraction must be in (0, 1], not {fraction}.", fraction);
        if (values.Count == 0 || values[^1].Value <= 0) return null;
        double target = fraction * values[^1].Value;
        for (int i = 0; i < values.Count; i++)
        {
            if (values[i].Value < target) continue;
            if (i == 0) return values[0].Seconds;
            var (t0, v0) = values[i - 1];
            var (t1, v1) = values[i];
            return v1 == v0 ? t1 : Math.Round(t0 + (target - v0) / (v1 - v0) * (t1 - t0), 3);
        }
        return values[^1].Seconds;
    }

    /// <summary>Fills a profile's summary (savings, resident memory, time to 90 %, ksmd CPU, overcommit ratio) from its samples and guests.</summary>
    public static void Summarize(ExperimentProfileResult p)
    {
        var samples = p.Samples;
        if (samples.Length == 0) return;
        var last = samples[^1];
        p.SavedBytes = last.SavedBytes;
        p.PeakSavedBytes = samples.Max(s => s.SavedBytes);
        p.ResidentBaselineBytes = samples[0].ResidentBytes + samples[0].ResidentSavingBytes;
        p.ResidentBytes = last.ResidentBytes;
        p.ResidentSavingBytes = p.ResidentBaselineBytes - p.ResidentBytes;
        p.EffectiveResidentBytes = Math.Max(0, p.ResidentBytes - p.SavedBytes);
        p.TotalSavedBytes = p.ResidentBaselineBytes - p.EffectiveResidentBytes;
        p.Duration = TimeSpan.FromSeconds(last.ElapsedSeconds);
        var t90 = TimeToFraction(samples.Select(s => (s.ElapsedSeconds, s.SavedBytes)).ToList());
        p.TimeTo90Percent = t90 is double t ? TimeSpan.FromSeconds(t) : null;
        p.KsmdCpuSeconds = last.KsmdCpuSeconds;
        p.KsmdCpuPercent = last.KsmdCpuSeconds is double c && last.ElapsedSeconds > 0 ? Math.Round(100 * c / last.ElapsedSeconds, 2) : null;
        p.OvercommitRatio = Ratio(p.CommittedBytes, p.EffectiveResidentBytes);
    }

    /// <summary>committed / used, rounded to 3 places; 0 when nothing is used.</summary>
    public static double Ratio(long committed, long used) => used > 0 ? Math.Round((double)committed / used, 3) : 0;

    /// <summary>The profile with the largest total saving (ties: the faster one to 90 %).</summary>
    public static ExperimentProfileResult? Best(IEnumerable<ExperimentProfileResult> profiles) => profiles
        .OrderByDescending(p => p.TotalSavedBytes)
        .ThenBy(p => p.TimeTo90Percent ?? TimeSpan.MaxValue)
        .FirstOrDefault();

    /// <summary>A "nice" axis: step 1, 2 or 5 × 10^n giving about <paramref name="targetTicks"/> ticks from 0 to at least <paramref name="max"/>.</summary>
    public static (double Step, double Top) NiceAxis(double max, int targetTicks = 5)
    {
        if (!(max > 0) || double.IsInfinity(max)) return (1, 1);
        double raw = max / Math.Max(1, targetTicks);
        double mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1.0, 2, 2.5, 5, 10 }.Select(m => m * mag).First(s => s >= raw * 0.999);
        double top = Math.Ceiling(max / step - 1e-9) * step;
        return (step, top);
    }
}
