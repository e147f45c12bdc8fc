# Helpers every *.Tests.ps1 dot-sources, at discovery (BeforeDiscovery) and at run time (BeforeAll):
#   . (Join-Path $PSScriptRoot 'TestHelpers.ps1')

# -Skip:(Test-SkipUnless <prerequisite>): skip on a developer machine that lacks the prerequisite; under CI=true never
# skip, so the test runs and fails on what is missing (a CI run must run every test).
function Test-SkipUnless {
    param([Parameter(Mandatory, Position = 0)] [bool] $Prerequisite)
    if ($env:CI -eq 'true') { return $false }
    -not $Prerequisite
}

# True when the process is gone. A process that exited but is not reaped yet (State Z or X in /proc/<pid>/stat: PID 1
# of a container may reap a daemonized QEMU late) counts as gone, as the module counts it.
function Test-ProcessGone {
    param([Parameter(Mandatory, Position = 0)] [int] $Id)
    $stat = Get-Content -LiteralPath "/proc/$Id/stat" -Raw -ErrorAction SilentlyContinue
    if (-not $stat) { return $true }
    $state = $stat.Substring($stat.LastIndexOf(')') + 2, 1)
    $state -in 'Z', 'X'
}
