using System.Globalization;
using System.Xml.Linq;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Tests.Infrastructure;
using KvmOvercommit.Engine.Tests.Ksm;

namespace KvmOvercommit.Engine.Tests.Iops;

/// <summary>
/// The boot storm without guests: -StaggerSeconds Auto's parsing (kvmoc's text, the engine's value), the arithmetic of
/// MaxOverlappingBoots and RecommendedStaggerSeconds, the plan's steps, and the report's IOPS columns and chart.
/// </summary>
public class BootStormPlanTests
{
    [Theory]
    [InlineData("auto")]
    [InlineData("AUTO")]
    [InlineData(" Auto ")]
    public void AutoInAnyCaseIsTheAutoValue(string text) => Assert.True(Validation.IsAutoStagger(Validation.ParseStaggerSeconds(text)));

    [Theory]
    [InlineData("1.5", 1.5)]
    [InlineData("0", 0)]
    [InlineData("", 0)]
    [InlineData(null, 0)]
    [InlineData("86400", 86400)]
    public void NumbersStayNumbers(string? text, double seconds)
    {
        var v = Validation.ParseStaggerSeconds(text);
        Assert.False(Validation.IsAutoStagger(v));
        Assert.Equal(seconds, v);
    }

    [Theory]
    [InlineData("soon")]
    [InlineData("-1")]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    [InlineData("86401")]
    [InlineData("autox")]
    public void BadTextIsInvalidStaggerWithWhatIsAccepted(string text)
    {
        var e = Assert.Throws<KvmOcException>(() => Validation.ParseStaggerSeconds(text));
        Assert.Equal("InvalidStagger", e.ErrorId);
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("--stagger-seconds", e.Message);
    }

    [Fact]
    public void NoNumberATypedValueCanBeIsTakenForAuto()
    {
        Assert.False(Validation.IsAutoStagger(double.NaN));
        Assert.False(Validation.IsAutoStagger(-double.NaN));
        Assert.False(Validation.IsAutoStagger(0));
        Assert.True(double.IsNaN(Validation.AutoStagger));
        // The numeric rule never lets Auto through as a number of seconds.
        Assert.Equal("InvalidStagger", Assert.Throws<KvmOcException>(() => Validation.StaggerSeconds(Validation.AutoStagger)).ErrorId);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-5.0)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void ACapacityMustBeAPositiveNumber(double iops) =>
        Assert.Equal("InvalidDeviceIopsCapacity", Assert.Throws<KvmOcException>(() => Validation.DeviceIopsCapacity(iops)).ErrorId);

    [Fact]
    public void FewerOverlappingBootsThanGuestsGiveBootSecondsOverTheOverlap()
    {
        // 100 IOPS per boot, 10 s per boot, 250 IOPS: 2 boots at once; one every 5 s keeps ceil(10 / 5) = 2 overlapping.
        var (m, s, why) = BootStorm.Recommend(100, 10, 250, 10);
        Assert.Equal(2, m);
        Assert.Equal(5, s);
        Assert.Contains("floor(250 / 100) = 2 < 10 guest(s)", why);
        Assert.Contains("RecommendedStaggerSeconds = 10 / 2 = 5 s", why);
    }

    [Fact]
    public void TheReadmesWindowsExampleHolds()
    {
        // README, Boot storm: 100 guests at 200 IOPS for 120 s on a 5000 IOPS device.
        var (m, s, why) = BootStorm.Recommend(200, 120, 5000, 100);
        Assert.Equal(25, m);
        Assert.Equal(4.8, s);
        Assert.Contains("RecommendedStaggerSeconds = 120 / 25 = 4.8 s", why);
    }

    [Fact]
    public void TheStaggerIsRoundedUpSoNoBootMoreOverlaps()
    {
        var (m, s, _) = BootStorm.Recommend(100, 10, 300, 10);
        Assert.Equal(3, m);
        Assert.Equal(3.34, s); // 10 / 3 = 3.333…: 3.33 s would let a 4th boot start before the 1st ended
        Assert.True(Math.Ceiling(10 / s!.Value) <= m);
    }

    [Fact]
    public void WhenAllGuestsFitUnderTheCapacityTheStaggerIsZero()
    {
        var (m, s, why) = BootStorm.Recommend(12.5, 8, 4000, 4);
        Assert.Equal(320, m);
        Assert.Equal(0, s);
        Assert.Contains("floor(4000 / 12.5) = 320 ≥ 4 guest(s), so all boots may overlap: RecommendedStaggerSeconds = 0", why);
    }

