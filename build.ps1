<#
.SYNOPSIS
    The build of KvmOvercommit: builds, tests, packages, publishes and runs the experiment.
.DESCRIPTION
    Build      builds the solution.
    Test       builds, packages, publishes the native kvmoc, runs the parse gate, every xunit test project, then the
               Pester suite (tests/acceptance/*.Tests.ps1, Pester 5.7.1 restored from NuGet into out/tools/Pester)
               against the packaged module; ends with "Total: N passed, N failed, N skipped". xunit failures are
               named again before that line and run once more (passing then: listed as flaky). Under CI=true a Pester run
               that did not happen, failed, or skipped or did not run a test fails the build, and so does any skipped
               xunit test.
    Package    makes an importable module folder: out/KvmOvercommit/<version>/.
    Publish    compiles kvmoc ahead of time (Native AOT): out/kvmoc/kvmoc, one native executable; Test builds it and
               tests it against the JIT build.
    Gate       the PowerShell parse gate alone: PowerShell's own parser on every .ps1/.psm1/.psd1 of the repository,
               and every .ps1xml well-formed XML.
    Pester     the Pester suite alone, against the package (run Package first); -Arguments are paths or test names.
    Experiment runs `kvmoc experiment` with the remaining arguments (none: 4 tiny guests, profiles Default, Aggressive,
               Adaptive, 60 s each, the report in out/experiment/<UTC time>/).

    pwsh comes with the repository: `dotnet tool restore` installs PowerShell 7.6.9 from .config/dotnet-tools.json,
    and ./build.sh runs this script with it (`dotnet pwsh`), so a machine with only the .NET SDK can build and test.
.EXAMPLE
    ./build.sh test                       # the same as: dotnet tool restore; dotnet pwsh ./build.ps1 -Task Test
.EXAMPLE
    dotnet pwsh ./build.ps1 -Task Experiment -- --guest-count 2 --json
.EXAMPLE
    dotnet pwsh ./build.ps1 -Task Pester -- tests/acceptance/Ksm.Tests.ps1
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [Parameter(Position = 0)]
    [ValidateSet('Build', 'Test', 'Package', 'Publish', 'Gate', 'Pester', 'Experiment')]
    [string] $Task = 'Build',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = $(if ($env:CONFIGURATION) { $env:CONFIGURATION } else { 'Release' }),

    [Parameter(ValueFromRemainingArguments = $true)]
    [string[]] $Arguments = @()
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
Set-Location -LiteralPath $PSScriptRoot
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'
$env:DOTNET_SKIP_FIRST_TIME_EXPERIENCE = '1'
# Plain text in logs: CI reads the summary lines, and a terminal still gets Pester's own colours.
if ([Console]::IsOutputRedirected) { $PSStyle.OutputRendering = 'PlainText' }

$InCi = $env:CI -eq 'true'
$ModuleBin = Join-Path $PSScriptRoot "src/KvmOvercommit/bin/$Configuration/net8.0"
$CliDll = Join-Path $PSScriptRoot "src/KvmOvercommit.Cli/bin/$Configuration/net10.0/kvmoc.dll"
$HelpGenDll = Join-Path $PSScriptRoot "tools/KvmOvercommit.HelpGen/bin/$Configuration/net10.0/KvmOvercommit.HelpGen.dll"
$ManifestPath = Join-Path $PSScriptRoot 'module/KvmOvercommit.psd1'
$Manifest = Import-PowerShellDataFile -LiteralPath $ManifestPath
$PackageDir = Join-Path $PSScriptRoot "out/KvmOvercommit/$($Manifest.ModuleVersion)"
$NativeDir = Join-Path $PSScriptRoot 'out/kvmoc'
$PesterVersion = '5.7.1'
$PesterDir = Join-Path $PSScriptRoot "out/tools/Pester/$PesterVersion"
$HostTestLock = '/tmp/kvmoc-host-tests.lock'

function Invoke-Native {
    param([Parameter(Mandatory)] [string] $FilePath, [string[]] $ArgumentList = @())
    & $FilePath @ArgumentList
    if ($LASTEXITCODE -ne 0) { throw "$FilePath $($ArgumentList -join ' ') failed with exit code $LASTEXITCODE" }
}

function Invoke-Build {
    Invoke-Native dotnet @('build', 'KvmOvercommit.sln', '-c', $Configuration, '-nologo', '-v', 'quiet')
}

# Every file a manifest key names must be in the package, with the engine and the help; SMA is PowerShell's own.
function Test-Package {
    param([Parameter(Mandatory)] [string] $Dir)
    $packaged = Import-PowerShellDataFile -LiteralPath (Join-Path $Dir 'KvmOvercommit.psd1')
    $problems = [System.Collections.Generic.List[string]]::new()
    foreach ($key in 'RootModule', 'FormatsToProcess', 'TypesToProcess', 'RequiredAssemblies', 'NestedModules', 'ScriptsToProcess') {
        if (-not $packaged.ContainsKey($key)) { continue }
        foreach ($name in @($packaged[$key])) {
            if ($name -and -not (Test-Path -LiteralPath (Join-Path $Dir $name) -PathType Leaf)) {
                $problems.Add("$key names '$name', which is not in $Dir")
            }
        }
    }
    foreach ($name in 'KvmOvercommit.dll', 'KvmOvercommit.Engine.dll', 'en-US/about_KvmOvercommit.help.txt', 'en-US/KvmOvercommit.dll-Help.xml') {
        $f = Get-Item -LiteralPath (Join-Path $Dir $name) -ErrorAction SilentlyContinue
        if (-not $f -or $f.Length -eq 0) { $problems.Add("$name is missing or empty in $Dir") }
    }
    if (Test-Path -LiteralPath (Join-Path $Dir 'System.Management.Automation.dll')) {
        $problems.Add('the package must not ship System.Management.Automation.dll (PowerShell brings its own)')
    }
    if ($problems.Count -gt 0) { throw "package: $($problems -join '; ')" }
}

function Invoke-Package {
    $root = Join-Path $PSScriptRoot 'out/KvmOvercommit'
    if (Test-Path -LiteralPath $root) { Remove-Item -LiteralPath $root -Recurse -Force }
    $help = Join-Path $PackageDir 'en-US'
    New-Item -ItemType Directory -Path $help -Force | Out-Null
    Copy-Item -Path 'module/KvmOvercommit.psd1', 'module/*.ps1xml' -Destination $PackageDir
    Copy-Item -Path 'module/en-US/*' -Destination $help
    # The module and its engine only: System.Management.Automation is PowerShell's own (the bin copy is a reference assembly).
    Copy-Item -LiteralPath (Join-Path $ModuleBin 'KvmOvercommit.dll'), (Join-Path $ModuleBin 'KvmOvercommit.Engine.dll') -Destination $PackageDir
    Invoke-Native dotnet @($HelpGenDll, (Join-Path $ModuleBin 'KvmOvercommit.dll'), (Join-Path $help 'KvmOvercommit.dll-Help.xml'))
    Test-Package -Dir $PackageDir
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
    # 17 MB of native debug symbols; `dotnet publish` without this script keeps them.
    Remove-Item -LiteralPath (Join-Path $NativeDir 'kvmoc.dbg') -ErrorAction SilentlyContinue
    $exe = Join-Path $NativeDir 'kvmoc'
    if (-not (Test-Path -LiteralPath $exe)) { throw "publish: $exe was not produced" }
    Write-Host ('publish: {0} ({1:N1} MB, native)' -f $exe, ((Get-Item -LiteralPath $exe).Length / 1MB))
}

# The repository's PowerShell files, wherever they are (not in build output or restored packages).
function Get-RepositoryFile {
    param([Parameter(Mandatory)] [string[]] $Include, [string] $Root = $PSScriptRoot)
    Get-ChildItem -LiteralPath $Root -Recurse -File -Include $Include -Force |
        Where-Object { $_.FullName.Substring($Root.Length) -notmatch '[\\/](bin|obj|out|node_modules|\.git|TestResults|BenchmarkDotNet\.Artifacts)[\\/]' }
}

# PowerShell's own parser on every script and data file; every .ps1xml must be well-formed XML. Prints file:line:col.
function Invoke-Gate {
    param([string] $Root = $PSScriptRoot)
    $failures = 0; $count = 0
    foreach ($file in Get-RepositoryFile -Root $Root -Include '*.ps1', '*.psm1', '*.psd1') {
        $count++
        $tokens = $null; $errors = $null
        [void] [System.Management.Automation.Language.Parser]::ParseFile($file.FullName, [ref] $tokens, [ref] $errors)
        foreach ($e in $errors) {
            $failures++
            Write-Host ('{0}:{1}:{2}: {3}' -f $file.FullName, $e.Extent.StartLineNumber, $e.Extent.StartColumnNumber, $e.Message)
        }
    }
    foreach ($file in Get-RepositoryFile -Root $Root -Include '*.ps1xml') {
        $count++
        try { [void] [xml] (Get-Content -LiteralPath $file.FullName -Raw) }
        catch { $failures++; Write-Host ('{0}: not well-formed XML: {1}' -f $file.FullName, $_.Exception.InnerException.Message) }
    }
    if ($failures -gt 0) { throw "gate: FAILED, $failures error(s) in $count file(s)" }
    Write-Host "gate: $count PowerShell file(s) parse"
}

# Pester from NuGet (tools/Pester restores the package; its tools/ folder is the module) into out/tools/Pester.
function Install-Pester {
    if (Test-Path -LiteralPath (Join-Path $PesterDir 'Pester.psd1')) { return }
    Invoke-Native dotnet @('restore', 'tools/Pester/Pester.Restore.csproj', '-nologo', '-v', 'quiet')
    $packages = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path $HOME '.nuget/packages' }
    $source = Join-Path $packages "pester/$PesterVersion/tools"
    if (-not (Test-Path -LiteralPath (Join-Path $source 'Pester.psd1'))) { throw "Pester $PesterVersion was not restored to $source" }
    New-Item -ItemType Directory -Path $PesterDir -Force | Out-Null
    Copy-Item -Path (Join-Path $source '*') -Destination $PesterDir -Recurse -Force
}

# The Pester suite against the package, in a pwsh of its own under the host-test lock (the tests change KSM and start
# guests, as the xunit host tests do; flock(1) waits in turn). Returns Pester's counts (Passed, Failed, Skipped, NotRun).
function Invoke-PesterSuite {
    param([string[]] $Path = @((Join-Path $PSScriptRoot 'tests/acceptance')))
    Install-Pester
    $env:KVMOC_MODULE = Join-Path $PackageDir 'KvmOvercommit.psd1'
    $env:KVMOC_CLI = $CliDll
    $resultFile = Join-Path $PSScriptRoot 'out/pester-result.json'
    Remove-Item -LiteralPath $resultFile -ErrorAction SilentlyContinue
    $pwshDll = Join-Path $PSHOME 'pwsh.dll'
    $pwsh = if (Test-Path -LiteralPath $pwshDll) { @((Get-Process -Id $PID).Path, $pwshDll) } else { @((Join-Path $PSHOME 'pwsh')) }
    $runner = Join-Path $PSScriptRoot 'tools/Pester/Invoke-PesterSuite.ps1'
    $lockArgs = @($HostTestLock) + $pwsh + @('-NoProfile', '-NonInteractive', '-File', $runner,
        '-PesterModule', (Join-Path $PesterDir 'Pester.psd1'), '-ResultFile', $resultFile, '-Path') + $Path
    & flock @lockArgs | Out-Host
    if (-not (Test-Path -LiteralPath $resultFile)) { throw "the Pester run wrote no result (exit code $LASTEXITCODE)" }
    Get-Content -LiteralPath $resultFile -Raw | ConvertFrom-Json
}

# Runs one xunit project with a trx logger; returns the names of the passed tests, the failed ones (name, method for a
# --filter, first line of the message) and the skipped count, read from the trx rather than from the console.
function Invoke-XunitProject([string] $Project, [string] $Dir, [string] $Filter) {
    $testArgs = @('test', $Project, '-c', $Configuration, '--no-build', '-nologo', '--logger', 'trx;LogFileName=results.trx', '--results-directory', $Dir)
    if ($Filter) { $testArgs += @('--filter', $Filter) }
    & dotnet @testArgs 2>&1 | ForEach-Object { Write-Host $_ }
    $exit = $LASTEXITCODE
    $trx = Join-Path $Dir 'results.trx'
    $r = [pscustomobject]@{ Passed = [System.Collections.Generic.List[string]]::new(); Failed = [System.Collections.Generic.List[object]]::new(); Skipped = 0; Total = 0; ExitCode = $exit }
    if (-not (Test-Path -LiteralPath $trx)) { return $r }
    $xml = [xml] (Get-Content -LiteralPath $trx -Raw)
    foreach ($u in $xml.TestRun.Results.UnitTestResult) {
        $r.Total++
        switch ($u.outcome) {
            'Passed' { $r.Passed.Add($u.testName) }
            'NotExecuted' { $r.Skipped++ }
            default {
                $message = try { ("$($u.Output.ErrorInfo.Message)" -split "`n" | Where-Object { $_.Trim() } | Select-Object -First 3) -join ' / ' } catch { '' }
                $r.Failed.Add([pscustomobject]@{ Name = $u.testName; Method = ($u.testName -replace '\(.*$', ''); Message = $message })
            }
        }
    }
    return $r
}

function Invoke-Test {
    Invoke-Build
    Invoke-Package
    Invoke-Publish
    Invoke-Gate
    $env:KVMOC_NATIVE = Join-Path $NativeDir 'kvmoc'
    $env:KVMOC_MODULE = Join-Path $PackageDir 'KvmOvercommit.psd1'
    $passed = 0; $failed = 0; $skipped = 0; $ok = $true
    $projects = @(Select-String -LiteralPath 'KvmOvercommit.sln' -Pattern '^Project\(.*"(tests[\\/][^"]*Tests\.csproj)"' |
        ForEach-Object { $_.Matches[0].Groups[1].Value -replace '\\', '/' })
    $results = Join-Path $PSScriptRoot 'out/test-results'
    Remove-Item -LiteralPath $results -Recurse -Force -ErrorAction SilentlyContinue
    $failures = [System.Collections.Generic.List[object]]::new(); $flaky = [System.Collections.Generic.List[string]]::new()
    # One project after the other: run together, the engine tests' TCG guests and the module tests' pwsh runspaces
    # compete for the machine's two cores and timing-sensitive tests pay for it.
    foreach ($project in $projects) {
        $name = [IO.Path]::GetFileNameWithoutExtension($project)
        $run = Invoke-XunitProject $project (Join-Path $results $name)
        if ($run.Failed.Count -gt 0) {
            # Each failure is named (the CI log keeps only its tail), then the failed tests run once more: a test that
            # fails again fails the build; one that passes the second time is listed as flaky and counts as passed.
            $filter = ($run.Failed | ForEach-Object { "FullyQualifiedName=$($_.Method)" } | Sort-Object -Unique) -join '|'
            Write-Host "test: $($run.Failed.Count) failed in $name; running them once more"
            $again = Invoke-XunitProject $project (Join-Path $results "$name-rerun") $filter
            foreach ($f in $run.Failed) {
                if ($again.Passed -contains $f.Name) { $flaky.Add("$($f.Name): failed first ($($f.Message)), passed on the rerun"); $passed++ }
                else { $failures.Add($f) }
            }
        }
        if ($run.ExitCode -ne 0 -and $run.Failed.Count -eq 0) { Write-Host "test: dotnet test $name exited $($run.ExitCode) with no failed test in its results"; $ok = $false }
        if ($run.Total -eq 0) { Write-Host "test: $name reported no results"; $ok = $false }
        $passed += $run.Passed.Count
        $skipped += $run.Skipped
    }
    $failed += $failures.Count
    $xunitSkipped = $skipped

    $pester = $null
    try { $pester = Invoke-PesterSuite }
    catch { Write-Host "pester: the Pester suite did not run: $_"; $ok = $false }
    if ($pester) {
        $passed += $pester.Passed; $failed += $pester.Failed
        $skipped += $pester.Skipped + $pester.NotRun
        if ($pester.Result -ne 'Passed') { $ok = $false }
        if ($pester.Skipped + $pester.NotRun -gt 0 -and $InCi) {
            Write-Host "pester: $($pester.Skipped) skipped, $($pester.NotRun) not run: under CI every test must run"; $ok = $false
        }
    }
    elseif ($InCi) { $ok = $false }
    if ($xunitSkipped -gt 0 -and $InCi) { Write-Host "test: $xunitSkipped xunit test(s) skipped: under CI every test must run"; $ok = $false }
    if ($failed -gt 0) { $ok = $false }
    foreach ($f in $flaky) { Write-Host "flaky: $f" }
    foreach ($f in $failures) { Write-Host "FAILED: $($f.Name): $($f.Message)" }
    Write-Host "Total: $passed passed, $failed failed, $skipped skipped"
    if (-not $ok) { exit 1 }
}

function Invoke-Experiment {
    Invoke-Native dotnet @('build', 'src/KvmOvercommit.Cli', '-c', $Configuration, '-nologo', '-v', 'quiet')
    $experimentArgs = @($Arguments)
    if ($experimentArgs.Count -eq 0) {
        # 4 tiny guests x 128 MiB, three KSM profiles, 60 s each (about 4 minutes under TCG).
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
    'Package' { Invoke-Build; Invoke-Package }
    'Publish' { Invoke-Publish }
    'Gate' { Invoke-Gate }
    'Pester' {
        $paths = if ($Arguments.Count -gt 0) { $Arguments } else { @((Join-Path $PSScriptRoot 'tests/acceptance')) }
        $r = Invoke-PesterSuite -Path $paths
        if ($r.Result -ne 'Passed') { exit 1 }
    }
    'Experiment' { Invoke-Experiment }
}
