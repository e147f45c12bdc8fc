using System.Text.Json;
using KvmOvercommit.Cli;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Ksm;

public class KsmCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static string[] PublicNames<T>() => typeof(T).GetProperties().Select(p => p.Name).OrderBy(n => n, StringComparer.Ordinal).ToArray();

    static string[] JsonNames(JsonElement e) => e.EnumerateObject().Select(p => p.Name).OrderBy(n => n, StringComparer.Ordinal).ToArray();

    [SkippableFact]
    public void Stat_json_has_exactly_the_property_names_of_KsmStat()
    {
        Prereq.RequireKsm();
        var (code, output, err) = Run("ksm", "stat", "--json");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        Assert.Equal(PublicNames<KsmStat>(), JsonNames(doc.RootElement));
        Assert.Contains(doc.RootElement.GetProperty("Run").GetString(), new[] { "Stopped", "Merging", "Unmerging" });
        Assert.Equal(File.ReadAllText("/sys/kernel/mm/ksm/pages_to_scan").Trim(), doc.RootElement.GetProperty("PagesToScan").GetRawText());
    }

    [SkippableFact]
    public void Ps_json_is_an_array_of_KsmProcessStat_and_a_missing_id_is_reported()
    {
        Prereq.RequireKsm();
        var (code, output, err) = Run("ksm", "ps", "--all", "--json", "--id", Environment.ProcessId.ToString(), "999999999");
        Assert.Equal(3, code);
        Assert.StartsWith("KsmProcessNotFound: ", err);
        using var doc = JsonDocument.Parse(output);
        var obj = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement[0] : doc.RootElement;
        Assert.Equal(PublicNames<KsmProcessStat>(), JsonNames(obj));
        Assert.Equal(Environment.ProcessId, obj.GetProperty("Id").GetInt32());
    }

    [SkippableFact]
    public void Watch_streams_one_json_object_per_line()
    {
        Prereq.RequireKsm();
        var (code, output, err) = Run("ksm", "watch", "--json", "--count", "2", "--interval-seconds", "0.1");
        Assert.True(code == 0, err);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        for (int i = 0; i < 2; i++)
        {
            using var doc = JsonDocument.Parse(lines[i]);
            Assert.Equal(PublicNames<KsmSample>(), JsonNames(doc.RootElement));
            Assert.Equal(i + 1, doc.RootElement.GetProperty("Index").GetInt32());
            Assert.True(doc.RootElement.GetProperty("IntervalSeconds").GetDouble() > 0.05);
        }
    }

    [SkippableFact]
    public void Tune_what_if_writes_nothing_and_invalid_values_exit_2_with_the_error_id()
    {
        Prereq.RequireKsm();
        var before = File.ReadAllText("/sys/kernel/mm/ksm/pages_to_scan");
        var advisorOff = File.Exists("/sys/kernel/mm/ksm/advisor_mode") && File.ReadAllText("/sys/kernel/mm/ksm/advisor_mode").Contains("[none]");
        if (advisorOff)
        {
            var (code, output, err) = Run("ksm", "tune", "--profile", "Aggressive", "--what-if");
            Assert.True(code == 0, err);
            Assert.Contains("What if: echo 20000 > /sys/kernel/mm/ksm/pages_to_scan", output);
        }
        var bad = Run("ksm", "tune", "--max-page-sharing", "1");
        Assert.Equal(2, bad.Code);
        Assert.StartsWith("KsmInvalidValue: ", bad.Err);
        var none = Run("ksm", "tune");
        Assert.Equal(2, none.Code);
        Assert.StartsWith("KsmNothingToSet: ", none.Err);
        var badRun = Run("ksm", "tune", "--run", "sprint");
        Assert.Equal(2, badRun.Code);
        Assert.Equal(before, File.ReadAllText("/sys/kernel/mm/ksm/pages_to_scan"));
    }

    [Fact]
    public void Duration_accepts_seconds_and_time_spans()
    {
        Assert.Equal(TimeSpan.FromSeconds(30), Validation.ParseDuration("30"));
        Assert.Equal(TimeSpan.FromMinutes(5), Validation.ParseDuration("00:05:00"));
        Assert.Null(Validation.ParseDuration(null));
        Assert.Throws<KvmOcException>(() => Validation.ParseDuration("soon"));
    }

    [Theory]
    [InlineData("Stop", KsmRunState.Stopped)]
    [InlineData("merging", KsmRunState.Merging)]
    [InlineData("2", KsmRunState.Unmerging)]
    public void Run_words(string text, KsmRunState expected) => Assert.Equal(expected, KsmRunStateParser.Parse(text));
}
