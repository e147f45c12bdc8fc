<#
.SYNOPSIS
    Builds, tests, packages and runs KvmOvercommit (the same tasks as build.sh, for hosts with pwsh).
.DESCRIPTION
    Build      builds the solution.
    Test       builds, packages, runs the parse gate, every xunit test project, then the Pester acceptance tests
               (tests/acceptance/*.Tests.ps1) against the packaged module; ends with "Total: N passed, N failed, N skipped".
    Package    makes an importable module folder: out/KvmOvercommit/<version>/.
    Publish    compiles kvmoc ahead of time (Native AOT): out/kvmoc/kvmoc, one native executable; Test builds it and
               tests it against the JIT build.
    Experiment runs `kvmoc experiment` with the remaining arguments (none: 4 tiny guests, profiles Default, Aggressive,
               Adaptive, 60 s each, the report in out/experiment/<UTC time>/).
.EXAMPLE
    ./build.ps1 -Task Test
.EXAMPLE
    ./build.ps1 -Task Experiment -- --json
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Package', 'Publish', 'Experiment')]
    [string] $Task = 'Build',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',

    [Parameter(ValueFromRemainingArguments = $true)]
    [string[]] $Arguments = @()
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
Set-Location -LiteralPath $PSScriptRoot
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'

$ModuleBin = Join-Path $PSScriptRoot "src/KvmOvercommit/bin/$Configuration/net8.0"
$CliDll = Join-Path $PSScriptRoot "src/KvmOvercommit.Cli/bin/$Configuration/net10.0/kvmoc.dll"
$HelpGenDll = Join-Path $PSScriptRoot "tools/KvmOvercommit.HelpGen/bin/$Configuration/net10.0/KvmOvercommit.HelpGen.dll"
$Manifest = Import-PowerShellDataFile -LiteralPath (Join-Path $PSScriptRoot 'module/KvmOvercommit.psd1')
$PackageDir = Join-Path $PSScriptRoot "out/KvmOvercommit/$($Manifest.ModuleVersion)"
$NativeDir = Join-Path $PSScriptRoot 'out/kvmoc'

function Invoke-Native {
    param([Parameter(Mandatory)] [string] $FilePath, [string[]] $ArgumentList = @())
    & $FilePath @ArgumentList
    if ($LASTEXITCODE -ne 0) { throw "$FilePath $($ArgumentList -join ' ') failed with exit code $LASTEXITCODE" }
}

function Invoke-Build {
    Invoke-Native dotnet @('build', 'KvmOvercommit.sln', '-c', $Configuration, '-nologo', '-v', 'quiet')
}

function Invoke-Package {
    $root = Join-Path $PSScriptRoot 'out/KvmOvercommit'
    if (Test-Path -LiteralPath $root) { Remove-Item -LiteralPath $root -Recurse -Force }
    $help = Join-Path $PackageDir 'en-US'
    New-Item -ItemType Directory -Path $help -Force | Out-Null
    Copy-Item -Path 'module/KvmOvercommit.psd1', 'module/*.ps1xml' -Destination $PackageDir
    Copy-Item -Path 'module/en-US/*' -Destination $help
    # The module and its engine only: System.Management.Automation is PowerShell's own.
    Copy-Item -LiteralPath (Join-Path $ModuleBin 'KvmOvercommit.dll'), (Join-Path $ModuleBin 'KvmOvercommit.Engine.dll') -Destination $PackageDir
    Invoke-Native dotnet @($HelpGenDll, (Join-Path $ModuleBin 'KvmOvercommit.dll'), (Join-Path $help 'KvmOvercommit.dll-Help.xml'))

    $names = @($Manifest.RootModule) + @($Manifest.FormatsToProcess) + @($Manifest.TypesToProcess) +
        @('KvmOvercommit.Engine.dll', 'en-US/about_KvmOvercommit.help.txt', 'en-US/KvmOvercommit.dll-Help.xml')
    $missing = @($names | Where-Object { $_ -and -not (Test-Path -LiteralPath (Join-Path $PackageDir $_)) })
    if ($missing.Count -gt 0) { throw "package: missing $($missing -join ', ') in $PackageDir" }
    Write-Host "package: $PackageDir"
}

function Invoke-Publish {
    $rid = switch ([System.Runtime.InteropServices.RuntimeInformation]::OSArchitecture) {
        'X64' { 'linux-x64' }
        'Arm64' { 'linux-arm64' }
        default { throw "publish: no Native AOT runtime for $_" }
    }
    if (Test-Path -LiteralPath $NativeDir) { Remove-Item -LiteralPath $NativeDir -Recurse -Force }
    Invoke-Native dotnet @('publish', 'src/KvmOvercommit.Cli', '-c', $Configuration, '-r', $rid, '-nologo', '-v', 'quiet', '-o', $NativeDir,
        '-p:DebugType=none', '-p:GenerateDocumentationFile=false')
    Remove-Item -LiteralPath (Join-Path $NativeDir 'kvmoc.dbg') -ErrorAction SilentlyContinue
    if (-not (Test-Path -LiteralPath (Join-Path $NativeDir 'kvmoc'))) { throw "publish: $NativeDir/kvmoc was not produced" }
    Write-Host "publish: $NativeDir/kvmoc (native)"
}

function Invoke-Gate {
    $psparse = Join-Path $PSScriptRoot 'tools/psparse'
    if (-not (Test-Path -LiteralPath (Join-Path $psparse 'node_modules/web-tree-sitter'))) {
        Push-Location -LiteralPath $psparse
        try { Invoke-Native npm @('ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error') }
        finally { Pop-Location }
    }
    Invoke-Native node @((Join-Path $psparse 'psparse.cjs'), $PSScriptRoot)
}

function Invoke-Test {
    Invoke-Build
    Invoke-Package
    Invoke-Publish
    Invoke-Gate
    $env:KVMOC_NATIVE = Join-Path $NativeDir 'kvmoc'
    $passed = 0; $failed = 0; $skipped = 0; $ok = $true
    $output = & dotnet test KvmOvercommit.sln -c $Configuration --no-build -nologo 2>&1 | ForEach-Object {
        Write-Host $_
        $_
    }
    if ($LASTEXITCODE -ne 0) { $ok = $false }
    foreach ($line in $output) {
        if ("$line" -match '(Passed|Failed)! +- Failed: +(\d+), Passed: +(\d+), Skipped: +(\d+), Total') {
            $failed += [int] $Matches[2]; $passed += [int] $Matches[3]; $skipped += [int] $Matches[4]
        }
    }

    $pester = Get-Module -ListAvailable -Name Pester | Where-Object { $_.Version.Major -ge 5 } | Select-Object -First 1
    if (-not $pester) {
        Write-Host 'SKIPPED Pester acceptance tests: Pester 5 not found (Install-Module Pester -MinimumVersion 5.0)'
    }
    else {
        Import-Module $pester
        $env:KVMOC_MODULE = Join-Path $PackageDir 'KvmOvercommit.psd1'
        $env:KVMOC_CLI = $CliDll
        $config = New-PesterConfiguration
        $config.Run.Path = Join-Path $PSScriptRoot 'tests/acceptance'
        $config.Run.PassThru = $true
        $config.Output.Verbosity = 'Normal'
        # The acceptance tests change KSM and start guests: hold the host-test lock (flock) as the xunit host tests
        # do; .NET takes FileShare.None as a non-blocking flock on Linux, so wait for it.
        $lock = $null
        while (-not $lock) {
            try { $lock = [System.IO.File]::Open('/tmp/kvmoc-host-tests.lock', 'OpenOrCreate', 'ReadWrite', 'None') }
            catch [System.IO.IOException] { Start-Sleep -Milliseconds 500 }
        }
        try { $result = Invoke-Pester -Configuration $config }
        finally { $lock.Dispose() }
        $passed += $result.PassedCount; $failed += $result.FailedCount; $skipped += $result.SkippedCount + $result.NotRunCount
        if ($result.Result -ne 'Passed') { $ok = $false }
    }
    if ($failed -gt 0) { $ok = $false }
    Write-Host "Total: $passed passed, $failed failed, $skipped skipped"
    if (-not $ok) { exit 1 }
}

function Invoke-Experiment {
    Invoke-Native dotnet @('build', 'src/KvmOvercommit.Cli', '-c', $Configuration, '-nologo', '-v', 'quiet')
    $experimentArgs = @($Arguments)
    if ($experimentArgs.Count -eq 0) {
        # The same default as build.sh: 4 tiny guests x 128 MiB, three KSM profiles, 60 s each.
        $report = Join-Path $PSScriptRoot ('out/experiment/' + [DateTime]::UtcNow.ToString('yyyyMMddTHHmmssZ'))
        Write-Host "experiment: 4 tiny guests x 128 MiB, KSM profiles Default, Aggressive, Adaptive, 60 s each; report: $report"
        $experimentArgs = @('--guest-count', '4', '--memory-mb', '128', '--ksm-profile', 'Default,Aggressive,Adaptive', '--duration', '60', '--report-path', $report)
    }
    & dotnet $CliDll experiment @experimentArgs
    exit $LASTEXITCODE
}

switch ($Task) {
    'Build' { Invoke-Build }
    'Test' { Invoke-Test }
    'Publish' { Invoke-Publish }
    'Package' {
        Invoke-Build
        Invoke-Package
    }
    'Experiment' { Invoke-Experiment }
}
