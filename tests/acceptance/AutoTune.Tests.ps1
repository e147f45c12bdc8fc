#Requires -Version 7.4
# Pester 5 acceptance tests of Invoke-KsmAutoTune. Run by build.ps1 where pwsh and Pester exist; the tests that
# write /sys/kernel/mm/ksm need root and restore every setting in AfterAll.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $modulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module $modulePath -Force
    $script:HasKsm = Test-Path '/sys/kernel/mm/ksm/run'
    $script:IsRoot = (id -u) -eq '0'
    if ($script:HasKsm) { $script:Saved = Get-KsmStat }
}

AfterAll {
    if ($script:HasKsm -and $script:IsRoot) { $script:Saved | Set-KsmTuning -Force }
}

Describe 'Invoke-KsmAutoTune' {
    It 'is exported with -Duration, -WhatIf and -Verbose' {
        $cmd = Get-Command Invoke-KsmAutoTune
        $cmd.Parameters.Keys | Should -Contain 'Duration'
        $cmd.Parameters.Keys | Should -Contain 'WhatIf'
        $cmd.OutputType.Type.FullName | Should -Contain 'KvmOvercommit.Engine.Ksm.AutoTune.KsmAutoTuneResult'
    }

    It 'writes nothing with -WhatIf' -Skip:(Test-SkipUnless (Test-Path '/sys/kernel/mm/ksm/run')) {
        $before = Get-Content '/sys/kernel/mm/ksm/pages_to_scan', '/sys/kernel/mm/ksm/sleep_millisecs', '/sys/kernel/mm/ksm/run'
        $out = Invoke-KsmAutoTune -Duration 5 -WhatIf
        $out | Should -BeNullOrEmpty
        Get-Content '/sys/kernel/mm/ksm/pages_to_scan', '/sys/kernel/mm/ksm/sleep_millisecs', '/sys/kernel/mm/ksm/run' | Should -Be $before
    }

    It 'takes seconds as a number, logs its decisions and leaves a low rate' -Skip:(Test-SkipUnless ((Test-Path '/sys/kernel/mm/ksm/run') -and ((id -u) -eq '0') -and ((Get-Content '/sys/kernel/mm/ksm/advisor_mode' -ErrorAction Ignore) -notmatch '\[scan-time\]'))) {
        $verbose = @()
        $r = Invoke-KsmAutoTune -Duration 3 -Verbose 4>&1 | ForEach-Object {
            if ($_ -is [System.Management.Automation.VerboseRecord]) { $verbose += $_.Message } else { $_ }
        }
        $r | Should -BeOfType 'KvmOvercommit.Engine.Ksm.AutoTune.KsmAutoTuneResult'
        $r.Duration.TotalSeconds | Should -BeGreaterOrEqual 2.9
        $r.Stopped | Should -BeFalse
        $verbose | Should -Contain 'leaving KSM running at 100 pages / 20 ms'
        $now = Get-KsmStat
        $now.Run | Should -Be 'Merging'
        ($now.PagesToScan * 20) | Should -BeLessOrEqual (100 * $now.SleepMilliseconds)
    }

    It 'takes a TimeSpan and its result has a table view' -Skip:(Test-SkipUnless ((Test-Path '/sys/kernel/mm/ksm/run') -and ((id -u) -eq '0') -and ((Get-Content '/sys/kernel/mm/ksm/advisor_mode' -ErrorAction Ignore) -notmatch '\[scan-time\]'))) {
        $r = Invoke-KsmAutoTune -Duration (New-TimeSpan -Seconds 2)
        $r.Duration.TotalSeconds | Should -BeGreaterOrEqual 1.9
        ($r | Format-Table | Out-String) | Should -Match 'Saved\(MiB\)'
    }
}
