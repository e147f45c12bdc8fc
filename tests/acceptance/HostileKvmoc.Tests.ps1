#Requires -Version 7.4
# Pester 5 acceptance tests of issue 12's kvmoc and validation findings (1, 8, 10, 11, 16, 18): one validation in the
# engine, so the cmdlets refuse what kvmoc refuses with the same error ids; kvmoc refuses misspelled options with
# nothing done. The cmdlets' path and fault cases are in HostileCmdlets.Tests.ps1. Nothing here changes the host:
# every case is refused before it acts, or runs with -WhatIf / --what-if.

BeforeAll {
    $modulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module $modulePath -Force
    $repo = Split-Path -Parent (Split-Path -Parent $PSScriptRoot)
    $script:Kvmoc = if ($env:KVMOC_CLI) { $env:KVMOC_CLI } else { Join-Path $repo 'src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc.dll' }
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "kvmoc-hostile-pester-$([guid]::NewGuid().ToString('N'))"
    New-Item -ItemType Directory -Path $script:Work | Out-Null
    $script:Raw = Join-Path $script:Work 'base.raw'
    $f = [IO.File]::Create($script:Raw); $f.SetLength(1MB); $f.Dispose()
    $script:Base = Join-Path $script:Work 'base.qcow2'
    New-QcowOverlay -Path $script:Base -BackingPath $script:Raw -BackingFormat raw | Out-Null

    # Runs kvmoc (the JIT build through dotnet); returns exit code, stdout and stderr.
    function script:Invoke-Kvmoc([string[]] $Arguments) {
        $out = & dotnet $script:Kvmoc @Arguments 2>$script:ErrFile
        [pscustomobject]@{ Code = $LASTEXITCODE; Out = ($out -join "`n"); Err = (Get-Content -Raw -LiteralPath $script:ErrFile) }
    }
    $script:ErrFile = Join-Path $script:Work 'stderr.txt'

    # The error a script block stops with (terminating or, with -ErrorAction Stop, the first non-terminating one).
    function script:Get-ErrorOf([scriptblock] $Block) {
        try { & $Block -ErrorAction Stop | Out-Null } catch { return $_ }
        throw 'no error'
    }
}

AfterAll {
    Remove-Item -LiteralPath $script:Work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Hostile input: validation of durations, intervals, counts, staggers and timeouts' {
    It 'Watch-KsmStat -Duration <Duration> is InvalidDuration, as kvmoc ksm watch --duration is' -TestCases @(
        @{ Duration = 0 }, @{ Duration = -5 }, @{ Duration = '00:00:00' }
    ) {
        $e = Get-ErrorOf { Watch-KsmStat -Duration $Duration -Count 1 }
        $e.FullyQualifiedErrorId | Should -BeLike 'InvalidDuration,*'
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $k = Invoke-Kvmoc @('ksm', 'watch', '--duration', "$Duration", '--count', '1')
        $k.Code | Should -Be 2
        $k.Err | Should -BeLike 'InvalidDuration: *'
    }

    It 'Invoke-KsmAutoTune -Duration -1 -WhatIf is InvalidDuration (not "for -1 s")' {
        $e = Get-ErrorOf { Invoke-KsmAutoTune -Duration -1 -WhatIf }
        $e.FullyQualifiedErrorId | Should -BeLike 'InvalidDuration,*'
        (Invoke-Kvmoc @('ksm', 'autotune', '--duration', '-1')).Err | Should -BeLike 'InvalidDuration: *'
    }

    It 'Watch-KsmStat -IntervalSeconds 0.001 is InvalidInterval and -StableSamples 0 InvalidStableSamples' {
        (Get-ErrorOf { Watch-KsmStat -IntervalSeconds 0.001 -Count 1 }).FullyQualifiedErrorId | Should -BeLike 'InvalidInterval,*'
        (Get-ErrorOf { Watch-KsmStat -StableSamples 0 -UntilStable }).FullyQualifiedErrorId | Should -BeLike 'InvalidStableSamples,*'
        (Invoke-Kvmoc @('ksm', 'watch', '--interval-seconds', '0.001')).Err | Should -BeLike 'InvalidInterval: *'
        (Invoke-Kvmoc @('ksm', 'watch', '--stable-samples', '0')).Err | Should -BeLike 'InvalidStableSamples: *'
    }

    It 'Measure-DeviceIops -Count with -Continuous says they exclude each other (CountWithContinuous, not AmbiguousParameterSet)' {
        $e = Get-ErrorOf { Measure-DeviceIops -Count 2 -Continuous }
        $e.FullyQualifiedErrorId | Should -BeLike 'CountWithContinuous,*'
        $e.Exception.Message | Should -BeLike '*-Count and -Continuous exclude each other*'
        (Get-ErrorOf { Measure-KvmGuestIops -Count 2 -Continuous }).FullyQualifiedErrorId | Should -BeLike 'CountWithContinuous,*'
        (Get-ErrorOf { Measure-ProcessIops -Id $PID -Count 2 -Continuous }).FullyQualifiedErrorId | Should -BeLike 'CountWithContinuous,*'
        $k = Invoke-Kvmoc @('iops', '--count', '2', '--continuous')
        $k.Code | Should -Be 2
        $k.Err | Should -BeLike 'CountWithContinuous: --count and --continuous exclude each other*'
    }

    It 'Start-KvmGuest -StaggerSeconds takes 1.5 and a TimeSpan, and refuses -1 (InvalidStagger)' {
        (Get-Command Start-KvmGuest).Parameters['StaggerSeconds'].ParameterType | Should -Be ([double])
        $disks = 1..2 | ForEach-Object { Join-Path $script:Work "stagger-$_.qcow2" }
        $disks | New-QcowOverlay -BackingPath $script:Base | Out-Null
        { Get-Item -LiteralPath $disks | Start-KvmGuest -StaggerSeconds 1.5 -Accelerator Tcg -NoVnc -Network None -WhatIf -ErrorAction Stop } | Should -Not -Throw
        { Get-Item -LiteralPath $disks | Start-KvmGuest -StaggerSeconds (New-TimeSpan -Seconds 90) -Accelerator Tcg -NoVnc -Network None -WhatIf -ErrorAction Stop } | Should -Not -Throw
        (Get-ErrorOf { Start-KvmGuest -DiskPath $disks[0] -StaggerSeconds -1 -WhatIf }).FullyQualifiedErrorId | Should -BeLike 'InvalidStagger,*'
        (Invoke-Kvmoc @('guest', 'start', $disks[0], '--stagger-seconds', '-1', '--what-if')).Err | Should -BeLike 'InvalidStagger: *'
        (Invoke-Kvmoc @('guest', 'start', $disks[0], '--stagger-seconds', '1.5', '--what-if', '--accelerator', 'Tcg', '--no-vnc', '--network', 'None')).Code | Should -Be 0
    }

    It 'Stop-KvmGuest and Start-KvmGuest -TimeoutSeconds 0 are InvalidTimeout' {
        (Get-ErrorOf { Stop-KvmGuest -Name 'hostile-no-such-guest' -TimeoutSeconds 0 }).FullyQualifiedErrorId | Should -BeLike 'InvalidTimeout,*'
        (Invoke-Kvmoc @('guest', 'stop', 'hostile-no-such-guest', '--timeout-seconds', '0')).Err | Should -BeLike 'InvalidTimeout: *'
    }

    It 'New-QcowOverlay -SizeBytes ([long]::MaxValue) is QcowSizeTooLarge: no warning, no OverflowException, also with -WhatIf' {
        foreach ($whatIf in $false, $true) {
            $target = Join-Path $script:Work 'huge.qcow2'
            $err = $null; $warn = $null
            New-QcowOverlay -Path $target -BackingPath $script:Base -SizeBytes ([long]::MaxValue) -WhatIf:$whatIf -ErrorVariable err -WarningVariable warn -ErrorAction SilentlyContinue | Out-Null
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowSizeTooLarge,*'
            $err[0].Exception | Should -Not -BeOfType [System.OverflowException]
            $warn | Should -BeNullOrEmpty
            Test-Path -LiteralPath $target | Should -BeFalse
        }
        $k = Invoke-Kvmoc @('qcow', 'overlay', '-b', $script:Base, '--size-bytes', '9223372036854775296', '--what-if', (Join-Path $script:Work 'huge.qcow2'))
        $k.Code | Should -Be 2
        $k.Err | Should -BeLike 'QcowSizeTooLarge: *'
        $k.Out | Should -Not -BeLike '*What if*'
    }
}

