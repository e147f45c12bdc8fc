using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvmOvercommit.Engine.Experiment;

/// <summary>Writes an experiment's report: experiment.json (the whole result), samples.csv (every sample, with the device's and the guests' IOPS), saved-memory.svg (KSM's saving over time, one line per profile, and an IOPS chart) and, with -Network Isolated, inventory.ini.</summary>
public static class ExperimentReportWriter
{
    /// <summary>File names inside the report folder.</summary>
    public const string JsonFile = "experiment.json", CsvFile = "samples.csv", SvgFile = "saved-memory.svg", InventoryFile = "inventory.ini";

    /// <summary>The JSON options of the report: kvmoc --json's own (enums as names, generated metadata).</summary>
    public static JsonSerializerOptions JsonOptions => OutputJson.Indented;

    /// <summary>Writes the three files into <paramref name="folder"/> (created when missing) and returns their paths.</summary>
    public static string[] Write(ExperimentResult result, string folder)
    {
        try
        {
            Directory.CreateDirectory(folder);
            var files = new[] { Path.Combine(folder, CsvFile), Path.Combine(folder, SvgFile), Path.Combine(folder, JsonFile) };
            File.WriteAllText(files[0], Csv(result.Profiles.SelectMany(p => p.Samples), result.Guests));
            File.WriteAllText(files[1], Svg(result));
            // -Network Isolated: the fleet's inventory, copied here at cleanup (before the network's folder went).
            var inventory = Path.Combine(folder, InventoryFile);
            if (result.Fleet?.InventoryFile is string inv && Path.GetFullPath(inv) == inventory && File.Exists(inventory))
                files = new[] { files[0], files[1], inventory, files[2] };
            result.ReportFiles = files;
            File.WriteAllText(files[^1], JsonSerializer.Serialize(result, OutputJson.Indented.GetTypeInfo(typeof(ExperimentResult))));
            return files;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw KvmOcException.FromIo(e, "ExperimentReportFailed", $"Cannot write the report into '{folder}'", folder);
        }
    }

    /// <summary>The CSV columns, in order.</summary>
    public static readonly string[] CsvColumns =
    {
        "Profile", "Index", "Timestamp", "ElapsedSeconds", "PagesToScan", "SleepMilliseconds", "PagesShared", "PagesSharing",
        "SavedBytes", "SavedMiB", "ResidentBytes", "ResidentSavingBytes", "TotalSavedBytes", "KsmdCpuSeconds", "KsmdCpuPercent", "FullScans",
        "DeviceIops", "GuestIops",
    };

