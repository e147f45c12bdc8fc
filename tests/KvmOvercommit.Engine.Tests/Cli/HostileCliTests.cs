using System.CommandLine;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Qemu;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Cli;

/// <summary>
/// Hostile input for kvmoc (issue 12): generated over the whole command tree, so a new command or option is covered
/// without a new test. Every option misspelled by one letter, and an unknown option, put where a positional path or
/// name would take it: exit 2, an UnknownOption line with "Did you mean", nothing else printed, and nothing changed
/// (the temp folder's files, KSM's settings, the QEMU processes). Every numeric option with NaN, ±Infinity, 0, -1 and
/// its type's min and max: a clean error (an error id, exit 2) or a valid run, never "Unexpected", exit 70 or a stack
/// trace. HostSerial: the runs compare KSM's settings before and after.
/// </summary>
[Collection(HostSerialCollection.Name)]
public sealed class HostileCliTests : IDisposable
{
    readonly TempDir _dir = new("kvmoc hostile");
    readonly string _base, _image, _target;

    public HostileCliTests()
    {
        _base = _dir.File("base.qcow2");
        _image = _dir.File("image.qcow2");
        _target = _dir.File("new.qcow2");
        Assert.Equal(0, Kvmoc.Run("qcow", "overlay", "-b", MakeRaw(_dir.File("disk.raw")), "--backing-format", "raw", _base).Code);
        Assert.Equal(0, Kvmoc.Run("qcow", "overlay", "-b", _base, _image).Code);
    }

    static string MakeRaw(string path)
    {
        using (var f = File.Create(path)) f.SetLength(1 << 20);
        return path;
    }

    public void Dispose() => _dir.Dispose();

    /// <summary>Every command that runs something (not the groups), as its path of names.</summary>
    internal static List<(string[] Path, Command Command)> LeafCommands()
    {
        var list = new List<(string[], Command)>();
        void Walk(Command c, string[] path)
        {
            foreach (var s in c.Subcommands)
            {
                var p = path.Append(s.Name).ToArray();
                if (s.Action is not null) list.Add((p, s));
                Walk(s, p);
            }
        }
        Walk(KvmOvercommit.Cli.Program.BuildRoot(TextWriter.Null, TextWriter.Null), Array.Empty<string>());
        return list;
    }

    static IEnumerable<Option> OptionsOf(Command c) => c.Options.Concat(new Option[] { KvmOvercommit.Cli.CliGlobal.Json, KvmOvercommit.Cli.CliGlobal.Verbose }).Distinct();

    static HashSet<string> Spellings(Command c) => OptionsOf(c).SelectMany(o => o.Aliases.Prepend(o.Name)).Concat(new[] { "--help", "-h", "-?" }).ToHashSet(StringComparer.Ordinal);

    /// <summary>Arguments that make each command valid (with --what-if where it changes the host), so that a misspelling is the only fault.</summary>
    string[] Baseline(string command, bool whatIf)
    {
        var run = _dir.File("run");
        var ksmPages = (KsmStatReader.IsAvailable(HostRoots.Default) ? KsmStatReader.Read().PagesToScan ?? 100 : 100) + 7;
        return command switch
        {
            "qcow info" => new[] { _image },
            "qcow overlay" => whatIf ? new[] { "-b", _base, "--what-if", _target } : new[] { "-b", _base, _target },
            "guest start" => new[] { _image, "--what-if", "--accelerator", "Tcg", "--no-vnc", "--network", "None", "--memory-mb", "64", "--run-directory", run },
            "guest stop" => new[] { "hostile-no-such-guest", "--what-if", "--run-directory", run },
            "guest memory" => new[] { "hostile-no-such-guest", "--target-mb", "100", "--what-if" },
            "guest list" or "guest iops" => new[] { "hostile-no-such-guest" },
            "host mdstat" => new[] { "md-hostile" },
            "ksm tune" => whatIf ? new[] { "--pages-to-scan", ksmPages.ToString(), "--what-if" } : new[] { "--pages-to-scan", ksmPages.ToString() },
            "ksm workload" => new[] { "--size-mb", "1", "--hold-seconds", "0.3" },
            "ksm autotune" => new[] { "--duration", "1", "--quiet" },
            "ksm watch" or "iops" => new[] { "--count", "1", "--interval-seconds", "0.05" },
            "process-iops" => new[] { "--id", Environment.ProcessId.ToString(), "--count", "1", "--interval-seconds", "0.05" },
            "report" => new[] { "--skip-disk-images", "--iops-sample-seconds", "0" },
            "experiment" => new[] { "--what-if", "--guest-count", "1", "--run-directory", run, "--work-directory", _dir.File("work") },
            "leases" => new[] { "--path", Fixture.PathOf("fleet/dnsmasq.leases") },
            "inventory" => new[] { "--lease-file", Fixture.PathOf("fleet/dnsmasq.leases") },
            _ => Array.Empty<string>(),
        };
    }

