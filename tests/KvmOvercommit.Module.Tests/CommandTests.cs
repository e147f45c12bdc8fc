using System.Management.Automation;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// Checks generated from Get-Command over every exported cmdlet (a new cmdlet is covered as soon as it is exported):
/// naming, [OutputType] and its view, ShouldProcess and -PassThru, help from the real help system, and TimeSpan
/// parameters that take seconds.
/// </summary>
public class CommandTests(SessionFixture fx) : IClassFixture<SessionFixture>
{
    PwshSession S => fx.Session;

    static void NoProblems(IEnumerable<string> problems)
    {
        var list = problems.ToList();
        Assert.True(list.Count == 0, $"{list.Count} problem(s):\n  " + string.Join("\n  ", list));
    }

    List<CmdletInfo> Cmdlets() => S.Run("Get-Command -Module KvmOvercommit -CommandType Cmdlet").Ok().Output.Select(o => (CmdletInfo)o.BaseObject).ToList();

    static readonly HashSet<string> StateChangingVerbs = ["Set", "New", "Start", "Stop", "Remove", "Invoke", "Restart", "Clear", "Add", "Enable", "Disable", "Install", "Uninstall", "Update", "Register", "Unregister"];
    static readonly HashSet<string> PassThruVerbs = ["Set", "Start", "Stop"];
    static readonly HashSet<string> Common = [.. PSCmdlet.CommonParameters, .. PSCmdlet.OptionalCommonParameters];

    [Fact]
    public void EveryCmdletHasAnApprovedVerbAPrefixedNounAnOutputTypeWithAViewAndShouldProcessWhereItChangesTheHost()
    {
        var approved = S.Run("(Get-Verb).Verb").Ok().Output.Select(o => o.ToString()).ToHashSet(StringComparer.Ordinal);
        var builtIn = S.Run("Get-Command -Module Microsoft.PowerShell.* | ForEach-Object Noun").Ok().Output.Where(o => o is not null).Select(o => o.ToString()).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var viewed = S.Run("(Get-FormatData -TypeName 'KvmOvercommit.*', 'Deserialized.KvmOvercommit.*').TypeNames").Ok().Output.Select(o => o.ToString()).ToHashSet();
        var problems = new List<string>();
        var cmdlets = Cmdlets();
        Assert.True(cmdlets.Count >= 23, $"only {cmdlets.Count} cmdlets exported");
        foreach (var c in cmdlets)
        {
            if (!approved.Contains(c.Verb)) problems.Add($"{c.Name}: '{c.Verb}' is not an approved verb");
            if (builtIn.Contains(c.Noun)) problems.Add($"{c.Name}: the noun clashes with PowerShell's own cmdlets");
            if (!System.Text.RegularExpressions.Regex.IsMatch(c.Noun, "^(Ksm|Kvm|Qcow|Host|Md|Dnsmasq|Overcommit|Device|Process|Ansible)"))
                problems.Add($"{c.Name}: the noun has no product/area prefix");
            if (c.OutputType.Count == 0) problems.Add($"{c.Name}: no [OutputType]");
            foreach (var t in c.OutputType)
            {
                if (t.Type is null) problems.Add($"{c.Name}: [OutputType] names {t.Name}, which does not resolve to a type");
                else if (t.Type.FullName!.StartsWith("KvmOvercommit.") && !(viewed.Contains(t.Type.FullName) && viewed.Contains("Deserialized." + t.Type.FullName)))
                    problems.Add($"{c.Name}: output type {t.Type.FullName} lacks a table view for itself and for Deserialized.{t.Type.FullName}");
            }
            var shouldProcess = c.Parameters.ContainsKey("WhatIf");
            if (StateChangingVerbs.Contains(c.Verb) && !shouldProcess) problems.Add($"{c.Name}: changes state but has no SupportsShouldProcess");
            if (PassThruVerbs.Contains(c.Verb) && !c.Parameters.ContainsKey("PassThru")) problems.Add($"{c.Name}: a {c.Verb} cmdlet needs -PassThru");
        }
        NoProblems(problems);
    }

