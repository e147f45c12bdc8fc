#Requires -Version 7.4
# Pester 5: Get-KvmTinyGuest, Start-KvmGuest and Stop-KvmGuest on real QEMU (TCG) with the tiny guest.
# Needs qemu-system-x86_64, qemu-img, apt-get/dpkg and busybox-static; every test stops what it started.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $ModulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module -Name $ModulePath -Force -ErrorAction Stop

    $Work = Join-Path ([System.IO.Path]::GetTempPath()) ("kvmoc-pester-" + [guid]::NewGuid().ToString('N').Substring(0, 8))
    $RunRoot = Join-Path $Work 'run'
    New-Item -ItemType Directory -Path $Work, $RunRoot | Out-Null
    $Tiny = Get-KvmTinyGuest
    $Common = @{ MemoryMB = 128; Accelerator = 'Tcg'; Network = 'None'; RunDirectory = $RunRoot; KernelArguments = 'quiet' }

    function Wait-Ready {
        param([Parameter(Mandatory)] $Guest, [int] $TimeoutSeconds = 90)
        $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
        while ((Get-Date) -lt $deadline) {
            if ((Test-Path -LiteralPath $Guest.SerialLog) -and (Get-Content -LiteralPath $Guest.SerialLog -Raw) -match 'KVMOC-READY') { return $true }
            Start-Sleep -Milliseconds 200
        }
        return $false
    }
}

AfterAll {
    # Whatever a failed test left running: kill by pid, then remove the work folder.
    foreach ($pidFile in @(Get-ChildItem -LiteralPath $RunRoot -Recurse -Filter 'qemu.pid' -ErrorAction SilentlyContinue)) {
        $id = [int](Get-Content -LiteralPath $pidFile.FullName -Raw)
        Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
    }
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
    Remove-Module -Name KvmOvercommit -Force -ErrorAction SilentlyContinue
}

Describe 'Get-KvmTinyGuest' {
    It 'returns a cached kernel and initramfs that exist' {
        $Tiny.Kernel | Should -Exist
        $Tiny.Initrd | Should -Exist
        $Tiny.KernelVersion | Should -Match 'cloud-amd64$'
        (Get-KvmTinyGuest).Built | Should -BeFalse
    }
}

Describe 'Start-KvmGuest and Stop-KvmGuest' {
    It 'starts guests from overlays piped in by property name and stops them gracefully' {
        $base = Join-Path $Work 'base.qcow2'
        & qemu-img create -q -f qcow2 $base 32M
        $before = (Get-FileHash -LiteralPath $base).Hash
        $disks = 1..2 | ForEach-Object {
            $p = Join-Path $Work "pipe-$_.qcow2"
            & qemu-img create -q -f qcow2 -b $base -F qcow2 $p
            Get-Item -LiteralPath $p
        }
        $guests = @($disks | Start-KvmGuest -Kernel $Tiny.Kernel -Initrd $Tiny.Initrd @Common -PassThru)
        try {
            $guests.Count | Should -Be 2
            $guests.Name | Should -Be @('pipe-1', 'pipe-2')
            foreach ($g in $guests) {
                $g.State | Should -Be 'running'
                Wait-Ready $g | Should -BeTrue
            }
            $stopped = @($guests | Stop-KvmGuest -TimeoutSeconds 20 -PassThru -Confirm:$false)
            $stopped.State | Should -Be @('stopped', 'stopped')
            foreach ($g in $guests) {
                Test-ProcessGone $g.Id | Should -BeTrue
                $g.RunDirectory | Should -Not -Exist
                $g.Disks[0] | Should -Exist
            }
            (Get-FileHash -LiteralPath $base).Hash | Should -Be $before
        }
        finally {
            $guests | Where-Object { -not (Test-ProcessGone $_.Id) } | Stop-KvmGuest -TurnOff -Force -Confirm:$false -ErrorAction SilentlyContinue
        }
    }

    It 'binds Kernel and Initrd from Get-KvmTinyGuest and handles a name with spaces, commas and quotes' {
        $name = "tiny, 'one' `"x`""
        $g = Get-KvmTinyGuest | Start-KvmGuest -Name $name @Common -PassThru
        try {
            $g.Name | Should -Be $name
            Wait-Ready $g | Should -BeTrue
            Stop-KvmGuest -Name ($name.Replace('`', '``').Replace('[', '`[')) -RunDirectory $RunRoot -TurnOff -Confirm:$false
            Test-ProcessGone $g.Id | Should -BeTrue
        }
        finally {
            Stop-Process -Id $g.Id -Force -ErrorAction SilentlyContinue
        }
    }

    It '-WhatIf starts nothing' {
        $disk = Join-Path $Work 'whatif.qcow2'
        & qemu-img create -q -f qcow2 $disk 32M
        $before = @(Get-ChildItem -LiteralPath $RunRoot -Force).Count
        # -ErrorAction Stop: an error (a binding or validation failure) must fail the test, not pass as "nothing started".
        $out = $Tiny | Start-KvmGuest -DiskPath $disk @Common -PassThru -WhatIf -ErrorAction Stop
        $out | Should -BeNullOrEmpty
        Join-Path $RunRoot 'whatif' | Should -Not -Exist
        @(Get-ChildItem -LiteralPath $RunRoot -Force).Count | Should -Be $before
        @(Get-KvmGuest | Where-Object { $_.Disks -contains $disk }) | Should -BeNullOrEmpty
    }

    It 'refuses a missing disk with ObjectNotFound and leaves nothing behind' {
        $missing = Join-Path $Work 'missing.qcow2'
        { Start-KvmGuest -DiskPath $missing @Common -ErrorAction Stop } | Should -Throw -ErrorId 'DiskNotFound*'
        Join-Path $RunRoot 'missing' | Should -Not -Exist
    }

    It 'refuses a taken name with ResourceExists' {
        $g = Get-KvmTinyGuest | Start-KvmGuest -Name 'taken' @Common -PassThru
        try {
            $err = $null
            Get-KvmTinyGuest | Start-KvmGuest -Name 'taken' @Common -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].CategoryInfo.Category | Should -Be 'ResourceExists'
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestNameTaken*'
        }
        finally {
            $g | Stop-KvmGuest -TurnOff -Force -Confirm:$false
        }
    }

    It 'reports a name that matches no guest' {
        $err = $null
        Stop-KvmGuest -Name 'no-such-guest-kvmoc' -RunDirectory $RunRoot -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }
}
