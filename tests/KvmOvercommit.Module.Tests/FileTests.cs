using System.Management.Automation;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// Cmdlets on files and fixtures (qcow2 overlays in a temporary folder, lease and mdstat fixtures), run for real in a
/// runspace: the README's pipelines, documented errors as ErrorRecords, -WhatIf and -Confirm. Nothing here changes KSM
/// or starts a guest.
/// </summary>
public sealed class FileTests : IClassFixture<SessionFixture>, IDisposable
{
    readonly PwshSession S;
    readonly string _dir = Path.Combine(Path.GetTempPath(), "kvmoc-runspace-" + Guid.NewGuid().ToString("N")[..8]);

    public FileTests(SessionFixture fx)
    {
        S = fx.Session;
        Directory.CreateDirectory(_dir);
        using (var f = File.Create(Path.Combine(_dir, "base.raw"))) f.SetLength(64L << 20);
        File.WriteAllBytes(Path.Combine(_dir, "bad.qcow2"), [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
        S.Run("Set-Location -LiteralPath $args[0]", [_dir]).Ok();
        S.Set("fx", RepoPaths.Fixtures);
    }

    public void Dispose()
    {
        S.Run("Set-Location -LiteralPath $args[0]", [RepoPaths.Root]);
        Directory.Delete(_dir, true);
    }

    Dictionary<string, string> Snapshot() => Directory.GetFiles(_dir, "*", SearchOption.AllDirectories)
        .ToDictionary(f => f, f => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f))));

    [Fact]
    public void OverlaysPipeIntoGetQcowImageFromNamesAndFromGetChildItem()
    {
        var made = S.Run("1..3 | ForEach-Object { \"t$_.qcow2\" } | New-QcowOverlay -BackingPath base.raw").Ok().Output;
        Assert.Equal(3, made.Count);
        Assert.All(made, o => Assert.Equal("KvmOvercommit.Engine.Qcow.QcowImage", o.TypeNames[0]));
        var read = S.Run("Get-ChildItem *.qcow2 -Exclude bad.qcow2 | Get-QcowImage").Ok().Output;
        Assert.Equal(["t1.qcow2", "t2.qcow2", "t3.qcow2"], read.Select(o => Path.GetFileName((string)o.Properties["Path"].Value)).Order());
        Assert.All(read, o => Assert.Equal(Path.Combine(_dir, "base.raw"), o.Properties["BackingPath"].Value));
        Assert.Empty(S.Run("Get-QcowImage t*.qcow2 | Where-Object InUse | Select-Object Path, BackingFile").Ok().Output);
        Assert.Equal(3, S.Run("New-QcowOverlay t1.qcow2 -BackingPath base.raw -Force | Get-QcowImage; Get-Item t2.qcow2 | Get-QcowImage; Get-QcowImage -Path (Resolve-Path t3.qcow2)").Ok().Output.Count);
        ViewTests.CheckViews(S, "Get-QcowImage t*.qcow2");
    }

    [Fact]
    public void WhatIfWritesNothingAndConfirmAsksPerOverlay()
    {
        S.Run("New-QcowOverlay keep.qcow2 -BackingPath base.raw").Ok();
        var before = Snapshot();
        S.Run("New-QcowOverlay w.qcow2 -BackingPath base.raw -WhatIf; New-QcowOverlay keep.qcow2 -BackingPath base.raw -Force -WhatIf; 'w1.qcow2', 'w2.qcow2' | New-QcowOverlay -BackingPath base.raw -WhatIf").Ok();
        Assert.Equal(before, Snapshot());

        var host = new AnswerNoHost();
        using var confirm = new PwshSession(host);
        confirm.Run("Set-Location -LiteralPath $args[0]; 'c1.qcow2', 'c2.qcow2' | New-QcowOverlay -BackingPath base.raw -Confirm; New-QcowOverlay keep.qcow2 -BackingPath base.raw -Force -Confirm", [_dir]).Ok();
        Assert.Equal(3, host.Prompts);
        Assert.Equal(before, Snapshot());
    }

    /// <summary>Documented errors: id, category, terminating or not, and the cmdlet goes on with the next item where it should.</summary>
    public static TheoryData<string, string, ErrorCategory, bool> Errors() => new()
    {
        { "'a.qcow2', 'b.qcow2' | New-QcowOverlay -BackingPath base.raw", "QcowOverlayExists", ErrorCategory.ResourceExists, false },
        { "New-QcowOverlay x.qcow2 -BackingPath nope.raw", "QcowBackingNotFound", ErrorCategory.ObjectNotFound, true },
        { "New-QcowOverlay nodir/x.qcow2 -BackingPath base.raw", "QcowTargetFolderNotFound", ErrorCategory.ObjectNotFound, false },
        { "New-QcowOverlay base.raw -BackingPath base.raw -Force", "QcowOverlayIsOwnBacking", ErrorCategory.InvalidArgument, false },
        { "Get-QcowImage missing.qcow2", "QcowOpenFailed", ErrorCategory.ObjectNotFound, false },
        { "Get-QcowImage bad.qcow2", "QcowInvalidHeader", ErrorCategory.InvalidData, false },
        { "Get-QcowImage *.nomatch", "PathNotFound", ErrorCategory.ObjectNotFound, false },
        { "Get-DnsmasqLease -Path ./none.leases", "LeaseFileNotFound", ErrorCategory.ObjectNotFound, false },
        { "Get-MdRaid -Path ./none.mdstat", "MdStatNotReadable", ErrorCategory.ObjectNotFound, false },
        { "Get-KvmGuest -Name runspace-nosuch", "GuestNotFound", ErrorCategory.ObjectNotFound, false },
        { "Get-KvmGuestMemory -Name runspace-nosuch", "GuestNotFound", ErrorCategory.ObjectNotFound, false },
        { "Stop-KvmGuest -Name runspace-nosuch", "GuestNotFound", ErrorCategory.ObjectNotFound, false },
        { "Set-KvmGuestMemory -Name runspace-nosuch -TargetMB 64", "GuestNotFound", ErrorCategory.ObjectNotFound, false },
        { "Measure-KvmGuestIops -Name runspace-nosuch -Count 1", "GuestNotFound", ErrorCategory.ObjectNotFound, false },
        { "Get-KsmProcess -Id 999999", "KsmProcessNotFound", ErrorCategory.ObjectNotFound, false },
        { "Measure-ProcessIops -Id 999999 -Count 1", "ProcessNotFound", ErrorCategory.ObjectNotFound, true },
        { "Measure-DeviceIops -Device nosuch -Count 1", "DeviceNotFound", ErrorCategory.ObjectNotFound, true },
        { "Start-KvmGuest -DiskPath missing.qcow2 -WhatIf", "DiskNotFound", ErrorCategory.ObjectNotFound, false },
        { "Start-KvmGuest -DiskPath a.qcow2 -Initrd x -WhatIf", "KernelRequired", ErrorCategory.InvalidArgument, false },
        { "Invoke-OvercommitExperiment -TinyGuest -GuestCount 1 -Duration 00:00:01 -WhatIf", "ExperimentInvalidDuration", ErrorCategory.InvalidArgument, true },
        { "Set-KsmTuning -PagesToScan -5 -WhatIf", "KsmInvalidValue", ErrorCategory.InvalidArgument, true },
    };

    [Theory]
    [MemberData(nameof(Errors))]
    public void DocumentedErrorsArriveAsErrorRecords(string script, string id, ErrorCategory category, bool terminating)
    {
        S.Run("New-QcowOverlay a.qcow2 -BackingPath base.raw -Force").Ok();
        // A terminating error ends the statement: catch it there, so it is told apart from the error stream.
        var r = S.Run($"$global:kvmocTerminating = $null; try {{ {script} }} catch {{ $global:kvmocTerminating = $_ }}");
        var thrown = S.Get("kvmocTerminating") is PSObject t ? (ErrorRecord)t.BaseObject : (ErrorRecord?)S.Get("kvmocTerminating");
        r = r with { Terminating = thrown };
        var mine = r.AllErrors.Where(e => e.FullyQualifiedErrorId.StartsWith(id + ",KvmOvercommit.Commands.", StringComparison.Ordinal)).ToList();
        Assert.True(mine.Count == 1, $"expected one {id}, got:\n{r.Describe()}");
        var e = mine[0];
        Assert.Equal(category, e.CategoryInfo.Category);
        Assert.NotNull(e.TargetObject);
        Assert.False(string.IsNullOrWhiteSpace(e.ErrorDetails?.RecommendedAction), $"{id} has no RecommendedAction");
        Assert.Equal(terminating, ReferenceEquals(e, r.Terminating));
        Assert.Equal("KvmOcException", e.Exception.GetType().Name);
        Assert.Equal(r.AllErrors.Count(), mine.Count); // nothing else went wrong (no other exception escaped)
        if (script.StartsWith("'a.qcow2', 'b.qcow2'")) Assert.True(File.Exists(Path.Combine(_dir, "b.qcow2")), "the next overlay was not made after the error");
    }

    [Fact]
    public void NoOtherExceptionEscapesOnHostileInput()
    {
        // Inputs the binder accepts but the engine must refuse with its own errors, not with a .NET exception.
        var scripts = new[]
        {
            "Get-QcowImage -Path ''", "Get-QcowImage -Path /", "Get-QcowImage -Path /proc/self/mem", "Get-DnsmasqLease -Path /",
            "Get-MdRaid -Path /", "Get-MdRaid -Path bad.qcow2", "Get-DnsmasqLease -Path bad.qcow2", "New-QcowOverlay -Path '' -BackingPath base.raw",
            "New-QcowOverlay -Path x.qcow2 -BackingPath /", "Get-KvmGuest -Name '['", "Get-KsmProcess -Name '['", "Measure-DeviceIops -Device '[' -Count 1",
            "ConvertTo-AnsibleInventory -HostName '' -IPAddress ''", "Start-KvmGuest -DiskPath / -WhatIf",
        };
        var problems = new List<string>();
        foreach (var s in scripts)
            foreach (var e in S.Run(s).AllErrors)
            {
                var id = e.FullyQualifiedErrorId.Split(',')[0];
                if (id.Contains("Exception") || e.Exception is NullReferenceException or InvalidCastException or IndexOutOfRangeException or ArgumentOutOfRangeException)
                    problems.Add($"{s}: {e.FullyQualifiedErrorId}: {e.Exception.GetType().FullName}: {e.Exception.Message}");
            }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void LeasesPipeIntoTheAnsibleInventoryAlsoAsDeserializedCopies()
    {
        var live = S.Run("Get-DnsmasqLease -Path $fx/fleet/dnsmasq.leases -WarningAction SilentlyContinue | ConvertTo-AnsibleInventory").Ok().Output.Single().ToString();
        Assert.Contains("win7-01", live);
        Assert.Contains("192.168.122.10", live);
        var copied = S.Run("Get-DnsmasqLease -Path $fx/fleet/dnsmasq.leases -WarningAction SilentlyContinue | ForEach-Object { [System.Management.Automation.PSSerializer]::Deserialize([System.Management.Automation.PSSerializer]::Serialize($_)) } | ConvertTo-AnsibleInventory").Ok().Output.Single().ToString();
        Assert.Equal(live, copied);
        var grouped = S.Run("Get-DnsmasqLease -Path $fx/fleet/dnsmasq.leases -WarningAction SilentlyContinue | ConvertTo-AnsibleInventory -GroupBy '^(?<group>[a-z0-9]+)-' -User admin").Ok().Output.Single().ToString();
        Assert.Contains("[win7]", grouped);
        Assert.Contains("ansible_user=admin", grouped);
        var json = S.Run("Get-DnsmasqLease -Path $fx/fleet/dnsmasq.leases -WarningAction SilentlyContinue | ConvertTo-AnsibleInventory -Format Json -GroupMap @{ 'win7-*' = 'windows' } | ConvertFrom-Json").Ok().Output.Single();
        Assert.NotNull(json.Properties["windows"]);
        var byFile = S.Run("Get-ChildItem $fx/fleet/*.leases | Get-DnsmasqLease -WarningAction SilentlyContinue").Ok().Output;
        Assert.True(byFile.Count >= 8, $"{byFile.Count} leases from Get-ChildItem | Get-DnsmasqLease");
        Assert.NotEmpty(S.Run("Get-MdRaid -Path $fx/host/mdstat-degraded | Where-Object Degraded").Ok().Output);
    }

    [Fact]
    public void GetProcessPipesIntoGetKsmProcessAndMeasureProcessIops()
    {
        S.Run("Get-Process | Get-KsmProcess -ErrorAction SilentlyContinue").Ok();
        var r = S.Run("Get-Process -Id $PID | Get-KsmProcess -All").Ok();
        Assert.Equal(Environment.ProcessId, Convert.ToInt32(r.Output.Single().Properties["Id"].Value));
        var io = S.Run("Get-Process -Id $PID | Measure-ProcessIops -Count 1 -IntervalSeconds 0.2").Ok();
        Assert.Equal(Environment.ProcessId, Convert.ToInt32(io.Output.Single().Properties["Id"].Value));
    }
}