    [Fact]
    public void GetHelpShowsASynopsisEveryParameterAndAnExampleForEveryCmdlet()
    {
        var problems = new List<string>();
        foreach (var c in Cmdlets())
        {
            var help = S.Run("Get-Help -Name $args[0] -Full", [c.Name]).Ok().Output.Single();
            string Text(object? o) => o is null ? "" : (o is PSObject p ? p.BaseObject : o).ToString()!.Trim();
            var synopsis = Text(help.Properties["Synopsis"]?.Value);
            // With no MAML the help system makes a synopsis out of the syntax line.
            if (synopsis.Length == 0 || synopsis.StartsWith(c.Name + " ") || synopsis.StartsWith("\n")) problems.Add($"{c.Name}: no synopsis (got '{synopsis}')");
            var described = S.Run(
                "(Get-Help -Name $args[0] -Full).parameters.parameter | ForEach-Object { [pscustomobject]@{ Name = $_.name; Text = (@($_.description) | ForEach-Object Text) -join ' ' } }",
                [c.Name]).Ok().Output.ToDictionary(o => Text(o.Properties["Name"].Value), o => Text(o.Properties["Text"].Value));
            foreach (var p in c.Parameters.Keys.Where(p => !Common.Contains(p)))
                if (!described.TryGetValue(p, out var text) || text.Length == 0) problems.Add($"{c.Name}: -{p} has no description in Get-Help");
            var examples = S.Run("@((Get-Help -Name $args[0] -Full).examples.example) | ForEach-Object { ($_.code -join \"`n\") }", [c.Name]).Ok().Output.Select(o => o.ToString()).ToList();
            if (examples.Count == 0) problems.Add($"{c.Name}: no example");
            foreach (var (code, i) in examples.Select((x, i) => (x, i + 1)))
            {
                System.Management.Automation.Language.Parser.ParseInput(code, out _, out var errors);
                if (errors.Length > 0) problems.Add($"{c.Name}: example {i} does not parse: {errors[0].Message}");
                if (!code.Contains(c.Name, StringComparison.OrdinalIgnoreCase)) problems.Add($"{c.Name}: example {i} does not use {c.Name}");
            }
        }
        NoProblems(problems);
    }

    /// <summary>Help examples that run here as they are written (read-only, or -WhatIf); the others need a real KVM host, files or guests.</summary>
    public static readonly string[] RunnableExampleCmdlets = ["Get-KsmStat", "Get-HostMemory", "Get-HostCpu", "Get-OvercommitReport", "Get-KsmProcess", "Get-KvmGuest", "Get-KvmGuestMemory", "Get-MdRaid"];

    [Fact]
    public void HelpExamplesOfReadOnlyCmdletsRun()
    {
        var problems = new List<string>();
        foreach (var name in RunnableExampleCmdlets)
        {
            var examples = S.Run("@((Get-Help -Name $args[0] -Full).examples.example) | ForEach-Object { ($_.code -join \"`n\") }", [name]).Ok().Output.Select(o => o.ToString()).ToList();
            foreach (var (code, i) in examples.Select((x, i) => (x, i + 1)))
            {
                // Not run here: an elided example (…), remote hosts (-HostName), files, guests, QEMU processes or memory cgroups (-Cgroup) this host lacks.
                if (new[] { "…", "-HostName", "-Path", "./", "qemu", "kvm", "web", "win7", "-Cgroup" }.Any(x => code.Contains(x, StringComparison.OrdinalIgnoreCase) && !code.StartsWith("Get-KvmGuest", StringComparison.Ordinal))) continue;
                if (code.Contains("tiny1", StringComparison.Ordinal)) continue; // names the README's tiny guest, not running here
                var r = S.Run(code + " | Out-String -Width 120");
                foreach (var e in r.AllErrors) problems.Add($"{name}: example {i} `{code}`: {e.FullyQualifiedErrorId}: {e}");
            }
        }
        NoProblems(problems);
    }

    [Fact]
    public void EveryTimeSpanParameterTakesSecondsATimeSpanAndItsStringForm()
    {
        // The parameter's own transformation attributes, run by the engine's EngineIntrinsics, as the binder runs them.
        var problems = new List<string>();
        var intrinsics = (EngineIntrinsics)S.Run("$ExecutionContext").Ok().Output.Single().BaseObject;
        var found = 0;
        foreach (var c in Cmdlets())
            foreach (var p in c.Parameters.Values.Where(p => p.ParameterType == typeof(TimeSpan) || p.ParameterType == typeof(TimeSpan?)))
            {
                found++;
                var transforms = p.Attributes.OfType<ArgumentTransformationAttribute>().ToList();
                object? Bind(object input) => transforms.Aggregate(input, (v, t) => t.Transform(intrinsics, v));
                foreach (var (input, want) in new (object, TimeSpan)[] { (30, TimeSpan.FromSeconds(30)), (2.5, TimeSpan.FromSeconds(2.5)), ("45", TimeSpan.FromSeconds(45)), (TimeSpan.FromMinutes(2), TimeSpan.FromMinutes(2)) })
                {
                    object? got;
                    try { got = Bind(input); } catch (Exception e) { problems.Add($"{c.Name} -{p.Name} {input}: {e.Message}"); continue; }
                    TimeSpan bound;
                    try { bound = got is TimeSpan t ? t : LanguagePrimitives.ConvertTo<TimeSpan>(got); }
                    catch (PSInvalidCastException e) { problems.Add($"{c.Name} -{p.Name} {input}: {e.Message}"); continue; }
                    if (bound != want) problems.Add($"{c.Name} -{p.Name} {input} binds as {bound}, not {want}");
                }
            }
        Assert.True(found >= 3, $"only {found} TimeSpan parameters found");
        NoProblems(problems);
    }

