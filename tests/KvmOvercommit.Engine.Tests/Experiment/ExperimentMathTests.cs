using System.Globalization;
using System.Text.Json;
using System.Xml.Linq;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Experiment;

public class ExperimentMathTests
{
    const long MiB = 1024 * 1024;

    [Fact]
    public void TimeTo90PercentInterpolatesBetweenTheSamplesAroundTheCrossing()
    {
        // final 100: 90 is crossed between t=2 (50) and t=4 (100) → 2 + 40/50 × 2 = 3.6
        var series = new List<(double, long)> { (0, 0), (2, 50), (4, 100), (6, 100) };
        Assert.Equal(3.6, ExperimentMath.TimeToFraction(series, 0.9));
        Assert.Equal(2.0, ExperimentMath.TimeToFraction(series, 0.5));
        Assert.Equal(4.0, ExperimentMath.TimeToFraction(series, 1.0));
    }

    [Fact]
    public void TimeTo90PercentUsesTheFinalValueNotThePeak()
    {
        // savings peaked at 200 and fell back to 100 (pages unmerged): 90 % of the final is first reached at t=1 (interpolated 0.9)
        var series = new List<(double, long)> { (0, 0), (1, 100), (2, 200), (3, 100) };
        Assert.Equal(0.9, ExperimentMath.TimeToFraction(series));
    }

    [Fact]
    public void NothingSavedGivesNoTime()
    {
        Assert.Null(ExperimentMath.TimeToFraction(new List<(double, long)>()));
        Assert.Null(ExperimentMath.TimeToFraction(new List<(double, long)> { (0, 0), (2, 0) }));
        Assert.Equal(0.0, ExperimentMath.TimeToFraction(new List<(double, long)> { (0, 5), (2, 5) })); // already there at the first sample
        Assert.Throws<KvmOcException>(() => ExperimentMath.TimeToFraction(new List<(double, long)> { (0, 1) }, 0));
    }

    [Fact]
    public void SummarizeComputesSavingsResidentRatioAndKsmdCpu()
    {
        var p = new ExperimentProfileResult { Profile = ExperimentProfile.Aggressive, CommittedBytes = 512 * MiB, Samples = Samples() };
        ExperimentMath.Summarize(p);
        Assert.Equal(880 * MiB, p.ResidentBaselineBytes);
        Assert.Equal(840 * MiB, p.ResidentBytes);
        Assert.Equal(40 * MiB, p.ResidentSavingBytes);
        Assert.Equal(190 * MiB, p.SavedBytes);
        Assert.Equal(200 * MiB, p.PeakSavedBytes);
        Assert.Equal(650 * MiB, p.EffectiveResidentBytes);   // 840 − 190
        Assert.Equal(230 * MiB, p.TotalSavedBytes);          // 880 − 650 = 190 + 40
        Assert.Equal(Math.Round(512.0 / 650, 3), p.OvercommitRatio);
        Assert.Equal(6.0, p.KsmdCpuSeconds);
        Assert.Equal(100.0, p.KsmdCpuPercent);               // 6 CPU-s in 6 s
        Assert.Equal(TimeSpan.FromSeconds(6), p.Duration);
        // 90 % of 190 = 171, crossed between t=2 (100) and t=4 (200): 2 + 71/100 × 2 = 3.42
        Assert.Equal(3.42, p.TimeTo90PercentSeconds);
        Assert.Equal(230.0, p.TotalSavedMiB);
    }

    [Theory]
    [InlineData(128, 32)]
    [InlineData(160, 64)]
    [InlineData(256, 128)]
    [InlineData(4048, 2024)]
    [InlineData(64, 0)]
    public void TheDefaultFillLeavesTheTinyGuestEnoughMemory(long memoryMB, int fill) => Assert.Equal(fill, OvercommitExperiment.DefaultFillMiB(memoryMB));

    [Fact]
    public void TheBestProfileSavesMostAndTiesGoToTheFaster()
    {
        var slow = new ExperimentProfileResult { Profile = ExperimentProfile.Default, TotalSavedBytes = 100, TimeTo90Percent = TimeSpan.FromSeconds(50) };
        var fast = new ExperimentProfileResult { Profile = ExperimentProfile.Aggressive, TotalSavedBytes = 100, TimeTo90Percent = TimeSpan.FromSeconds(2) };
        var little = new ExperimentProfileResult { Profile = ExperimentProfile.Adaptive, TotalSavedBytes = 10, TimeTo90Percent = TimeSpan.FromSeconds(1) };
        Assert.Same(fast, ExperimentMath.Best(new[] { slow, little, fast }));
        Assert.Null(ExperimentMath.Best(Array.Empty<ExperimentProfileResult>()));
    }

    [Theory]
    [InlineData(7.0, 5, 2.0, 8.0)]
    [InlineData(190.0, 6, 50.0, 200.0)]
    [InlineData(100.0, 5, 20.0, 100.0)]
    [InlineData(0.3, 5, 0.1, 0.3)]
    [InlineData(0.0, 5, 1.0, 1.0)]
    public void NiceAxesUseSteps125(double max, int ticks, double step, double top)
    {
        var (s, t) = ExperimentMath.NiceAxis(max, ticks);
        Assert.Equal(step, s, 9);
        Assert.Equal(top, t, 9);
    }