Describe 'Hostile input: kvmoc options, messages and pipes' {
    It 'a misspelled option before a path is exit 2 with "Did you mean", and the file is untouched' {
        $data = Join-Path $script:Work 'data.qcow2'
        New-QcowOverlay -Path $data -BackingPath $script:Base | Out-Null
        $hash = (Get-FileHash -LiteralPath $data).Hash
        Push-Location $script:Work
        try { $k = Invoke-Kvmoc @('qcow', 'overlay', '-b', $script:Base, '--force', '--what-iff', $data) } finally { Pop-Location }
        $k.Code | Should -Be 2
        $k.Err | Should -BeLike "UnknownOption: 'kvmoc qcow overlay' has no option '--what-iff'; nothing was done. Did you mean '--what-if'?*"
        (Get-FileHash -LiteralPath $data).Hash | Should -Be $hash
        Test-Path -LiteralPath (Join-Path $script:Work '--what-iff') | Should -BeFalse
    }

    It 'kvmoc <Line> is exit 2 and does nothing' -TestCases @(
        @{ Line = 'host mdstat --jsn' }, @{ Line = 'guest stop --what-iff hostile-no-such-guest' },
        @{ Line = 'guest memory hostile-no-such-guest --target-mb 100 --what-iff' }, @{ Line = 'ksm watch --intervl-seconds 1' }
    ) {
        $k = Invoke-Kvmoc ($Line -split ' ')
        $k.Code | Should -Be 2
        $k.Err | Should -BeLike 'UnknownOption: *Did you mean*'
        $k.Out | Should -BeNullOrEmpty
    }

    It 'names kvmoc options in its messages (--size-bytes, --memory-mb), not pwsh parameters' {
        $k = Invoke-Kvmoc @('experiment', '--what-if', '--memory-mb', '8')
        $k.Code | Should -Be 2
        $k.Err | Should -BeLike '*--memory-mb 8*'
        $k.Err | Should -Not -BeLike '*-MemoryMB*'
        $k = Invoke-Kvmoc @('qcow', 'overlay', '-F', 'bogus', '--size-bytes', '1048576', '-b', $script:Base, (Join-Path $script:Work 'bogus.qcow2'))
        $k.Err | Should -BeLike 'QcowBadBackingFormat: *'
        $k.Err | Should -Not -BeLike '*Pass -SizeBytes*'
    }

    It 'kvmoc ksm watch | head -2 ends once head has its lines' {
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $lines = bash -c "timeout 30 dotnet '$script:Kvmoc' ksm watch --interval-seconds 0.2 | head -3; echo `"status `${PIPESTATUS[0]}`""
        $sw.Elapsed.TotalSeconds | Should -BeLessThan 25
        $lines[-1] | Should -Be 'status 141'
    }
}
