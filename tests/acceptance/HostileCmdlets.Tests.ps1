#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
# Hostile input to the cmdlets (issue 12): pipeline paths, -LiteralPath, by-value binding of foreign objects, and for
# every path parameter a FIFO, a unix socket, a character device, a directory, a symlink loop and a `[` name. Every
# case runs in its own pipeline with a 5 s bound (a FIFO opened for reading would block forever), must end in a clean
# ErrorRecord (our error id, a fitting category) or the right result, and must change nothing on disk.
# (The kvmoc side is in Hostile.Tests.ps1; unreadable files as nobody are in the xunit suite, since pwsh as a dotnet
# tool under /root cannot run as nobody.)

BeforeAll {
    $modulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module $modulePath -Force -ErrorAction Stop
    $script:modulePath = $modulePath
    $script:root = Join-Path ([IO.Path]::GetTempPath()) ("kvmoc-hostile-" + [guid]::NewGuid().ToString('N'))
    $null = New-Item -ItemType Directory -Path $script:root
    $script:hostile = Join-Path $script:root 'hostile'
    $null = New-Item -ItemType Directory -Path $script:hostile
    $script:base = Join-Path $script:root 'base.raw'
    $s = [IO.File]::Create($script:base); $s.SetLength(1MB); $s.Dispose()

    & mkfifo (Join-Path $script:hostile 'fifo.qcow2')
    $script:sock = [System.Net.Sockets.Socket]::new([System.Net.Sockets.AddressFamily]::Unix, [System.Net.Sockets.SocketType]::Stream, [System.Net.Sockets.ProtocolType]::Unspecified)
    $script:sock.Bind([System.Net.Sockets.UnixDomainSocketEndPoint]::new((Join-Path $script:hostile 'sock.qcow2')))
    $null = New-Item -ItemType Directory -Path (Join-Path $script:hostile 'dir.qcow2')
    $null = New-Item -ItemType SymbolicLink -Path (Join-Path $script:hostile 'loop-a.qcow2') -Target (Join-Path $script:hostile 'loop-b.qcow2')
    $null = New-Item -ItemType SymbolicLink -Path (Join-Path $script:hostile 'loop-b.qcow2') -Target (Join-Path $script:hostile 'loop-a.qcow2')
    $script:kinds = [ordered]@{
        'FIFO'             = Join-Path $script:hostile 'fifo.qcow2'
        'socket'           = Join-Path $script:hostile 'sock.qcow2'
        'character device' = '/dev/null'
        'directory'        = Join-Path $script:hostile 'dir.qcow2'
        'symlink loop'     = Join-Path $script:hostile 'loop-a.qcow2'
    }

    function script:Get-Fingerprint {
        $items = Get-ChildItem -LiteralPath $script:hostile -Force | Sort-Object Name | ForEach-Object { '{0}|{1}|{2}' -f $_.Name, $_.Attributes, $_.LinkTarget }
        $items += (Get-Item -LiteralPath /dev/null).Attributes.ToString()
        $items -join "`n"
    }

    $iss = [System.Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
    $iss.ImportPSModule($script:modulePath)
    $script:iss = $iss
    function script:New-CaseRunspace { $r = [runspacefactory]::CreateRunspace($script:iss); $r.Open(); $r }
    $script:rs = New-CaseRunspace

    # Runs one command line in a fresh pipeline of the shared runspace, bounded to 5 s.
    function script:Invoke-Bounded([string]$Script, [hashtable]$Variables = @{}) {
        $ps = [powershell]::Create()
        $ps.Runspace = $script:rs
        foreach ($k in $Variables.Keys) { $script:rs.SessionStateProxy.SetVariable($k, $Variables[$k]) }
        $null = $ps.AddScript($Script)
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $h = $ps.BeginInvoke()
        $done = $h.AsyncWaitHandle.WaitOne(5000)
        if (-not $done) {
            $null = $ps.BeginStop($null, $null)
            $script:rs = New-CaseRunspace # the blocked one is abandoned
            return [pscustomobject]@{ TimedOut = $true; Output = @(); Errors = @(); Seconds = $sw.Elapsed.TotalSeconds }
        }
        $out = try { @($ps.EndInvoke($h)) } catch { @() }
        $errs = @($ps.Streams.Error)
        if ($ps.InvocationStateInfo.Reason) { $errs += $ps.InvocationStateInfo.Reason.ErrorRecord }
        $ps.Dispose()
        [pscustomobject]@{ TimedOut = $false; Output = $out; Errors = @($errs | Where-Object { $_ }); Seconds = $sw.Elapsed.TotalSeconds }
    }

    # Every path parameter of the module, each as a command line taking $p.
    $script:pathCases = @(
        @{ Name = 'Get-QcowImage -Path';                 Script = 'Get-QcowImage -Path $p' }
        @{ Name = 'Get-QcowImage -LiteralPath';          Script = 'Get-QcowImage -LiteralPath $p' }
        @{ Name = 'Get-Item | Get-QcowImage';            Script = 'Get-Item -LiteralPath $p -Force | Get-QcowImage' }
        @{ Name = 'New-QcowOverlay -Path -Force';        Script = 'New-QcowOverlay -Path $p -BackingPath $base -Force -Confirm:$false' }
        @{ Name = 'New-QcowOverlay -Path -Force -WhatIf'; Script = 'New-QcowOverlay -Path $p -BackingPath $base -Force -WhatIf' }
        @{ Name = 'New-QcowOverlay -LiteralPath -Force'; Script = 'New-QcowOverlay -LiteralPath $p -BackingPath $base -Force -Confirm:$false' }
        @{ Name = 'New-QcowOverlay -BackingPath';        Script = 'New-QcowOverlay -Path (Join-Path $root ("new-" + [guid]::NewGuid() + ".qcow2")) -BackingPath $p' }
        @{ Name = 'Start-KvmGuest -DiskPath -WhatIf';    Script = 'Start-KvmGuest -DiskPath $p -Name hostile-whatif -Accelerator Tcg -WhatIf' }
        @{ Name = 'Start-KvmGuest -Kernel -WhatIf';      Script = 'Start-KvmGuest -Kernel $p -Name hostile-whatif -Accelerator Tcg -WhatIf' }
        @{ Name = 'Get-MdRaid -Path';                    Script = 'Get-MdRaid -Path $p' }
        @{ Name = 'Get-DnsmasqLease -Path';              Script = 'Get-DnsmasqLease -Path $p' }
        @{ Name = 'Get-DnsmasqLease -LiteralPath';       Script = 'Get-DnsmasqLease -LiteralPath $p' }
        @{ Name = 'Invoke-OvercommitExperiment -BaseImage -WhatIf'; Script = 'Invoke-OvercommitExperiment -BaseImage $p -GuestCount 1 -WhatIf' }
    )
}

AfterAll {
    if ($script:rs) { $script:rs.Dispose() }
    if ($script:sock) { $script:sock.Dispose() }
    if ($script:root) { Remove-Item -LiteralPath $script:root -Recurse -Force -ErrorAction SilentlyContinue }
}

Describe 'Hostile input: cmdlets — every path parameter with paths that are not files' {
    It '<Name> refuses a FIFO, socket, character device, directory and symlink loop within 5 s, cleanly, changing nothing' -ForEach @(
        @{ Name = 'Get-QcowImage -Path' }, @{ Name = 'Get-QcowImage -LiteralPath' }, @{ Name = 'Get-Item | Get-QcowImage' },
        @{ Name = 'New-QcowOverlay -Path -Force' }, @{ Name = 'New-QcowOverlay -Path -Force -WhatIf' }, @{ Name = 'New-QcowOverlay -LiteralPath -Force' },
        @{ Name = 'New-QcowOverlay -BackingPath' }, @{ Name = 'Start-KvmGuest -DiskPath -WhatIf' }, @{ Name = 'Start-KvmGuest -Kernel -WhatIf' },
        @{ Name = 'Get-MdRaid -Path' }, @{ Name = 'Get-DnsmasqLease -Path' }, @{ Name = 'Get-DnsmasqLease -LiteralPath' },
        @{ Name = 'Invoke-OvercommitExperiment -BaseImage -WhatIf' }
    ) {
        $case = $script:pathCases | Where-Object Name -eq $Name
        foreach ($kind in $script:kinds.Keys) {
            $p = $script:kinds[$kind]
            if ($kind -eq 'symlink loop' -and $Name -eq 'Get-Item | Get-QcowImage') { continue } # Get-Item itself refuses to follow the loop
            $before = Get-Fingerprint
            $r = Invoke-Bounded $case.Script @{ p = $p; base = $script:base; root = $script:root }
            $because = "$Name on a $kind ($p)"
            $r.TimedOut | Should -BeFalse -Because "$because must not block"
            $r.Output | Should -BeNullOrEmpty -Because $because
            $r.Errors.Count | Should -BeGreaterThan 0 -Because "$because must be an error"
            foreach ($e in $r.Errors) {
                $e.CategoryInfo.Category | Should -Not -Be 'NotSpecified' -Because "$because gave $($e.FullyQualifiedErrorId): $e"
                "$e" | Should -Not -Match 'Unexpected|Exception:|   at ' -Because $because
            }
            $ours = @($r.Errors | Where-Object { $_.FullyQualifiedErrorId -match '^(Qcow|Disk|Boot|MdStat|LeaseFile|BaseImage|Path)' })
            if ($kind -ne 'symlink loop' -or $Name -notlike 'Get-Item*') {
                $ours.Count | Should -BeGreaterThan 0 -Because "$because gave $($r.Errors.FullyQualifiedErrorId -join ', ')"
            }
            Get-Fingerprint | Should -Be $before -Because "$because must change nothing"
        }
    }

    It 'New-QcowOverlay -WhatIf never offers to replace /dev/null, and -Force never replaces a device node' {
        $r = Invoke-Bounded 'New-QcowOverlay -Path /dev/null -BackingPath $base -Force -WhatIf 6>&1' @{ base = $script:base }
        $r.TimedOut | Should -BeFalse
        ($r.Output | Out-String) | Should -Not -Match 'Replace'
        $r.Errors[0].FullyQualifiedErrorId | Should -BeLike 'QcowTargetNotRegularFile*'
        $r.Errors[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        (Get-Item -LiteralPath /dev/null).UnixFileMode | Should -Not -BeNullOrEmpty
        [IO.File]::Exists('/dev/null') | Should -BeTrue
    }

    It 'Get-QcowImage over a wildcard that matches a FIFO reads the images and refuses only the FIFO, within 5 s' {
        $dir = Join-Path $script:root 'wild'
        $null = New-Item -ItemType Directory -Path $dir
        & mkfifo (Join-Path $dir 'b.qcow2')
        $null = New-QcowOverlay -Path (Join-Path $dir 'a.qcow2') -BackingPath $script:base
        $r = Invoke-Bounded 'Get-QcowImage -Path (Join-Path $dir "*.qcow2")' @{ dir = $dir }
        $r.TimedOut | Should -BeFalse
        @($r.Output).Count | Should -Be 1
        $r.Output[0].Path | Should -Be (Join-Path $dir 'a.qcow2')
        $r.Errors.Count | Should -Be 1
        $r.Errors[0].FullyQualifiedErrorId | Should -BeLike 'QcowPathNotRegularFile*'
    }

    It 'Get-MdRaid -Path /tmp and Get-DnsmasqLease -Path /tmp say it is a directory (not PermissionDenied)' {
        $m = Invoke-Bounded 'Get-MdRaid -Path /tmp'
        $m.Errors[0].FullyQualifiedErrorId | Should -BeLike 'MdStatPathIsDirectory*'
        $m.Errors[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $d = Invoke-Bounded 'Get-DnsmasqLease -Path /tmp'
        $d.Errors[0].FullyQualifiedErrorId | Should -BeLike 'LeaseFileIsDirectory*'
        $d.Errors[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $s = Invoke-Bounded 'Start-KvmGuest -DiskPath /tmp -Name hostile-dir -Accelerator Tcg -WhatIf'
        $s.Errors[0].FullyQualifiedErrorId | Should -BeLike 'DiskPathIsDirectory*'
        "$($s.Errors[0])" | Should -Not -Match 'does not exist'
    }

    It 'a binary file given to Get-DnsmasqLease warns a few times, then says how many more lines were skipped' {
        $bin = Join-Path $script:root 'leases.bin'
        $bytes = [byte[]]::new(65536); [Random]::new(7).NextBytes($bytes); [IO.File]::WriteAllBytes($bin, $bytes)
        $warnings = @()
        $leases = Get-DnsmasqLease -Path $bin -WarningVariable warnings -WarningAction SilentlyContinue
        $leases | Should -BeNullOrEmpty
        $warnings.Count | Should -BeLessOrEqual 6
        "$($warnings[-1])" | Should -Match 'skipped \d+ more line'
    }
}

Describe 'Hostile input: cmdlets — paths from the pipeline' {
    BeforeAll {
        $script:px = Join-Path $script:root 'pipe'
        $null = New-Item -ItemType Directory -Path $script:px
        $script:bracket = New-QcowOverlay -LiteralPath (Join-Path $script:px 'hx-[br].qcow2') -BackingPath $script:base
    }

    It 'Get-ChildItem | Get-QcowImage reads hx-[br].qcow2 (FullName/PSPath bind literally)' {
        $images = @(Get-ChildItem -LiteralPath $script:px -Filter '*.qcow2' | Get-QcowImage)
        $images.Count | Should -Be 1
        $images[0].Path | Should -Be (Join-Path $script:px 'hx-[br].qcow2')
        $images[0].Format | Should -Be 'qcow2'
    }

    It 'Get-QcowImage -LiteralPath and -Path both read a name with [ ]' {
        (Get-QcowImage -LiteralPath (Join-Path $script:px 'hx-[br].qcow2')).Format | Should -Be 'qcow2'
        (Get-QcowImage -Path (Join-Path $script:px 'hx-[br].qcow2')).Format | Should -Be 'qcow2'
        (Get-Command Get-QcowImage).Parameters['LiteralPath'].Aliases | Should -Contain 'PSPath'
        (Get-Command Get-QcowImage).Parameters['LiteralPath'].Aliases | Should -Contain 'FullName'
        foreach ($c in 'New-QcowOverlay', 'Get-DnsmasqLease') {
            (Get-Command $c).Parameters.ContainsKey('LiteralPath') | Should -BeTrue -Because $c
            (Get-Command $c).Parameters['LiteralPath'].Aliases | Should -Contain 'PSPath'
        }
    }

    It 'Get-Process | New-QcowOverlay is a binding error, not a file named after the process' {
        Push-Location $script:px
        try {
            $before = @(Get-ChildItem -LiteralPath $script:px -Force).Name
            $err = $null
            $made = Get-Process -Id $PID | New-QcowOverlay -BackingPath $script:base -ErrorVariable err -ErrorAction SilentlyContinue
            $made | Should -BeNullOrEmpty
            $err.Count | Should -BeGreaterThan 0
            @(Get-ChildItem -LiteralPath $script:px -Force).Name | Should -Be $before
            Test-Path -LiteralPath (Join-Path $script:px 'System.Diagnostics.Process (dotnet)') | Should -BeFalse
            Test-Path -LiteralPath (Join-Path $script:px 'System.Diagnostics.Process (pwsh)') | Should -BeFalse
            { Get-Process -Id $PID | Get-QcowImage -ErrorAction Stop } | Should -Throw
        }
        finally { Pop-Location }
    }

    It 'strings and files still bind by value' {
        $t = Join-Path $script:px 'by-value.qcow2'
        ($t | New-QcowOverlay -BackingPath $script:base).Path | Should -Be $t
        (Get-Item -LiteralPath $t | Get-QcowImage).Path | Should -Be $t
        ($t | Get-QcowImage).Path | Should -Be $t
    }
}

Describe 'Hostile input: cmdlets — broken chains, KSM and experiment arguments' {
    It 'Get-QcowImage on an overlay whose base is deleted returns the image, marks the broken link and warns' {
        $d = Join-Path $script:root 'broken'
        $null = New-Item -ItemType Directory -Path $d
        $b = Join-Path $d 'base.raw'; $s = [IO.File]::Create($b); $s.SetLength(1MB); $s.Dispose()
        $o = New-QcowOverlay -Path (Join-Path $d 'top.qcow2') -BackingPath $b
        Remove-Item -LiteralPath $b
        $w = @()
        $img = Get-QcowImage -LiteralPath $o.Path -WarningVariable w -WarningAction SilentlyContinue -ErrorAction Stop
        $img.Format | Should -Be 'qcow2'
        $img.MissingBackingFile | Should -Be $b
        $img.BackingChain | Should -Be @($b)
        "$w" | Should -Match 'does not exist'
    }

    It 'Set-KsmTuning -Profile Advisor -PagesToScan 5 is KsmAdvisorOwnsPagesToScan' {
        { Set-KsmTuning -Profile Advisor -PagesToScan 5 -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'KsmAdvisorOwnsPagesToScan*'
    }

    It 'Invoke-OvercommitExperiment -ReportPath under a file fails before anything starts' {
        $f = Join-Path $script:root 'a-file'
        Set-Content -LiteralPath $f -Value x
        $err = $null
        try { Invoke-OvercommitExperiment -GuestCount 1 -ReportPath (Join-Path $f 'report') -WorkDirectory (Join-Path $script:root 'exp-work') -Confirm:$false -ErrorAction Stop }
        catch { $err = $_ }
        $err | Should -Not -BeNullOrEmpty
        $err.FullyQualifiedErrorId | Should -BeLike 'ExperimentReportPathInvalid*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Test-Path -LiteralPath (Join-Path $script:root 'exp-work') | Should -BeFalse
    }

    It 'Ctrl+C (a pipeline stop) during Invoke-KsmAutoTune keeps the Stopped result and leaves the low rate' -Tag 'HostLock' {
        # It changes KSM: the whole Pester suite runs under the machine-wide host lock (build.ps1 starts it under flock).
        $saved = Get-KsmStat
        $rs = New-CaseRunspace
        $ps = [powershell]::Create()
        try {
            $ps.Runspace = $rs
            $null = $ps.AddScript('Invoke-KsmAutoTune -Duration 120')
            $h = $ps.BeginInvoke()
            Start-Sleep -Seconds 2
            $ps.Stop() # what Ctrl+C does: StopProcessing, then PipelineStoppedException
            $r = $rs.SessionStateProxy.GetVariable('KsmAutoTuneResult')
            $r | Should -Not -BeNullOrEmpty
            $r.Stopped | Should -BeTrue
            $r.Duration.TotalSeconds | Should -BeGreaterThan 1
            $now = Get-KsmStat
            $now.PagesToScan | Should -Be $r.ExitPagesToScan
            $now.SleepMilliseconds | Should -Be $r.ExitSleepMilliseconds
        }
        finally {
            $ps.Dispose(); $rs.Dispose()
            $saved | Set-KsmTuning -Force
        }
    }

    It 'a dead experiment''s journal refuses the next experiment; -Recover deletes only what it recorded and removes the journal' {
        # A journal as a killed run leaves it: the pid of a process that has exited, one file it created, no KSM settings
        # (so nothing here touches KSM while other runs may use it).
        $p = Start-Process -FilePath /bin/true -PassThru; $p.WaitForExit()
        $made = Join-Path $script:root 'made-by-the-dead-run.qcow2'
        $keep = Join-Path $script:root 'not-recorded.qcow2'
        Set-Content -LiteralPath $made -Value x; Set-Content -LiteralPath $keep -Value y
        $dir = if ((id -u) -eq '0') { '/run/kvmovercommit/.journal' } else { throw 'needs root' }
        $null = New-Item -ItemType Directory -Path $dir -Force
        $id = 'pester' + [guid]::NewGuid().ToString('N').Substring(0, 6)
        $journal = Join-Path $dir "experiment-$id.json"
        @{ Kind = 'experiment'; Id = $id; Pid = $p.Id; StartTime = [DateTimeOffset]::UtcNow.ToString('o'); Files = @($made); Folders = @(); Guests = @() } |
            ConvertTo-Json | Set-Content -LiteralPath $journal
        try {
            $err = $null
            try { Invoke-OvercommitExperiment -GuestCount 1 -WhatIf -ErrorAction Stop } catch { $err = $_ }
            $err.FullyQualifiedErrorId | Should -BeLike 'ExperimentJournalFound*'
            "$($err.ErrorDetails.RecommendedAction)$($err.Exception.Message)" | Should -Match 'Recover'
            @(Invoke-OvercommitExperiment -Recover -WhatIf) | Should -BeNullOrEmpty
            Test-Path -LiteralPath $made | Should -BeTrue
            $r = @(Invoke-OvercommitExperiment -Recover -Confirm:$false)
            $r.Count | Should -Be 1
            $r[0].PSObject.TypeNames[0] | Should -Be 'KvmOvercommit.Engine.Experiment.HostJournal'
            $r[0].Recovered | Should -BeTrue
            $r[0].Id | Should -Be $id
            Test-Path -LiteralPath $made | Should -BeFalse
            Test-Path -LiteralPath $keep | Should -BeTrue
            Test-Path -LiteralPath $journal | Should -BeFalse
            ($r | Out-String) | Should -Match 'Recovered'
        }
        finally { Remove-Item -LiteralPath $journal -ErrorAction SilentlyContinue }
    }

    It 'Invoke-OvercommitExperiment and Invoke-KsmAutoTune have -Recover, which finds nothing to do on a clean host' {
        (Get-Command Invoke-OvercommitExperiment).Parameters.ContainsKey('Recover') | Should -BeTrue
        (Get-Command Invoke-KsmAutoTune).Parameters.ContainsKey('Recover') | Should -BeTrue
        @(Invoke-OvercommitExperiment -Recover -WhatIf) | Should -BeNullOrEmpty
        @(Invoke-KsmAutoTune -Recover -WhatIf) | Should -BeNullOrEmpty
    }
}