    /// <summary>
    /// One header line and one line per sample (RFC 4180, invariant culture, UTC ISO 8601 times); with
    /// <paramref name="guests"/>, one more column per guest, "RssBytes[name]", from the sample's GuestRssBytes.
    /// </summary>
    public static string Csv(IEnumerable<ExperimentSample> samples, IReadOnlyList<string>? guests = null)
    {
        guests ??= Array.Empty<string>();
        var sb = new StringBuilder();
        sb.Append(string.Join(',', CsvColumns.Concat(guests.Select(g => $"RssBytes[{g}]")).Select(CsvCell))).Append("\r\n");
        foreach (var s in samples)
        {
            object?[] cells =
            {
                s.Profile, s.Index, s.Timestamp.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture), s.ElapsedSeconds, s.PagesToScan, s.SleepMilliseconds,
                s.PagesShared, s.PagesSharing, s.SavedBytes, s.SavedMiB, s.ResidentBytes, s.ResidentSavingBytes, s.TotalSavedBytes, s.KsmdCpuSeconds, s.KsmdCpuPercent, s.FullScans,
                s.DeviceIops, s.GuestIops,
            };
            var perGuest = guests.Select((_, i) => (object?)(i < s.GuestRssBytes.Length ? s.GuestRssBytes[i] : null));
            sb.Append(string.Join(',', cells.Concat(perGuest).Select(CsvCell))).Append("\r\n");
        }
        return sb.ToString();
    }

    static string CsvCell(object? v)
    {
        var text = v switch { null => "", IFormattable f => f.ToString(null, CultureInfo.InvariantCulture), _ => v.ToString() ?? "" };
        return text.IndexOfAny(new[] { ',', '"', '\r', '\n' }) >= 0 ? "\"" + text.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : text;
    }

    /// <summary>Line colours, one per profile (colour-blind safe, Okabe–Ito).</summary>
    static readonly string[] Colours = { "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9" };

    /// <summary>A self-contained SVG: KSM's saving (MiB) over time since each profile's start, with axes, grid, labels and a legend.</summary>
    public static string Svg(ExperimentResult r)
    {
        var profiles = r.Profiles.Where(p => p.Samples.Length > 0).ToList();
        // The legend sits under the plot, one line per profile, so it never hides a curve.
        const double W = 900, left = 80, right = 30, top = 60, plotHeight = 390, axisSpace = 60;
        double kspHeight = top + plotHeight + axisSpace + 24 * profiles.Count + 16;
        var iops = IopsSeries(r);
        double H = kspHeight + (iops.Count > 0 ? IopsChartHeight : 0);
        double pw = W - left - right, ph = plotHeight;
        double maxT = Math.Max(1, profiles.SelectMany(p => p.Samples).Select(s => s.ElapsedSeconds).DefaultIfEmpty(0).Max());
        double maxY = Math.Max(1, profiles.SelectMany(p => p.Samples).Select(s => s.SavedMiB).DefaultIfEmpty(0).Max());
        var (xStep, xTop) = ExperimentMath.NiceAxis(maxT, 8);
        var (yStep, yTop) = ExperimentMath.NiceAxis(maxY, 6);
        string X(double t) => F(left + t / xTop * pw);
        double Yv(double v) => top + ph - v / yTop * ph;
        string Y(double v) => F(Yv(v));

        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n");
        sb.Append(CultureInfo.InvariantCulture, $"  <rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n");
        var guestWhat = r.TinyGuest ? "tiny guest" : Path.GetFileName(r.BaseImage);
        sb.Append(CultureInfo.InvariantCulture, $"  <text x=\"{W / 2}\" y=\"28\" text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\">{E($"KSM saved memory over time: {r.GuestCount} × {r.MemoryMB} MiB guests ({guestWhat}, {r.Accelerator})")}</text>\n");
        sb.Append(CultureInfo.InvariantCulture, $"  <text x=\"{W / 2}\" y=\"48\" text-anchor=\"middle\" font-size=\"12\" fill=\"#555\">{E($"{r.HostName}, {r.StartTime.UtcDateTime:yyyy-MM-dd HH:mm} UTC; each profile starts from a full unmerge")}</text>\n");

        Axes(sb, "  ", left, top, pw, ph, (xStep, xTop), (yStep, yTop), "time since the profile started (s)", "KSM saved (MiB)");

        // lines: the first solid and wide, later ones thinner and dashed on top, so curves that coincide stay visible
        for (int i = 0; i < profiles.Count; i++)
        {
            var p = profiles[i];
            var points = string.Join(' ', p.Samples.Select(s => $"{X(s.ElapsedSeconds)},{Y(s.SavedMiB)}"));
            sb.Append(CultureInfo.InvariantCulture, $"  <polyline fill=\"none\" stroke=\"{Colours[i % Colours.Length]}\" {Stroke(i)} stroke-linejoin=\"round\" points=\"{points}\"><title>{E(p.Profile.ToString())}</title></polyline>\n");
        }

        // legend
        sb.Append("  <g font-size=\"13\">\n");
        for (int i = 0; i < profiles.Count; i++)
        {
            var p = profiles[i];
            double y = top + ph + axisSpace + 24 * i + 14;
            var label = $"{p.Profile}: {p.SavedMiB:0.#} MiB saved, 90% in {(p.TimeTo90PercentSeconds is double t ? $"{t:0.#} s" : "–")}, ksmd {(p.KsmdCpuSeconds is double c ? $"{c:0.#}" : "?")} CPU-s, total saving incl. resident {p.TotalSavedMiB:0.#} MiB";
            sb.Append(CultureInfo.InvariantCulture, $"    <line x1=\"{F(left)}\" y1=\"{F(y - 4)}\" x2=\"{F(left + 36)}\" y2=\"{F(y - 4)}\" stroke=\"{Colours[i % Colours.Length]}\" {Stroke(i)}/>\n");
            sb.Append(CultureInfo.InvariantCulture, $"    <text x=\"{F(left + 46)}\" y=\"{F(y)}\">{E(label)}</text>\n");
        }
        sb.Append("  </g>\n");
        if (iops.Count > 0) IopsChart(sb, r, iops, kspHeight, W);
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    /// <summary>A chart's grid, tick labels, axis lines and axis titles for the plot area at (<paramref name="left"/>, <paramref name="top"/>), <paramref name="pw"/> × <paramref name="ph"/>.</summary>
    static void Axes(StringBuilder sb, string indent, double left, double top, double pw, double ph, (double Step, double Top) x, (double Step, double Top) y, string xTitle, string yTitle)
    {
        string X(double t) => F(left + t / x.Top * pw);
        double Yv(double v) => top + ph - v / y.Top * ph;
        sb.Append(indent).Append("<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n");
        for (double v = y.Step; v <= y.Top + 1e-9; v += y.Step) sb.Append(indent).Append(CultureInfo.InvariantCulture, $"  <line x1=\"{F(left)}\" y1=\"{F(Yv(v))}\" x2=\"{F(left + pw)}\" y2=\"{F(Yv(v))}\"/>\n");
        for (double t = x.Step; t <= x.Top + 1e-9; t += x.Step) sb.Append(indent).Append(CultureInfo.InvariantCulture, $"  <line x1=\"{X(t)}\" y1=\"{F(top)}\" x2=\"{X(t)}\" y2=\"{F(top + ph)}\"/>\n");
        sb.Append(indent).Append("</g>\n");
        sb.Append(indent).Append("<g font-size=\"12\" fill=\"#333\">\n");
        for (double v = 0; v <= y.Top + 1e-9; v += y.Step) sb.Append(indent).Append(CultureInfo.InvariantCulture, $"  <text x=\"{F(left - 8)}\" y=\"{F(Yv(v) + 4)}\" text-anchor=\"end\">{N(v)}</text>\n");
        for (double t = 0; t <= x.Top + 1e-9; t += x.Step) sb.Append(indent).Append(CultureInfo.InvariantCulture, $"  <text x=\"{X(t)}\" y=\"{F(top + ph + 18)}\" text-anchor=\"middle\">{N(t)}</text>\n");
        sb.Append(indent).Append("</g>\n");
        sb.Append(indent).Append(CultureInfo.InvariantCulture, $"<path d=\"M{F(left)},{F(top)} V{F(top + ph)} H{F(left + pw)}\" fill=\"none\" stroke=\"#333\" stroke-width=\"1.5\"/>\n");
        sb.Append(indent).Append(CultureInfo.InvariantCulture, $"<text x=\"{F(left + pw / 2)}\" y=\"{F(top + ph + 44)}\" text-anchor=\"middle\" font-size=\"14\">{E(xTitle)}</text>\n");
        sb.Append(indent).Append(CultureInfo.InvariantCulture, $"<text x=\"22\" y=\"{F(top + ph / 2)}\" text-anchor=\"middle\" font-size=\"14\" transform=\"rotate(-90 22 {F(top + ph / 2)})\">{E(yTitle)}</text>\n");
    }

    const double IopsChartHeight = 420;

    /// <summary>The IOPS chart's lines: (label, points of (seconds since the experiment started, IOPS)); lines without a point are left out.</summary>
    static List<(string Label, List<(double T, double V)> Points)> IopsSeries(ExperimentResult r)
    {
        var load = r.IoLoad?.Samples ?? Array.Empty<ExperimentIopsSample>();
        var profile = r.Profiles.SelectMany(p => p.Samples).ToList();
        double T(DateTimeOffset t) => Math.Max(0, (t - r.StartTime).TotalSeconds);
        var device = load.Where(s => s.DeviceIops is not null).Select(s => (T(s.Timestamp), s.DeviceIops!.Value))
            .Concat(profile.Where(s => s.DeviceIops is not null).Select(s => (T(s.Timestamp), s.DeviceIops!.Value))).OrderBy(p => p.Item1).ToList();
        var guests = load.Where(s => s.GuestIops is not null).Select(s => (T(s.Timestamp), s.GuestIops!.Value))
            .Concat(profile.Where(s => s.GuestIops is not null).Select(s => (T(s.Timestamp), s.GuestIops!.Value))).OrderBy(p => p.Item1).ToList();
        var qemu = load.Where(s => s.ProcessIops is not null).Select(s => (T(s.Timestamp), s.ProcessIops!.Value)).ToList();
        var all = new List<(string, List<(double, double)>)>
        {
            ($"disk under the overlays{(r.IoLoad?.Device is string d ? $" ({d})" : "")}", device),
            ("guests (sum of query-blockstats)", guests),
            (r.IoLoad?.ProcessIopsSource?.StartsWith("read + write syscalls", StringComparison.Ordinal) == true
                ? "QEMU processes during the I/O load: read + write syscalls/s (sum, Measure-ProcessIops)" : "QEMU processes during the I/O load (sum, Measure-ProcessIops)", qemu),
        };
        return all.Where(x => x.Item2.Count > 0).ToList();
    }

    /// <summary>IOPS over the whole experiment (seconds since it started): the disk, the guests' sum and, during the I/O load, the QEMUs' sum; the load's span is shaded.</summary>
    static void IopsChart(StringBuilder sb, ExperimentResult r, List<(string Label, List<(double T, double V)> Points)> series, double y0, double W)
    {
        const double left = 80, right = 30, top = 50, ph = 260;
        double pw = W - left - right;
        double maxT = Math.Max(1, series.SelectMany(s => s.Points).Max(p => p.T));
        double maxY = Math.Max(1, series.SelectMany(s => s.Points).Max(p => p.V));
        var (xStep, xTop) = ExperimentMath.NiceAxis(maxT, 8);
        var (yStep, yTop) = ExperimentMath.NiceAxis(maxY, 5);
        double Xv(double t) => left + t / xTop * pw;
        double Yv(double v) => y0 + top + ph - v / yTop * ph;
        sb.Append(CultureInfo.InvariantCulture, $"  <g id=\"iops-chart\">\n");
        sb.Append(CultureInfo.InvariantCulture, $"    <text x=\"{W / 2}\" y=\"{F(y0 + 24)}\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{E("IOPS on the host over the experiment")}</text>\n");
        if (r.IoLoad?.Samples is { Length: > 0 } ls)
        {
            double t0 = Math.Max(0, (ls[0].Timestamp - r.StartTime).TotalSeconds - ls[0].IntervalSeconds), t1 = (ls[^1].Timestamp - r.StartTime).TotalSeconds;
            sb.Append(CultureInfo.InvariantCulture, $"    <rect x=\"{F(Xv(t0))}\" y=\"{F(y0 + top)}\" width=\"{F(Math.Max(1, Xv(t1) - Xv(t0)))}\" height=\"{F(ph)}\" fill=\"#f3eee0\"><title>{E($"I/O load: {r.IoLoad.Load} in {r.IoLoad.Guests.Count(g => g.IoLoaded)} guest(s)")}</title></rect>\n");
            sb.Append(CultureInfo.InvariantCulture, $"    <text x=\"{F(Xv(t0) + 4)}\" y=\"{F(y0 + top + 14)}\" font-size=\"11\" fill=\"#7a6a3a\">{E($"I/O load ({r.IoLoad.Load}, {r.IoLoad.Guests.Count(g => g.IoLoaded)} guest(s))")}</text>\n");
        }
        Axes(sb, "    ", left, y0 + top, pw, ph, (xStep, xTop), (yStep, yTop), "time since the experiment started (s)", "IOPS");
        for (int i = 0; i < series.Count; i++)
        {
            var points = string.Join(' ', series[i].Points.Select(p => $"{F(Xv(p.T))},{F(Yv(p.V))}"));
            sb.Append(CultureInfo.InvariantCulture, $"    <polyline fill=\"none\" stroke=\"{Colours[i % Colours.Length]}\" {Stroke(i)} stroke-linejoin=\"round\" points=\"{points}\"><title>{E(series[i].Label)}</title></polyline>\n");
        }
        sb.Append("    <g font-size=\"13\">\n");
        for (int i = 0; i < series.Count; i++)
        {
            double y = y0 + top + ph + 62 + 22 * i;
            var label = $"{series[i].Label}: peak {N(Math.Round(series[i].Points.Max(p => p.V), 1))}" + (series[i].Label.Contains("syscalls/s", StringComparison.Ordinal) ? "/s" : " IOPS");
            sb.Append(CultureInfo.InvariantCulture, $"      <line x1=\"{F(left)}\" y1=\"{F(y - 4)}\" x2=\"{F(left + 36)}\" y2=\"{F(y - 4)}\" stroke=\"{Colours[i % Colours.Length]}\" {Stroke(i)}/>\n");
            sb.Append(CultureInfo.InvariantCulture, $"      <text x=\"{F(left + 46)}\" y=\"{F(y)}\">{E(label)}</text>\n");
        }
        sb.Append("    </g>\n  </g>\n");
    }

    static readonly string[] Dashes = { "", "9 5", "3 4", "12 4 3 4" };

    static string Stroke(int i) => $"stroke-width=\"{(i == 0 ? 4 : 2.5).ToString(CultureInfo.InvariantCulture)}\"" + (Dashes[i % Dashes.Length].Length > 0 ? $" stroke-dasharray=\"{Dashes[i % Dashes.Length]}\"" : "");

    static string F(double d) => Math.Round(d, 1).ToString("0.#", CultureInfo.InvariantCulture);
    static string N(double d) => Math.Round(d, 6).ToString("0.##", CultureInfo.InvariantCulture);
    static string E(string s) => WebUtility.HtmlEncode(s);
}