    /// <summary>Two spellings one letter away from <paramref name="name"/> (a letter dropped; the last letter doubled; a short option's letter changed) that the command does not accept.</summary>
    static IEnumerable<string> Misspellings(string name, HashSet<string> valid)
    {
        var v = new List<string>();
        if (name.StartsWith("--", StringComparison.Ordinal) && name.Length > 3)
        {
            int at = 2 + (name.Length - 2) / 2;
            v.Add(name.Remove(at, 1));
            v.Add(name + name[^1]);
        }
        else if (name.Length == 2 && char.IsLetter(name[1]))
        {
            for (char c = 'a'; c <= 'z'; c++)
                if (c != char.ToLowerInvariant(name[1]) && !valid.Contains("-" + c)) { v.Add("-" + c); break; }
        }
        return v.Where(s => !valid.Contains(s) && !double.TryParse(s, out _)).Distinct();
    }

    sealed record HostState(string Files, string Ksm, string Qemu);

    HostState Snapshot()
    {
        var files = string.Join("\n", Directory.EnumerateFileSystemEntries(_dir.Path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(f => File.Exists(f) ? $"{f} {Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)))}" : f + "/"));
        var ksm = KsmStatReader.IsAvailable(HostRoots.Default) ? string.Join(", ", KsmTuning.FromStat(KsmStatReader.Read()).Differences(new KsmTuning())) : "";
        var qemu = string.Join(",", new QemuProcessScanner().Scan().Select(g => g.Id).Order());
        return new HostState(files, ksm, qemu);
    }

    static readonly Regex StackFrame = new(@"^\s+at \S+", RegexOptions.Multiline);

    static void AssertClean(string what, (int Code, string Out, string Err) r)
    {
        Assert.False(r.Err.Contains("Unexpected", StringComparison.Ordinal), $"{what}: {r.Err}");
        Assert.False(r.Err.Contains("Unhandled exception", StringComparison.Ordinal), $"{what}: {r.Err}");
        Assert.False(StackFrame.IsMatch(r.Err) || StackFrame.IsMatch(r.Out), $"{what}: a stack trace\n{r.Err}\n{r.Out}");
        Assert.NotEqual(70, r.Code);
    }

    [SkippableFact]
    public void Every_misspelled_or_unknown_option_of_every_command_is_exit_2_and_changes_nothing()
    {
        Prereq.RequireKsm();
        var commands = LeafCommands();
        Assert.True(commands.Count >= 23, $"only {commands.Count} commands");
        int cases = 0;
        var before = Snapshot();
        foreach (var (path, command) in commands)
        {
            var name = string.Join(' ', path);
            var valid = Spellings(command);
            var tokens = OptionsOf(command).SelectMany(o => o.Aliases.Prepend(o.Name)).Distinct()
                .SelectMany(a => Misspellings(a, valid).Select(m => (Token: m, Near: a)))
                .Append((Token: "--hostile-no-such-option", Near: (string?)null)).ToList();
            foreach (var (token, near) in tokens)
            {
                // Right after the command, before the paths and names: where a positional argument would take it.
                var args = path.Append(token).Concat(Baseline(name, whatIf: false)).ToArray();
                var what = "kvmoc " + string.Join(' ', args);
                var r = Kvmoc.Run(args);
                cases++;
                AssertClean(what, r);
                Assert.True(r.Code == 2, $"{what}: exit {r.Code}\n{r.Err}\n{r.Out}");
                Assert.Equal("", r.Out);
                Assert.Contains($"UnknownOption: 'kvmoc {name}' has no option '{token}'; nothing was done.", r.Err);
                if (near is not null) Assert.Contains("Did you mean", r.Err);
            }
        }
        Assert.Equal(before, Snapshot());
        Assert.True(cases > 200, $"only {cases} cases");
    }

    [SkippableFact]
    public void A_dash_token_after_double_dash_is_a_path_not_an_option()
    {
        var odd = _dir.File("-odd.qcow2");
        var r = Kvmoc.Run("qcow", "overlay", "-b", _base, "--", "-odd.qcow2");
        Assert.Equal(2, Kvmoc.Run("qcow", "overlay", "-b", _base, "-odd.qcow2").Code);
        // relative to the working directory: run from the temp folder
        var cwd = Environment.CurrentDirectory;
        try
        {
            Environment.CurrentDirectory = _dir.Path;
            r = Kvmoc.Run("qcow", "overlay", "-b", _base, "--", "-odd.qcow2");
        }
        finally { Environment.CurrentDirectory = cwd; }
        Assert.True(r.Code == 0, r.Err);
        Assert.True(File.Exists(odd));
    }

    [Fact]
    public void Positional_arguments_have_the_cmdlet_parameter_names_as_options()
    {
        // Start-KvmGuest -DiskPath, New-QcowOverlay/Get-QcowImage -Path, Stop-KvmGuest/Get-KvmGuest -Name, Get-MdRaid -Name
        var r = Kvmoc.Run("guest", "start", "--disk-path", _image, "--what-if", "--accelerator", "Tcg", "--no-vnc", "--network", "None");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("What if: Start QEMU guest 'image'", r.Err);
        r = Kvmoc.Run("qcow", "info", "--path", _image, "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("\"Format\": \"qcow2\"", r.Out);
        r = Kvmoc.Run("qcow", "overlay", "-b", _base, "--path", _target, "--what-if");
        Assert.True(r.Code == 0, r.Err);
        Assert.False(File.Exists(_target));
        Assert.Equal(3, Kvmoc.Run("guest", "stop", "--name", "hostile-no-such-guest").Code);
        Assert.Equal(2, Kvmoc.Run("guest", "stop").Code);
        Assert.Equal(2, Kvmoc.Run("qcow", "info").Code);
        foreach (var help in new[] { new[] { "guest", "start", "--help" }, new[] { "qcow", "overlay", "--help" }, new[] { "guest", "stop", "--help" } })
            Assert.Contains("as the positional", Kvmoc.Run(help).Out);
    }

    static readonly string[] NumericTypes = { "Int32", "Int64", "Double" };

    static bool IsNumeric(Option o) => NumericTypes.Contains((Nullable.GetUnderlyingType(o.ValueType) ?? o.ValueType).Name)
        || o.ValueType == typeof(string) && o.Name is "--duration";

    static string[] HostileNumbers(Option o) => (Nullable.GetUnderlyingType(o.ValueType) ?? o.ValueType).Name switch
    {
        "Int32" => new[] { "NaN", "Infinity", "-Infinity", "0", "-1", int.MinValue.ToString(), int.MaxValue.ToString() },
        "Int64" => new[] { "NaN", "Infinity", "-Infinity", "0", "-1", long.MinValue.ToString(), long.MaxValue.ToString() },
        _ => new[] { "NaN", "Infinity", "-Infinity", "0", "-1", "-1.7976931348623157E+308", "1.7976931348623157E+308", "1e300", "0.001" },
    };

    [SkippableFact]
    public void Every_numeric_option_takes_NaN_infinities_zero_minus_one_min_and_max_cleanly()
    {
        Prereq.RequireKsm();
        using var guard = new KsmSettingsGuard();
        int cases = 0, refused = 0;
        var before = Snapshot();
        foreach (var (path, command) in LeafCommands())
        {
            var name = string.Join(' ', path);
            foreach (var o in command.Options.Where(IsNumeric))
            {
                foreach (var value in HostileNumbers(o))
                {
                    var baseline = Baseline(name, whatIf: true).ToList();
                    int at = baseline.IndexOf(o.Name);
                    if (at >= 0) baseline.RemoveRange(at, 2);
                    var args = path.Concat(baseline).Append(o.Name).Append(value).ToArray();
                    var what = "kvmoc " + string.Join(' ', args);
                    using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                    var o2 = new StringWriter();
                    var e2 = new StringWriter();
                    var task = Task.Run(() => KvmOvercommit.Cli.Program.Run(args, o2, e2, cancel.Token));
                    Assert.True(task.Wait(TimeSpan.FromSeconds(30)), $"{what}: did not end 30 s after being cancelled");
                    var r = (task.Result, o2.ToString(), e2.ToString());
                    cases++;
                    AssertClean(what, r);
                    if (r.Item1 == 2)
                    {
                        refused++;
                        Assert.Matches(@"^[A-Z][A-Za-z0-9]+: ", r.Item3);
                    }
                    else Assert.True(r.Item1 is 0 or 1 or 3 or 130, $"{what}: exit {r.Item1}\n{r.Item3}");
                }
            }
        }
        // Files and QEMU processes as they were; KSM may differ by a documented valid run (autotune --duration 0.001
        // starts ksmd and leaves it merging at the low rate), and the guard restores it.
        var after = Snapshot();
        Assert.Equal(before.Files, after.Files);
        Assert.Equal(before.Qemu, after.Qemu);
        Assert.True(cases > 150, $"only {cases} cases");
        Assert.True(refused > cases / 2, $"only {refused} of {cases} refused");
    }

    [Theory]
    [InlineData("ksm watch --interval-seconds NaN", "InvalidInterval")]
    [InlineData("ksm watch --interval-seconds 0.001", "InvalidInterval")]
    [InlineData("ksm watch --duration NaN", "InvalidDuration")]
    [InlineData("ksm watch --duration 1e300", "InvalidDuration")]
    [InlineData("ksm watch --duration 0", "InvalidDuration")]
    [InlineData("ksm watch --duration -5", "InvalidDuration")]
    [InlineData("ksm watch --stable-samples 0", "InvalidStableSamples")]
    [InlineData("ksm watch --count 0", "InvalidCount")]
    [InlineData("ksm autotune --duration NaN", "InvalidDuration")]
    [InlineData("ksm autotune --duration 1e300", "InvalidDuration")]
    [InlineData("ksm autotune --duration -1", "InvalidDuration")]
    [InlineData("experiment --what-if --duration 1e300", "InvalidDuration")]
    [InlineData("experiment --what-if --interval-seconds Infinity", "InvalidInterval")]
    [InlineData("experiment --what-if --stagger-seconds -1", "InvalidStagger")]
    [InlineData("experiment --what-if --stagger-seconds soon", "InvalidStagger")]
    [InlineData("experiment --what-if --stagger-seconds auto --device-iops-capacity 0", "InvalidDeviceIopsCapacity")]
    [InlineData("experiment --what-if --device-iops-capacity NaN", "InvalidDeviceIopsCapacity")]
    [InlineData("guest start --stagger-seconds sometime --what-if", "InvalidStagger")]
    [InlineData("guest start --stagger-seconds auto --device-iops-capacity -3 --what-if", "InvalidDeviceIopsCapacity")]
    [InlineData("iops --interval-seconds NaN", "InvalidInterval")]
    [InlineData("iops --interval-seconds 0.001", "InvalidInterval")]
    [InlineData("iops --count 3 --continuous", "CountWithContinuous")]
    [InlineData("guest iops --count 3 --continuous", "CountWithContinuous")]
    [InlineData("guest start --stagger-seconds -1 --what-if", "InvalidStagger")]
    [InlineData("guest start --timeout-seconds 0 --what-if", "InvalidTimeout")]
    [InlineData("guest stop g1 --timeout-seconds 0", "InvalidTimeout")]
    [InlineData("guest memory g1 --target-mb 64 --timeout-seconds 0", "InvalidTimeout")]
    public void Hostile_numbers_are_their_error_ids_with_exit_2(string line, string errorId)
    {
        var r = Kvmoc.Run(line.Split(' '));
        AssertClean(line, r);
        Assert.True(r.Code == 2, $"{line}: exit {r.Code}: {r.Err}");
        Assert.StartsWith(errorId + ": ", r.Err);
        Assert.DoesNotMatch(@"(^|[\s(])-[A-Z][a-z]", r.Err); // kvmoc's option names (--interval-seconds), not pwsh's (-IntervalSeconds)
    }

    [Fact]
    public void Sizes_near_long_MaxValue_are_QcowSizeTooLarge_also_with_what_if()
    {
        foreach (var size in new[] { long.MaxValue.ToString(), "9223372036854775296", (QcowOverlayWriterLimits.Max64K + 1).ToString() })
            foreach (var whatIf in new[] { true, false })
            {
                var args = new List<string> { "qcow", "overlay", "-b", _base, "--size-bytes", size, _target };
                if (whatIf) args.Add("--what-if");
                var r = Kvmoc.Run(args.ToArray());
                AssertClean(string.Join(' ', args), r);
                Assert.Equal(2, r.Code);
                Assert.StartsWith("QcowSizeTooLarge: ", r.Err);
                Assert.DoesNotContain("WARNING", r.Err);
                Assert.DoesNotContain("-SizeBytes", r.Err);
                Assert.DoesNotContain("What if", r.Out);
                Assert.False(File.Exists(_target));
            }
        // The largest a 64 KiB-cluster image holds is fine (qemu-img's limit too).
        var ok = Kvmoc.Run("qcow", "overlay", "-b", _base, "--size-bytes", QcowOverlayWriterLimits.Max64K.ToString(), "--what-if", _target);
        Assert.True(ok.Code == 0, ok.Err);
    }

    [Fact]
    public void A_bogus_backing_format_with_a_size_is_not_QcowBackingSizeUnknown()
    {
        var r = Kvmoc.Run("qcow", "overlay", "-F", "bogus", "--size-bytes", "1048576", "-b", _base, _target);
        Assert.Equal(2, r.Code);
        Assert.StartsWith("QcowBadBackingFormat: ", r.Err);
        Assert.DoesNotContain("SizeBytes", r.Err);
        Assert.DoesNotContain("size-bytes", r.Err);
        Assert.False(File.Exists(_target));
    }

    [Fact]
    public void Messages_name_kvmoc_options_not_pwsh_parameters()
    {
        var exists = Kvmoc.Run("qcow", "overlay", "-b", _base, _image);
        Assert.Equal(5, exists.Code);
        Assert.Contains("Hint: Use --force to replace it.", exists.Err);
        var small = Kvmoc.Run("experiment", "--what-if", "--memory-mb", "8");
        Assert.Equal(2, small.Code);
        Assert.Contains("--memory-mb 8", small.Err);
        Assert.DoesNotContain("-MemoryMB", small.Err);
        var text = KvmOvercommit.Cli.CliText.For(KvmOvercommit.Cli.Program.BuildRoot(TextWriter.Null, TextWriter.Null));
        Assert.Equal("Pass --size-bytes.", text.Rewrite("Pass -SizeBytes."));
        Assert.Equal("Choose another --name, or kvmoc guest stop it first.", text.Rewrite("Choose another -Name, or Stop-KvmGuest it first."));
        Assert.Equal("Give --disk-path, or --kernel/--initrd (kvmoc guest start --tiny --name t1).", text.Rewrite("Give -DiskPath, or -Kernel/-Initrd (Get-KvmTinyGuest | Start-KvmGuest -Name t1)."));
        Assert.Equal("Pass the lease file with --path / --lease-file; x", text.Rewrite("Pass the lease file with -Path (kvmoc: --path / --lease-file); x"));
        Assert.Equal("'/tmp/a -Force/b' exists; use --force", text.Rewrite("'/tmp/a -Force/b' exists; use -Force"));
        Assert.Equal("QEMU's -device stays", text.Rewrite("QEMU's -device stays"));
    }

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NegativeInfinity)]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.MaxValue)]
    [InlineData(double.MinValue)]
    [InlineData(1e300)]
    [InlineData(366 * 86400.0)]
    public void Validation_refuses_hostile_seconds_with_its_own_ids(double seconds)
    {
        Assert.Equal("InvalidDuration", Assert.Throws<KvmOcException>(() => Validation.DurationSeconds(seconds)).ErrorId);
        Assert.Equal("InvalidInterval", Assert.Throws<KvmOcException>(() => Validation.IntervalSeconds(seconds)).ErrorId);
        if (seconds is not 0.0) Assert.Equal("InvalidStagger", Assert.Throws<KvmOcException>(() => Validation.StaggerSeconds(seconds)).ErrorId);
        Assert.All(new[] { ErrorKind.InvalidArgument }, k => Assert.Equal(k, Assert.Throws<KvmOcException>(() => Validation.DurationSeconds(seconds)).Kind));
    }

    [Fact]
    public void Validation_accepts_the_documented_ranges()
    {
        Assert.Equal(TimeSpan.FromSeconds(1.5), Validation.StaggerSeconds(1.5));
        Assert.Equal(TimeSpan.Zero, Validation.StaggerSeconds(0));
        Assert.Equal(TimeSpan.FromMilliseconds(10), Validation.IntervalSeconds(0.01));
        Assert.Equal(TimeSpan.FromDays(365), Validation.DurationSeconds(365 * 86400.0));
        Assert.Equal(TimeSpan.FromMinutes(5), Validation.ParseDuration("00:05:00"));
        Assert.Null(Validation.Duration(null));
        Assert.Null(Validation.Count(null));
        Assert.Equal("InvalidCount", Assert.Throws<KvmOcException>(() => Validation.Count(0)).ErrorId);
        Assert.Equal("InvalidTimeout", Assert.Throws<KvmOcException>(() => Validation.TimeoutSeconds(0)).ErrorId);
        Assert.Equal("InvalidTimeout", Assert.Throws<KvmOcException>(() => Validation.TimeoutSeconds(3601)).ErrorId);
        Assert.Equal("InvalidStableSamples", Assert.Throws<KvmOcException>(() => Validation.StableSamples(1001)).ErrorId);
        Assert.Equal("CountWithContinuous", Assert.Throws<KvmOcException>(() => Validation.CountOrContinuous(true, true)).ErrorId);
        Validation.CountOrContinuous(true, false);
        // the engine operations apply the same rules to their options
        Assert.Equal("InvalidDuration", Assert.Throws<KvmOcException>(() => KsmWatcher.Validate(new KsmWatchOptions { Duration = TimeSpan.Zero })).ErrorId);
        Assert.Equal("InvalidDuration", Assert.Throws<KvmOcException>(() => KvmOvercommit.Engine.Ksm.AutoTune.KsmAutoTuner.Describe(new() { Duration = TimeSpan.FromSeconds(-1) })).ErrorId);
    }

    [Fact]
    public void Qcow_size_limits_never_overflow()
    {
        foreach (int cs in new[] { 4096, 65536, 2 * 1024 * 1024 })
        {
            long max = KvmOvercommit.Engine.Qcow.QcowOverlayWriter.MaxVirtualSize(cs);
            Assert.True(max > 0 && max % 512 == 0, $"{cs}: {max}");
        }
        Assert.Equal(8L << 40, KvmOvercommit.Engine.Qcow.QcowOverlayWriter.MaxVirtualSize(4096));
    }

    [Fact]
    public void Typo_suggestions_are_one_or_two_letters_away()
    {
        Assert.Equal(new[] { "--what-if" }, KvmOvercommit.Cli.CliUsage.Suggest("--what-iff", new[] { "--what-if", "--force", "--json" }));
        Assert.Equal(new[] { "--duration" }, KvmOvercommit.Cli.CliUsage.Suggest("--dura", new[] { "--duration", "--count" }));
        Assert.Empty(KvmOvercommit.Cli.CliUsage.Suggest("--zzzzzz", new[] { "--duration", "--count" }));
        Assert.Equal(1, KvmOvercommit.Cli.CliUsage.Distance("--jsno", "--json"));
    }
}

/// <summary>qcow2's size limits as the engine computes them (without overflow).</summary>
static class QcowOverlayWriterLimits
{
    public static long Max64K => KvmOvercommit.Engine.Qcow.QcowOverlayWriter.MaxVirtualSize(65536);
}