    [Fact]
    public void NumbersOfSecondsBindForRealOnWatchKsmStat()
    {
        var r = S.Run("$t = [Diagnostics.Stopwatch]::StartNew(); $s = Watch-KsmStat -Duration 1 -IntervalSeconds 0.2; $t.Elapsed.TotalSeconds; $s.Count").Ok();
        // 30 ticks would end at once with no sample.
        Assert.InRange(Convert.ToDouble(r.Output[0].BaseObject), 0.75, 15);
        Assert.InRange(Convert.ToInt32(r.Output[1].BaseObject), 2, 6);
    }

    [Fact]
    public void StaggerSecondsTakesAutoBesideSecondsAndATimeSpanAndRefusesOtherWords()
    {
        // The parameter stays a double: Auto binds to the engine's Auto value through the transformation.
        Assert.Equal(typeof(double), S.Run("(Get-Command Start-KvmGuest).Parameters['StaggerSeconds'].ParameterType").Ok().Output.Single().BaseObject);
        S.Run("Invoke-OvercommitExperiment -TinyGuest -GuestCount 2 -Duration 30 -StaggerSeconds Auto -DeviceIopsCapacity 2000 -WhatIf").Ok();
        S.Run("Invoke-OvercommitExperiment -TinyGuest -GuestCount 2 -Duration 30 -StaggerSeconds auto -WhatIf").Ok();
        S.Run("Invoke-OvercommitExperiment -TinyGuest -GuestCount 2 -Duration 30 -StaggerSeconds 1.5 -WhatIf").Ok();
        S.Run("Invoke-OvercommitExperiment -TinyGuest -GuestCount 2 -Duration 30 -StaggerSeconds (New-TimeSpan -Seconds 90) -WhatIf").Ok();
        var word = S.Run("Invoke-OvercommitExperiment -TinyGuest -GuestCount 2 -Duration 30 -StaggerSeconds soon -WhatIf");
        var e = Assert.Single(word.AllErrors);
        Assert.StartsWith("ParameterArgumentTransformationError", e.FullyQualifiedErrorId);
        Assert.Contains("not a number of seconds, a TimeSpan or Auto", e.ToString());
        // [double]::NaN is a number, not Auto: the range rule refuses it.
        Assert.StartsWith("InvalidStagger,", Assert.Single(S.Run("Invoke-OvercommitExperiment -TinyGuest -GuestCount 2 -Duration 30 -StaggerSeconds ([double]::NaN) -WhatIf").AllErrors).FullyQualifiedErrorId);
        var capacity = Assert.Single(S.Run("Invoke-OvercommitExperiment -TinyGuest -GuestCount 2 -Duration 30 -StaggerSeconds Auto -DeviceIopsCapacity 0 -WhatIf").AllErrors);
        Assert.StartsWith("InvalidDeviceIopsCapacity,", capacity.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, capacity.CategoryInfo.Category);
        Assert.StartsWith("InvalidDeviceIopsCapacity,", Assert.Single(S.Run("Start-KvmGuest -DiskPath nothing.qcow2 -StaggerSeconds Auto -DeviceIopsCapacity -5 -WhatIf").AllErrors).FullyQualifiedErrorId);
    }

    [Fact]
    public void InvokeOvercommitExperimentDurationIsSeconds()
    {
        // -Duration 30 is 30 seconds (it was read as 30 ticks: "shorter than one sampling interval").
        var r = S.Run("Invoke-OvercommitExperiment -TinyGuest -GuestCount 1 -Duration 30 -WhatIf");
        Assert.True(r.Terminating is null && r.Errors.Count == 0, r.Describe());
    }
}