    [Fact]
    public void WithAnUnknownGuestCountTheStaggerIsAlwaysBootSecondsOverTheOverlap()
    {
        // Start-KvmGuest -StaggerSeconds Auto does not know how many guests the pipeline brings.
        var (m, s, _) = BootStorm.Recommend(12.5, 8, 4000, null);
        Assert.Equal(320, m);
        Assert.Equal(0.03, s); // 8 / 320 = 0.025, rounded up
    }

    [Fact]
    public void OneBootAboveTheCapacityBootsOneAfterAnother()
    {
        var (m, s, why) = BootStorm.Recommend(500, 12, 200, 5);
        Assert.Equal(0, m);
        Assert.Equal(12, s);
        Assert.Contains("one boot alone needs more than C", why);
    }

    [Fact]
    public void BootsWithoutDiskIoMayAllOverlapAndNoCapacityGivesNoRecommendation()
    {
        var (m, s, why) = BootStorm.Recommend(0, 7, 1000, 4);
        Assert.Null(m);
        Assert.Equal(0, s);
        Assert.Contains("no disk I/O", why);
        var (m2, s2, why2) = BootStorm.Recommend(50, 7, null, 4);
        Assert.Null(m2);
        Assert.Null(s2);
        Assert.Contains("no device capacity", why2);
        Assert.Contains("-DeviceIopsCapacity", why2);
    }

    [Fact]
    public void TheSummaryAveragesTheGuestsAndRecommendsFromTheMeans()
    {
        GuestBootIops G(string n, double secs, long ops) => new() { Name = n, Ready = true, ReadyBy = "ready line", BootSeconds = secs, SampledSeconds = secs, Operations = ops, Iops = Math.Round(ops / secs, 2) };
        var r = BootStorm.Summarize(new[] { G("a", 10, 1000), G("b", 10, 3000) }, 500, "-DeviceIopsCapacity", 8, 0, false);
        Assert.Equal(200, r.BootIopsPerGuest);          // (100 + 300) / 2
        Assert.Equal(10, r.BootSeconds);
        Assert.Equal(2, r.MaxOverlappingBoots);         // floor(500 / 200)
        Assert.Equal(5, r.RecommendedStaggerSeconds);   // 10 / 2
        Assert.Contains("floor(500 / 200) = 2 < 8 guest(s)", r.Explanation);
        Assert.Equal("-DeviceIopsCapacity", r.CapacitySource);
        var late = BootStorm.Summarize(new[] { G("a", 10, 1000), new GuestBootIops { Name = "b", ReadyBy = "timeout", BootSeconds = 180, SampledSeconds = 180 } }, 500, "x", 2, 0, false);
        Assert.Contains("1 guest(s) were not ready", late.Explanation);
    }

    [SkippableFact]
    public void TheExperimentPlanTakesAutoAndACapacityAndSaysSo()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        Prereq.RequireTool("qemu-img");
        using var ksm = new FakeKsmKernel();
        using var t = new TempDir();
        var options = new ExperimentOptions { GuestCount = 4, WorkDirectory = t.File("work"), Roots = ksm.Roots, StaggerSeconds = Validation.AutoStagger, DeviceIopsCapacity = 2000 };
        var plan = OvercommitExperiment.Plan(options);
        Assert.True(plan.Options.StaggerAuto);
        Assert.Equal(0, plan.Options.StaggerSeconds);
        var text = plan.Describe();
        Assert.Contains("the device's capacity is 2000 IOPS (-DeviceIopsCapacity)", text);
        Assert.Contains("the first alone: its boot IOPS and seconds give the stagger of the rest", text);
        Assert.Contains("record each guest's boot IOPS (query-blockstats from the first QMP answer until its ready line)", text);
        Assert.False(Directory.Exists(t.File("work")));

        var numeric = OvercommitExperiment.Plan(new ExperimentOptions { GuestCount = 2, WorkDirectory = t.File("w2"), Roots = ksm.Roots, StaggerSeconds = 1.5 });
        Assert.False(numeric.Options.StaggerAuto);
        Assert.Contains("1.5 s apart", numeric.Describe());