    [Fact]
    public void CsvHasAHeaderAndOneParseableLinePerSample()
    {
        var csv = ExperimentReportWriter.Csv(Samples());
        var lines = csv.Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(5, lines.Length);
        Assert.Equal(ExperimentReportWriter.CsvColumns, lines[0].Split(','));
        var row = lines[2].Split(',');
        Assert.Equal(ExperimentReportWriter.CsvColumns.Length, row.Length);
        string Cell(string name) => row[Array.IndexOf(ExperimentReportWriter.CsvColumns, name)];
        Assert.Equal("Aggressive", Cell("Profile"));
        Assert.Equal("2", Cell("ElapsedSeconds"));
        Assert.Equal((100 * MiB).ToString(CultureInfo.InvariantCulture), Cell("SavedBytes"));
        Assert.Equal("100", Cell("SavedMiB"));
        Assert.Equal("2026-12-01T08:00:02.000Z", Cell("Timestamp"));
        Assert.Equal("", Cell("KsmdCpuPercent")); // null stays empty

        var withGuests = ExperimentReportWriter.Csv(Samples(), new[] { "g-1", "g,2" }).Split("\r\n")[..3];
        Assert.EndsWith(",RssBytes[g-1],\"RssBytes[g,2]\"", withGuests[0]);
        Assert.EndsWith($",{600 * MiB},{270 * MiB}", withGuests[2]);
    }

    [Fact]
    public void SvgIsWellFormedWithOneLinePerProfileAxesAndALegend()
    {
        var r = Result();
        var svg = XDocument.Parse(ExperimentReportWriter.Svg(r));
        XNamespace ns = "http://www.w3.org/2000/svg";
        var lines = svg.Descendants(ns + "polyline").ToList();
        Assert.Equal(2, lines.Count);
        Assert.Equal(2, lines.Select(l => l.Attribute("stroke")!.Value).Distinct().Count());
        Assert.All(lines, l => Assert.Equal(4, l.Attribute("points")!.Value.Split(' ').Length));
        var texts = svg.Descendants(ns + "text").Select(t => t.Value).ToList();
        Assert.Contains("KSM saved (MiB)", texts);
        Assert.Contains("time since the profile started (s)", texts);
        Assert.Contains(texts, t => t.StartsWith("Aggressive: 190 MiB saved, 90% in 3.4 s", StringComparison.Ordinal));
        Assert.Contains(texts, t => t.StartsWith("Default: 19 MiB saved", StringComparison.Ordinal));
        Assert.Contains("200", texts); // y axis tops out at a nice 200 MiB
        // every point lies inside the plot area
        foreach (var pt in lines.SelectMany(l => l.Attribute("points")!.Value.Split(' ')))
        {
            var xy = pt.Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
            Assert.InRange(xy[0], 80, 870);
            Assert.InRange(xy[1], 60, 450);
        }
    }

    [Fact]
    public void TheReportFolderGetsJsonCsvAndSvgAndTheJsonReadsBack()
    {
        using var t = new TempDir();
        var r = Result();
        var files = ExperimentReportWriter.Write(r, Path.Combine(t.Path, "report"));
        Assert.Equal(3, files.Length);
        Assert.All(files, f => Assert.True(new FileInfo(f).Length > 100, f));
        var back = JsonSerializer.Deserialize<ExperimentResult>(File.ReadAllText(Path.Combine(t.Path, "report", ExperimentReportWriter.JsonFile)), ExperimentReportWriter.JsonOptions)!;
        Assert.Equal(2, back.Profiles.Length);
        Assert.Equal(ExperimentProfile.Aggressive, back.Profiles[0].Profile);
        Assert.Equal(4, back.Profiles[0].Samples.Length);
        Assert.Equal(r.Profiles[0].TimeTo90Percent, back.Profiles[0].TimeTo90Percent);
        Assert.Equal(files, back.ReportFiles);
        Assert.Equal(TimeSpan.Zero, back.StartTime.Offset);
    }

    static ExperimentSample[] Samples(ExperimentProfile profile = ExperimentProfile.Aggressive, long scale = 1)
    {
        var t0 = new DateTimeOffset(2026, 12, 1, 8, 0, 0, TimeSpan.Zero);
        ExperimentSample S(int i, long saved, long rss, double? cpu) => new()
        {
            Profile = profile, Index = i, Timestamp = t0.AddSeconds(2 * i), ElapsedSeconds = 2 * i, SavedBytes = saved * MiB / scale,
            ResidentBytes = rss * MiB, ResidentSavingBytes = (880 - rss) * MiB, TotalSavedBytes = (880 - rss) * MiB + saved * MiB / scale,
            KsmdCpuSeconds = cpu, PagesToScan = 20000, SleepMilliseconds = 20, GuestRssBytes = new[] { 600 * MiB, (rss - 600) * MiB },
        };
        return new[] { S(0, 0, 880, 0), S(1, 100, 870, 2), S(2, 200, 850, 4), S(3, 190, 840, 6) };
    }

    static ExperimentResult Result()
    {
        var a = new ExperimentProfileResult { Profile = ExperimentProfile.Aggressive, CommittedBytes = 512 * MiB, Samples = Samples() };
        var d = new ExperimentProfileResult { Profile = ExperimentProfile.Default, CommittedBytes = 512 * MiB, Samples = Samples(ExperimentProfile.Default, 10) };
        ExperimentMath.Summarize(a);
        ExperimentMath.Summarize(d);
        return new ExperimentResult
        {
            HostName = "h1", StartTime = new DateTimeOffset(2026, 12, 1, 8, 0, 0, TimeSpan.Zero), TinyGuest = true, GuestCount = 4, MemoryMB = 128,
            Accelerator = "tcg", Profiles = new[] { a, d }, BestProfile = "Aggressive",
        };
    }
}
