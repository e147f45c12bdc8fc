#Requires -Version 7.4
# Pester 5: memory beyond KSM on real QEMU (TCG) with the tiny guest: -MemoryMerge $false, free page reporting,
# the balloon's guest statistics, the risk side of the overcommit report and the balloon balancer.
# Needs root, KSM, qemu-system-x86_64, apt-get/dpkg and busybox-static. Every test stops what it started and puts KSM back.

BeforeAll {
    $ModulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module -Name $ModulePath -Force -ErrorAction Stop

    $Work = Join-Path ([System.IO.Path]::GetTempPath()) ('kvmoc-memory-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    $RunRoot = Join-Path $Work 'run'
    New-Item -ItemType Directory -Path $Work, $RunRoot | Out-Null
    $Tiny = Get-KvmTinyGuest
    $Suffix = [guid]::NewGuid().ToString('N').Substring(0, 6)
    $Common = @{ Accelerator = 'Tcg'; Network = 'None'; NoVnc = $true; RunDirectory = $RunRoot; Kernel = $Tiny.Kernel; Initrd = $Tiny.Initrd }

    function Wait-Serial {
        param([Parameter(Mandatory)] $Guest, [string] $Marker = 'KVMOC-READY', [int] $TimeoutSeconds = 90)
        $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
        while ((Get-Date) -lt $deadline) {
            if ((Test-Path -LiteralPath $Guest.SerialLog) -and (Get-Content -LiteralPath $Guest.SerialLog -Raw) -match $Marker) { return $true }
            Start-Sleep -Milliseconds 200
        }
        return $false
    }

    $repo = Split-Path -Parent (Split-Path -Parent $PSScriptRoot)
    $Kvmoc = if ($env:KVMOC_CLI) { $env:KVMOC_CLI } else { Join-Path $repo 'src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc.dll' }
    function Invoke-Kvmoc { if ($Kvmoc -like '*.dll') { & dotnet $Kvmoc @args } else { & $Kvmoc @args } }

    function Stop-All {
        foreach ($pidFile in @(Get-ChildItem -LiteralPath $RunRoot -Recurse -Filter 'qemu.pid' -ErrorAction SilentlyContinue)) {
            Stop-Process -Id ([int](Get-Content -LiteralPath $pidFile.FullName -Raw)) -Force -ErrorAction SilentlyContinue
        }
    }
}

AfterAll {
    Stop-All
    Start-Sleep -Milliseconds 300
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
    Remove-Module -Name KvmOvercommit -Force -ErrorAction SilentlyContinue
}

Describe 'Start-KvmGuest -MemoryMerge $false' {
    It 'keeps KSM away from a guest while its identical twin merges, and Get-KvmGuest shows MemoryMerge' {
        $saved = Get-KsmStat
        try {
            Set-KsmTuning -Profile Aggressive -AdvisorMode none -Run Merge
            $closed = Start-KvmGuest @Common -Name "nomerge-$Suffix" -MemoryMB 128 -KernelArguments 'quiet kvmoc.fill=16,5' -MemoryMerge $false -PassThru
            $twin = Start-KvmGuest @Common -Name "twin-$Suffix" -MemoryMB 128 -KernelArguments 'quiet kvmoc.fill=16,5' -PassThru
            Wait-Serial $closed | Should -BeTrue
            Wait-Serial $twin | Should -BeTrue
            $deadline = (Get-Date).AddSeconds(90)
            while ((Get-Date) -lt $deadline -and (Get-KvmGuest -Name $twin.Name).KsmMergingPages -le 2048) { Start-Sleep -Milliseconds 500 }
            $scans = (Get-KsmStat).FullScans
            while ((Get-Date) -lt $deadline -and (Get-KsmStat).FullScans -lt $scans + 2) { Start-Sleep -Milliseconds 200 }

            $g = Get-KvmGuest -Name $closed.Name, $twin.Name
            ($g | Where-Object Name -EQ $closed.Name).MemoryMerge | Should -BeFalse
            ($g | Where-Object Name -EQ $twin.Name).MemoryMerge | Should -BeTrue
            [long](Get-Content "/proc/$($closed.Id)/ksm_merging_pages") | Should -Be 0
            [long](Get-Content "/proc/$($twin.Id)/ksm_merging_pages") | Should -BeGreaterThan 2048
        }
        finally {
            Stop-All
            $saved | Set-KsmTuning -Force
        }
        (Get-KsmStat).PagesToScan | Should -Be $saved.PagesToScan
        (Get-KsmStat).Run | Should -Be $saved.Run
    }

    It 'kvmoc guest start --no-memory-merge --deflate-on-oom plans the same QEMU command line' {
        $v = Invoke-Kvmoc guest start --tiny --name "whatif-$Suffix" --accelerator Tcg --network None --no-vnc --run-directory $RunRoot --no-memory-merge --deflate-on-oom --what-if 2>&1 | Out-String
        $LASTEXITCODE | Should -Be 0
        $v | Should -Match 'pc,mem-merge=off'
        $v | Should -Match 'virtio-balloon-pci,id=balloon0,free-page-reporting=on,deflate-on-oom=on'
        Invoke-Kvmoc guest start --tiny --free-page-reporting --no-free-page-reporting --what-if 2>&1 | Out-Null
        $LASTEXITCODE | Should -Not -Be 0
    }

    It 'is set by help: Set-KsmTuning carries the side-channel warning' {
        (Get-Help Set-KsmTuning -Full | Out-String) | Should -Match 'side channel'
        (Get-Help Start-KvmGuest -Parameter MemoryMerge | Out-String) | Should -Match 'mem-merge=off'
    }
}

Describe 'Start-KvmGuest -FreePageReporting' {
    It 'gives at least 80% of a freed 64 MiB fill back to the host with reporting, at most 10% without' {
        $with = Start-KvmGuest @Common -Name "fpr-$Suffix" -MemoryMB 192 -KernelArguments 'quiet kvmoc.fill=64,11,6' -FreePageReporting -PassThru
        $without = Start-KvmGuest @Common -Name "nofpr-$Suffix" -MemoryMB 192 -KernelArguments 'quiet kvmoc.fill=64,12,6' -FreePageReporting:$false -PassThru
        try {
            $with.FreePageReporting | Should -BeTrue
            $without.FreePageReporting | Should -BeFalse
            Wait-Serial $with -TimeoutSeconds 120 | Should -BeTrue
            $withFilled = (Get-KvmGuest -Id $with.Id).RssBytes
            Wait-Serial $without -TimeoutSeconds 120 | Should -BeTrue
            $withoutFilled = (Get-KvmGuest -Id $without.Id).RssBytes
            Wait-Serial $with -Marker 'KVMOC-FREED' | Should -BeTrue
            Wait-Serial $without -Marker 'KVMOC-FREED' | Should -BeTrue
            $deadline = (Get-Date).AddSeconds(30)
            do { Start-Sleep -Seconds 1; $back = ($withFilled - (Get-KvmGuest -Id $with.Id).RssBytes) / 64MB } while ($back -lt 0.9 -and (Get-Date) -lt $deadline)
            Start-Sleep -Seconds 3
            $back = ($withFilled - (Get-KvmGuest -Id $with.Id).RssBytes) / 64MB
            $backWithout = ($withoutFilled - (Get-KvmGuest -Id $without.Id).RssBytes) / 64MB
            Write-Host ("freed 64 MiB: {0:P0} back with free page reporting, {1:P0} without" -f $back, $backWithout)
            $back | Should -BeGreaterOrEqual 0.8
            $backWithout | Should -BeLessOrEqual 0.1
        }
        finally {
            Stop-KvmGuest -Name $with.Name, $without.Name -TurnOff -Force -Confirm:$false -ErrorAction SilentlyContinue
        }
    }
}

Describe 'Get-KvmGuestMemory guest statistics' {
    It 'shows what the guest itself has free and available, from the balloon statistics' {
        $g = Start-KvmGuest @Common -Name "stats-$Suffix" -MemoryMB 128 -KernelArguments 'quiet kvmoc.fill=16,3' -PassThru
        try {
            Wait-Serial $g | Should -BeTrue
            $m = Get-KvmGuest -Name $g.Name | Get-KvmGuestMemory
            $m.StatsPollingIntervalSeconds | Should -Be 2
            $m.StatsLastUpdate | Should -BeOfType [DateTimeOffset]
            $m.GuestFreeBytes | Should -BeGreaterThan 0
            $m.GuestAvailableBytes | Should -BeGreaterThan 0
            $m.GuestTotalBytes | Should -BeLessOrEqual 128MB
            $m.GuestMinorFaults | Should -BeGreaterThan 0
            $m.GuestSwapOutBytes | Should -Be 0
            $j = Invoke-Kvmoc guest memory $g.Name --json | ConvertFrom-Json
            $j.GuestFreeBytes | Should -BeGreaterThan 0
            $j.StatsPollingIntervalSeconds | Should -Be 2
        }
        finally {
            Stop-KvmGuest -Name $g.Name -TurnOff -Force -Confirm:$false -ErrorAction SilentlyContinue
        }
    }

    It 'leaves the statistics null where no guest reports them' {
        $sock = Join-Path $Work "bare-$Suffix.sock"
        $pidFile = Join-Path $Work "bare-$Suffix.pid"
        & qemu-system-x86_64 -display none -nodefaults -name "guest=bare-$Suffix" -m 64 -device virtio-balloon-pci -qmp "unix:$sock,server=on,wait=off" -daemonize -pidfile $pidFile
        $id = [int](Get-Content -LiteralPath $pidFile -Raw)
        try {
            $m = Get-KvmGuestMemory -Id $id -StatsIntervalSeconds 0
            $m.ActualMB | Should -Be 64
            $m.StatsLastUpdate | Should -BeNullOrEmpty
            $m.GuestFreeBytes | Should -BeNullOrEmpty
            $m.StatsPollingIntervalSeconds | Should -Be 0
        }
        finally {
            Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
        }
    }
}

Describe 'Get-OvercommitReport: the risk side' {
    It 'shows KsmUnmergeRiskBytes, BalloonedBytes and SwapFreeBytes with the arithmetic' {
        $g = Start-KvmGuest @Common -Name "risk-$Suffix" -MemoryMB 128 -PassThru
        try {
            Wait-Serial $g | Should -BeTrue
            Set-KvmGuestMemory -Name $g.Name -TargetMB 64 -Wait
            $r = Get-OvercommitReport -IopsSampleSeconds 0 -SkipDiskImages
            $r.BalloonedBytes | Should -BeGreaterOrEqual 63MB
            $r.BalloonedMiB | Should -BeGreaterOrEqual 63
            $swapFree = [long](((Get-Content /proc/meminfo | Where-Object { $_ -like 'SwapFree:*' }) -split '\s+')[1]) * 1KB
            $r.SwapFreeBytes | Should -Be $swapFree
            $r.KsmUnmergeRiskBytes | Should -BeGreaterOrEqual 0
            $r.KsmUnmergeRiskExceedsAvailable | Should -Be ($r.KsmUnmergeRiskBytes -gt $r.MemoryAvailableBytes + $r.SwapFreeBytes)
            $r.Explanation | Where-Object { $_ -like 'KsmUnmergeRiskBytes = pages_sharing × page size = *' } | Should -Not -BeNullOrEmpty
            $r.Explanation | Where-Object { $_ -like 'BalloonedBytes = sum of (-m − balloon actual)*' } | Should -Not -BeNullOrEmpty
            $j = Invoke-Kvmoc report --iops-sample-seconds 0 --skip-disk-images --json | ConvertFrom-Json
            $j.BalloonedBytes | Should -BeGreaterOrEqual 63MB
        }
        finally {
            Stop-KvmGuest -Name $g.Name -TurnOff -Force -Confirm:$false -ErrorAction SilentlyContinue
        }
    }
}

Describe 'Invoke-KvmMemoryBalancer' {
    It 'takes two idle guests down to their minimum under pressure, never below it, and gives them back their size at exit' {
        $gs = foreach ($n in 'a', 'b') { Start-KvmGuest @Common -Name "bal$n-$Suffix" -MemoryMB 256 -KernelArguments 'quiet kvmoc.fill=16,4' -PassThru }
        try {
            foreach ($g in $gs) { Wait-Serial $g | Should -BeTrue }
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            $r = Invoke-KvmMemoryBalancer -Name $gs.Name -Duration 30 -IntervalSeconds 1 -HostTargetPercent 1 -MinimumMB 100
            $after = $clock.Elapsed.TotalSeconds - 30
            $r | Should -BeOfType 'KvmOvercommit.Engine.Memory.KvmMemoryBalancerResult'
            $r.Guests.Count | Should -Be 2
            $r.PressureRounds | Should -Be $r.Rounds
            foreach ($x in $r.Guests) {
                $x.MinimumMB | Should -Be 100
                $x.LowestActualMB | Should -BeGreaterOrEqual 100     # never below the minimum in any round
                $x.LowestActualMB | Should -BeLessOrEqual 110        # and down to 100-110 MiB within the 30 s
                $x.FinalActualMB | Should -Be 256                    # deflated at exit
            }
            $r.Decisions | ForEach-Object { $_.TargetMB | Should -BeGreaterOrEqual 100; $_.Applied | Should -BeTrue }
            $r.DeflatedAtExit | Should -BeTrue
            $after | Should -BeLessOrEqual 12                         # back at 256 within 10 s (plus the last round)
            (Get-KvmGuestMemory -Name $gs.Name -StatsIntervalSeconds 0).ActualMB | ForEach-Object { $_ | Should -Be 256 }
            ($r | Format-Table | Out-String) | Should -Match 'Rounds'
            ($r.Decisions | Format-Table | Out-String) | Should -Match 'Inflate'
        }
        finally {
            Stop-KvmGuest -Name $gs.Name -TurnOff -Force -Confirm:$false -ErrorAction SilentlyContinue
        }
    }

    It 'decides but sets nothing under -WhatIf, and kvmoc memory balance --what-if does the same' {
        $g = Start-KvmGuest @Common -Name "baldry-$Suffix" -MemoryMB 192 -PassThru
        try {
            Wait-Serial $g | Should -BeTrue
            $r = Invoke-KvmMemoryBalancer -Name $g.Name -Duration 3 -IntervalSeconds 1 -HostTargetPercent 1 -GuestMinimumMB @{ "baldry-*" = 150 } -WhatIf
            $r.DryRun | Should -BeTrue
            $r.Decisions.Count | Should -BeGreaterThan 0
            $r.Decisions | ForEach-Object { $_.Applied | Should -BeFalse; $_.MinimumMB | Should -Be 150 }
            (Get-KvmGuestMemory -Name $g.Name -StatsIntervalSeconds 0).ActualMB | Should -Be 192
            $j = Invoke-Kvmoc memory balance $g.Name --duration 3 --interval-seconds 1 --host-target-percent 1 --minimum-mb 150 --what-if --quiet --json | ConvertFrom-Json
            $LASTEXITCODE | Should -Be 0
            $j.DryRun | Should -BeTrue
            $j.Guests[0].MinimumMB | Should -Be 150
            (Get-KvmGuestMemory -Name $g.Name -StatsIntervalSeconds 0).ActualMB | Should -Be 192
        }
        finally {
            Stop-KvmGuest -Name $g.Name -TurnOff -Force -Confirm:$false -ErrorAction SilentlyContinue
        }
    }

    It 'refuses bad values and a cgroup that does not exist with clear errors' {
        { Invoke-KvmMemoryBalancer -Duration 1 -Cgroup "/nonexistent-$Suffix" -ErrorAction Stop } | Should -Throw -ErrorId 'CgroupNotFound*'
        { Invoke-KvmMemoryBalancer -Duration 1 -Shares @{ web = 0 } -ErrorAction Stop } | Should -Throw -ErrorId 'BalancerInvalidValue*'
        Invoke-Kvmoc memory balance --duration 1 --shares web 2>&1 | Out-Null
        $LASTEXITCODE | Should -Be 2
        (Get-Help Invoke-KvmMemoryBalancer -Full | Out-String) | Should -Match 'HostTargetPercent'
        Test-Path (Join-Path (Split-Path -Parent $Kvmoc) 'systemd/kvmoc-memory-balance.service') | Should -BeTrue
    }
}