        foreach (var bad in new[] { 0.0, -1, double.NaN })
            Assert.Equal("InvalidDeviceIopsCapacity", Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(new ExperimentOptions { WorkDirectory = t.File("w3"), Roots = ksm.Roots, DeviceIopsCapacity = bad })).ErrorId);
        Assert.Equal("InvalidStagger", Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(new ExperimentOptions { WorkDirectory = t.File("w4"), Roots = ksm.Roots, StaggerSeconds = 5, StaggerAuto = true })).ErrorId);
        Assert.Empty(ksm.Log);
    }

    [Fact]
    public void SamplesCsvHasTheIopsColumnsAndTheSvgAnIopsChart()
    {
        var t0 = new DateTimeOffset(2026, 12, 2, 9, 0, 0, TimeSpan.Zero);
        var samples = Enumerable.Range(0, 4).Select(i => new ExperimentSample
        {
            Profile = ExperimentProfile.Default, Index = i, Timestamp = t0.AddSeconds(60 + 2 * i), ElapsedSeconds = 2 * i, SavedBytes = i * Units.MiB,
            DeviceIops = i == 0 ? null : 10 * i, GuestIops = i == 0 ? null : 5 * i,
        }).ToArray();
        var csv = ExperimentReportWriter.Csv(samples).Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        var header = csv[0].Split(',');
        Assert.Contains("DeviceIops", header);
        Assert.Contains("GuestIops", header);
        var row = csv[3].Split(',');
        Assert.Equal("20", row[Array.IndexOf(header, "DeviceIops")]);
        Assert.Equal("10", row[Array.IndexOf(header, "GuestIops")]);
        Assert.Equal("", csv[1].Split(',')[Array.IndexOf(header, "DeviceIops")]); // the first sample has no interval

        var r = new ExperimentResult
        {
            StartTime = t0, GuestCount = 2, MemoryMB = 128, TinyGuest = true,
            Profiles = new[] { new ExperimentProfileResult { Profile = ExperimentProfile.Default, Samples = samples } },
            IoLoad = new ExperimentIoLoadResult
            {
                Load = ExperimentIoLoad.Write, Device = "vda", Guests = new[] { new ExperimentIoLoadGuest { Name = "g1", IoLoaded = true } },
                Samples = Enumerable.Range(1, 5).Select(i => new ExperimentIopsSample { Timestamp = t0.AddSeconds(30 + i), ElapsedSeconds = i, IntervalSeconds = 1, DeviceIops = 4000, GuestIops = 3900, ProcessIops = 4100 }).ToArray(),
            },
        };
        var svg = XDocument.Parse(ExperimentReportWriter.Svg(r));
        XNamespace ns = "http://www.w3.org/2000/svg";
        var chart = svg.Descendants(ns + "g").Single(g => (string?)g.Attribute("id") == "iops-chart");
        Assert.Equal(3, chart.Descendants(ns + "polyline").Count());   // device, guests, QEMU processes
        Assert.Single(svg.Root!.Elements(ns + "polyline"));              // the KSM chart keeps one line per profile
        var texts = chart.Descendants(ns + "text").Select(x => x.Value).ToList();
        Assert.Contains("IOPS", texts);
        Assert.Contains(texts, x => x.StartsWith("disk under the overlays (vda): peak 4000 IOPS", StringComparison.Ordinal));
        Assert.Contains(texts, x => x.StartsWith("I/O load (Write, 1 guest(s))", StringComparison.Ordinal));
        double height = double.Parse(svg.Root!.Attribute("height")!.Value, CultureInfo.InvariantCulture);
        foreach (var pt in chart.Descendants(ns + "polyline").SelectMany(l => l.Attribute("points")!.Value.Split(' ')))
        {
            var xy = pt.Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
            Assert.InRange(xy[0], 80, 870);
            Assert.InRange(xy[1], 0, height);
        }
    }

    [Fact]
    public void TheInventoryIsAReportFileWhenTheFleetsCopyIsInTheFolder()
    {
        using var t = new TempDir();
        var folder = Path.Combine(t.Path, "report");
        Directory.CreateDirectory(folder);
        var inventory = Path.Combine(folder, ExperimentReportWriter.InventoryFile);
        File.WriteAllText(inventory, "[kvmoc]\ng1 ansible_host=10.213.0.10\n");
        var r = new ExperimentResult { StartTime = DateTimeOffset.UtcNow, Fleet = new Engine.Fleet.FleetReachResult { InventoryFile = inventory } };
        var files = ExperimentReportWriter.Write(r, folder);
        Assert.Contains(inventory, files);
        Assert.Equal(files, r.ReportFiles);
        Assert.EndsWith(ExperimentReportWriter.JsonFile, files[^1]);
        // Without a fleet the report has its three files only.
        Assert.Equal(3, ExperimentReportWriter.Write(new ExperimentResult { StartTime = DateTimeOffset.UtcNow }, Path.Combine(t.Path, "r2")).Length);
    }
}
