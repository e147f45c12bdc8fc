#Requires -Version 7.4
# Pester 5: Get-KvmGuest, Get-/Set-KvmGuestMemory and Measure-KvmGuestIops on real QEMU (TCG) with the tiny guest,
# next to a QEMU started by hand. Needs qemu-system-x86_64, qemu-img, apt-get/dpkg and busybox-static.
# Every test stops what it started (AfterAll kills by pid whatever is left).

BeforeAll {
    $ModulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module -Name $ModulePath -Force -ErrorAction Stop

    $Work = Join-Path ([System.IO.Path]::GetTempPath()) ('kvmoc-guestops-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    $RunRoot = Join-Path $Work 'run'
    New-Item -ItemType Directory -Path $Work, $RunRoot | Out-Null
    $Tiny = Get-KvmTinyGuest
    $Suffix = [guid]::NewGuid().ToString('N').Substring(0, 6)
    $Common = @{ MemoryMB = 128; Accelerator = 'Tcg'; Network = 'None'; RunDirectory = $RunRoot; Kernel = $Tiny.Kernel; Initrd = $Tiny.Initrd }
    $HandPids = [System.Collections.Generic.List[int]]::new()

    function Wait-Ready {
        param([Parameter(Mandatory)] $Guest, [int] $TimeoutSeconds = 90)
        $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
        while ((Get-Date) -lt $deadline) {
            if ((Test-Path -LiteralPath $Guest.SerialLog) -and (Get-Content -LiteralPath $Guest.SerialLog -Raw) -match 'KVMOC-READY') { return $true }
            Start-Sleep -Milliseconds 200
        }
        return $false
    }

    function Start-HandQemu {
        param([Parameter(Mandatory)] [string] $Name)
        $pidFile = Join-Path $Work "$Name.pid"
        & qemu-system-x86_64 -machine none -display none -nodefaults -name "guest=$Name,debug-threads=on" -m 64 `
            -qmp "unix:$(Join-Path $Work "$Name.sock"),server=on,wait=off" -daemonize -pidfile $pidFile
        $id = [int](Get-Content -LiteralPath $pidFile -Raw)
        $HandPids.Add($id)
        return $id
    }
}

AfterAll {
    foreach ($id in $HandPids) { Stop-Process -Id $id -Force -ErrorAction SilentlyContinue }
    foreach ($pidFile in @(Get-ChildItem -LiteralPath $RunRoot -Recurse -Filter 'qemu.pid' -ErrorAction SilentlyContinue)) {
        Stop-Process -Id ([int](Get-Content -LiteralPath $pidFile.FullName -Raw)) -Force -ErrorAction SilentlyContinue
    }
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
    Remove-Module -Name KvmOvercommit -Force -ErrorAction SilentlyContinue
}

Describe 'Get-KvmGuest' {
    It 'lists a hand-started QEMU with its name, memory and QMP state' {
        $id = Start-HandQemu -Name "hand-$Suffix"
        try {
            $g = Get-KvmGuest -Name "hand-$Suffix"
            $g.Id | Should -Be $id
            $g.MemoryMB | Should -Be 64
            $g.State | Should -Be 'running'
            $g.RssBytes | Should -BeGreaterThan 0
            (Get-KvmGuest -Id $id).Name | Should -Be "hand-$Suffix"
            (Get-KvmGuest -Name 'hand-*') | Where-Object Id -EQ $id | Should -Not -BeNullOrEmpty
        }
        finally {
            Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
        }
    }

    It 'reports a missing exact name as ObjectNotFound' {
        Get-KvmGuest -Name "no-such-guest-$Suffix" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestNotFound*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }
}

Describe 'Set-KvmGuestMemory and Get-KvmGuestMemory' {
    It 'shrinks a tiny guest through its balloon, from the pipeline' {
        $g = Start-KvmGuest @Common -Name "balloon-$Suffix" -PassThru
        try {
            Wait-Ready $g | Should -BeTrue
            (Get-KvmGuest -Name $g.Name | Get-KvmGuestMemory).ActualMB | Should -Be 128
            $r = Get-KvmGuest -Name $g.Name | Set-KvmGuestMemory -TargetMB 64 -Wait -PassThru
            $r.PreviousActualMB | Should -Be 128
            $r.ActualMB | Should -BeLessOrEqual 65
            (Get-KvmGuestMemory -Name $g.Name).TargetMB | Should -Be 64
            Set-KvmGuestMemory -Name $g.Name -TargetMB 32 -WhatIf
            (Get-KvmGuestMemory -Name $g.Name).TargetMB | Should -Be 64
        }
        finally {
            Stop-KvmGuest -Name $g.Name -TurnOff -Force -Confirm:$false -ErrorAction SilentlyContinue
        }
    }

    It 'says clearly when a guest has no balloon device' {
        $id = Start-HandQemu -Name "noballoon-$Suffix"
        try {
            Get-KvmGuestMemory -Id $id -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestHasNoBalloon*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidOperation'
        }
        finally {
            Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
        }
    }
}

Describe 'Measure-KvmGuestIops' {
    It 'shows the writes of a guest writing its overlay, and the base stays byte-identical' {
        $base = Join-Path $Work 'base.qcow2'
        $overlay = Join-Path $Work "writer-$Suffix.qcow2"
        & qemu-img create -q -f qcow2 $base 8M
        & qemu-img create -q -f qcow2 -b $base -F qcow2 $overlay
        $hash = (Get-FileHash -LiteralPath $base -Algorithm SHA256).Hash
        $g = Start-KvmGuest @Common -DiskPath $overlay -KernelArguments 'kvmoc.io=write' -PassThru
        try {
            Wait-Ready $g | Should -BeTrue
            $rows = @(Get-KvmGuest -Name $g.Name | Measure-KvmGuestIops -IntervalSeconds 2 -Count 2)
            $rows.Count | Should -Be 2
            $rows | ForEach-Object { $_.WriteOpsPerSec | Should -BeGreaterThan 0 }
            $rows[0].Name | Should -Be $g.Name
            $rows[0].IntervalSeconds | Should -BeGreaterThan 1.5
        }
        finally {
            Stop-KvmGuest -Name $g.Name -TurnOff -Force -Confirm:$false -ErrorAction SilentlyContinue
        }
        (Get-FileHash -LiteralPath $base -Algorithm SHA256).Hash | Should -Be $hash
    }
}
