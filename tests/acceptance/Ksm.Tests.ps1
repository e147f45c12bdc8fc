#Requires -Version 7.4
# Pester 5 acceptance tests of the KSM cmdlets. Run by build.ps1 where pwsh and Pester exist; the tests that
# write /sys/kernel/mm/ksm need root and restore every setting in AfterAll / finally.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $modulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module $modulePath -Force
    $script:HasKsm = Test-Path '/sys/kernel/mm/ksm/run'
    $script:IsRoot = (id -u) -eq '0'
    # The mergeable workload comes from kvmoc (the build's Release output, or $env:KVMOC_CLI).
    $repo = Split-Path -Parent (Split-Path -Parent $PSScriptRoot)
    $script:Kvmoc = if ($env:KVMOC_CLI) { $env:KVMOC_CLI } else { Join-Path $repo 'src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc.dll' }
}

Describe 'Get-KsmStat' {
    It 'reads every file as a typed property' -Skip:(Test-SkipUnless (Test-Path '/sys/kernel/mm/ksm/run')) {
        $stat = Get-KsmStat
        $stat | Should -BeOfType 'KvmOvercommit.Engine.Ksm.KsmStat'
        $stat.Run | Should -BeIn @('Stopped', 'Merging', 'Unmerging')
        $stat.PagesToScan | Should -Be ([long](Get-Content '/sys/kernel/mm/ksm/pages_to_scan'))
        $stat.PageSize | Should -BeGreaterThan 0
        $stat.Timestamp.Offset | Should -Be ([TimeSpan]::Zero)
    }

    It 'survives serialization (remoting, ConvertTo-Json)' -Skip:(Test-SkipUnless (Test-Path '/sys/kernel/mm/ksm/run')) {
        $stat = Get-KsmStat
        $json = $stat | ConvertTo-Json -Depth 3 | ConvertFrom-Json
        $json.PagesSharing | Should -Be $stat.PagesSharing
        $clone = [System.Management.Automation.PSSerializer]::Deserialize([System.Management.Automation.PSSerializer]::Serialize($stat))
        $clone.PSObject.TypeNames | Should -Contain 'Deserialized.KvmOvercommit.Engine.Ksm.KsmStat'
    }
}

Describe 'Set-KsmTuning' {
    BeforeAll {
        if ($script:HasKsm) { $script:Saved = Get-KsmStat }
    }
    AfterAll {
        if ($script:HasKsm -and $script:IsRoot) { $script:Saved | Set-KsmTuning -Force }
    }

    It 'changes nothing with -WhatIf' -Skip:(Test-SkipUnless (Test-Path '/sys/kernel/mm/ksm/run')) {
        $before = Get-Content '/sys/kernel/mm/ksm/pages_to_scan'
        Set-KsmTuning -PagesToScan 4321 -AdvisorMode none -WhatIf
        Get-Content '/sys/kernel/mm/ksm/pages_to_scan' | Should -Be $before
    }

    It 'tunes aggressively and -PassThru returns what it replaced' -Skip:(Test-SkipUnless ((Test-Path '/sys/kernel/mm/ksm/run') -and ((id -u) -eq '0'))) {
        $old = Set-KsmTuning -Profile Aggressive -PassThru
        (Get-KsmStat).PagesToScan | Should -Be 20000
        $old | Should -BeOfType 'KvmOvercommit.Engine.Ksm.KsmTuning'
        $old | Set-KsmTuning
        (Get-KsmStat).PagesToScan | Should -Be $script:Saved.PagesToScan
    }

    It 'restores every setting from a piped KsmStat' -Skip:(Test-SkipUnless ((Test-Path '/sys/kernel/mm/ksm/run') -and ((id -u) -eq '0'))) {
        Set-KsmTuning -PagesToScan 777 -SleepMilliseconds 33 -AdvisorMode none
        $script:Saved | Set-KsmTuning -Force
        $now = Get-KsmStat
        foreach ($name in 'Run', 'PagesToScan', 'SleepMilliseconds', 'MaxPageSharing', 'UseZeroPages', 'AdvisorMode') {
            $now.$name | Should -Be $script:Saved.$name -Because $name
        }
    }

    It 'refuses invalid values with InvalidArgument and writes nothing' -Skip:(Test-SkipUnless ((Test-Path '/sys/kernel/mm/ksm/run') -and ((id -u) -eq '0'))) {
        $before = Get-Content '/sys/kernel/mm/ksm/pages_to_scan'
        { Set-KsmTuning -PagesToScan 500 -MaxPageSharing 1 -ErrorAction Stop } | Should -Throw -ErrorId 'KsmInvalidValue*'
        Get-Content '/sys/kernel/mm/ksm/pages_to_scan' | Should -Be $before
    }

    It 'accepts Stop, Merge and Unmerge for -Run' -Skip:(Test-SkipUnless (Test-Path '/sys/kernel/mm/ksm/run')) {
        { Set-KsmTuning -Run Merge -WhatIf } | Should -Not -Throw
        { Set-KsmTuning -Run Sprint -WhatIf } | Should -Throw
    }
}

Describe 'Watch-KsmStat' {
    It 'streams -Count samples with rates' -Skip:(Test-SkipUnless (Test-Path '/sys/kernel/mm/ksm/run')) {
        $samples = @(Watch-KsmStat -IntervalSeconds 0.2 -Count 3)
        $samples.Count | Should -Be 3
        $samples[2].Index | Should -Be 3
        $samples[0].IntervalSeconds | Should -BeGreaterThan 0.1
        $samples[0] | Should -BeOfType 'KvmOvercommit.Engine.Ksm.KsmSample'
    }
}

Describe 'Get-KsmProcess' {
    It 'finds a mergeable workload by id and sorts by profit' -Skip:(Test-SkipUnless ((Test-Path '/sys/kernel/mm/ksm/run') -and ((id -u) -eq '0'))) {
        $saved = Get-KsmStat
        $workloads = 1..3 | ForEach-Object {
            Start-Process dotnet -ArgumentList $script:Kvmoc, 'ksm', 'workload', '--size-mb', '16', '--seed', '5', '--hold-seconds', '120' -PassThru -RedirectStandardOutput "/tmp/kvmoc-pester-wl-$_.txt"
        }
        try {
            Start-Sleep -Seconds 3
            Set-KsmTuning -Profile Aggressive -AdvisorMode none -Run Merge
            $null = Watch-KsmStat -IntervalSeconds 0.5 -Duration ([TimeSpan]::FromSeconds(20)) -UntilStable
            $found = $workloads | Get-KsmProcess
            $found.Count | Should -Be 3
            $found | ForEach-Object { $_.KsmMergingPages | Should -BeGreaterThan 0 }
            $all = @(Get-KsmProcess)
            $all.Id | Should -Contain $workloads[0].Id
            $profits = $all.KsmProcessProfit
            $profits | Should -Be ($profits | Sort-Object -Descending)
        }
        finally {
            $workloads | Stop-Process -Force -ErrorAction SilentlyContinue
            $saved | Set-KsmTuning -Force
        }
    }

    It 'reports a missing id as ObjectNotFound' {
        Get-KsmProcess -Id 999999999 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].FullyQualifiedErrorId | Should -BeLike 'KsmProcessNotFound*'
    }

    It 'filters by name with wildcards' {
        @(Get-KsmProcess -Name 'no-such-process-*').Count | Should -Be 0
    }
}
