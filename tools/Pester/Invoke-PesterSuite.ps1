<#
.SYNOPSIS
    Runs the Pester suite (or some of its files) in a pwsh of its own and writes Pester's counts as JSON.
.DESCRIPTION
    build.ps1 starts this under `flock /tmp/kvmoc-host-tests.lock` (the tests change KSM and start guests, as the
    xunit host tests do; a blocking flock waits its turn fairly), with KVMOC_MODULE and KVMOC_CLI set. The session is
    a plain one: none of build.ps1's strict mode or variables leak into the tests.
#>
param(
    [Parameter(Mandatory)] [string] $PesterModule,
    [Parameter(Mandatory)] [string[]] $Path,
    [Parameter(Mandatory)] [string] $ResultFile
)
$ErrorActionPreference = 'Stop'
if ([Console]::IsOutputRedirected) { $PSStyle.OutputRendering = 'PlainText' }
Import-Module $PesterModule -Force
$config = New-PesterConfiguration
$config.Run.Path = $Path
$config.Run.PassThru = $true
$config.Output.Verbosity = 'Normal'
$r = Invoke-Pester -Configuration $config
[ordered]@{
    Result = "$($r.Result)"; Passed = $r.PassedCount; Failed = $r.FailedCount; Skipped = $r.SkippedCount; NotRun = $r.NotRunCount
    Total = $r.TotalCount; Duration = $r.Duration.TotalSeconds
} | ConvertTo-Json | Set-Content -LiteralPath $ResultFile
if ($r.Result -ne 'Passed') { exit 1 }
