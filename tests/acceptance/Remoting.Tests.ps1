#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
# PowerShell remoting over SSH, for real: Debian's sshd on 127.0.0.1 only (its own config, host key and client key, a
# free port; never another address) with the PowerShell subsystem, then Invoke-Command -HostName 127.0.0.1 runs the
# module on the "remote" host. Objects come back Deserialized with PSComputerName; the table views apply where the
# client has imported the module. Needs root (sshd) and openssh-server / openssh-client.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $HaveSsh = (Test-Path -LiteralPath '/usr/sbin/sshd') -and [bool](Get-Command ssh -CommandType Application -ErrorAction SilentlyContinue) -and ((id -u) -eq '0')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:ModulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module -Name $script:ModulePath -Force -ErrorAction Stop

    $script:Root = Join-Path ([IO.Path]::GetTempPath()) ('kvmoc-ssh-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $script:Root | Out-Null
    $script:Sshd = $null
    if (-not ((Test-Path -LiteralPath '/usr/sbin/sshd') -and (Get-Command ssh-keygen -ErrorAction SilentlyContinue))) { return }

    & ssh-keygen -q -t ed25519 -N '' -f (Join-Path $script:Root 'host_key') | Out-Null
    & ssh-keygen -q -t ed25519 -N '' -f (Join-Path $script:Root 'client_key') | Out-Null
    Copy-Item -LiteralPath (Join-Path $script:Root 'client_key.pub') -Destination (Join-Path $script:Root 'authorized_keys')

    # A dotnet tool's pwsh runs through the dotnet host: sshd needs an executable for the subsystem.
    $wrapper = Join-Path $script:Root 'pwsh-subsystem'
    $dotnet = (Get-Process -Id $PID).Path
    $pwshDll = Join-Path $PSHOME 'pwsh.dll'
    $launch = if (Test-Path -LiteralPath $pwshDll) { "exec '$dotnet' '$pwshDll' ""`$@""" } else { "exec '$(Join-Path $PSHOME 'pwsh')' ""`$@""" }
    Set-Content -LiteralPath $wrapper -Value "#!/bin/sh`n$launch`n"
    & chmod 755 $wrapper

    # A free loopback port: bind port 0, read it, release it.
    $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
    $listener.Start(); $script:Port = $listener.LocalEndpoint.Port; $listener.Stop()

    $config = Join-Path $script:Root 'sshd_config'
    @(
        "ListenAddress 127.0.0.1"
        "Port $script:Port"
        "HostKey $(Join-Path $script:Root 'host_key')"
        "PidFile $(Join-Path $script:Root 'sshd.pid')"
        "AuthorizedKeysFile $(Join-Path $script:Root 'authorized_keys')"
        "PermitRootLogin prohibit-password"
        "PasswordAuthentication no"
        "KbdInteractiveAuthentication no"
        "UsePAM no"
        "StrictModes no"
        "Subsystem powershell $wrapper -sshs -NoLogo -NoProfile"
    ) | Set-Content -LiteralPath $config
    New-Item -ItemType Directory -Path '/run/sshd' -Force | Out-Null   # sshd's privilege-separation folder
    $script:SshdLog = Join-Path $script:Root 'sshd.log'
    $script:Sshd = Start-Process -FilePath '/usr/sbin/sshd' -ArgumentList @('-D', '-e', '-f', $config) -RedirectStandardError $script:SshdLog -PassThru
    $deadline = (Get-Date).AddSeconds(10)
    while ((Get-Date) -lt $deadline) {
        $c = [System.Net.Sockets.TcpClient]::new()
        try { $c.Connect('127.0.0.1', $script:Port); break } catch { Start-Sleep -Milliseconds 100 } finally { $c.Dispose() }
    }

    $script:Remote = @{
        HostName    = '127.0.0.1'
        Port        = $script:Port
        UserName    = 'root'
        KeyFilePath = (Join-Path $script:Root 'client_key')
        Options     = @{ StrictHostKeyChecking = 'no'; UserKnownHostsFile = '/dev/null'; LogLevel = 'ERROR'; BatchMode = 'yes' }
    }
    $script:Leases = Join-Path $script:Root 'dnsmasq.leases'
    Set-Content -LiteralPath $script:Leases -Value @(
        '1732262400 52:54:00:6b:3c:58 192.168.122.10 win7-01 01:52:54:00:6b:3c:58'
        '1732262410 52:54:00:6b:3c:59 192.168.122.11 win7-02 *'
    )
}

AfterAll {
    if ($script:Sshd) { Stop-Process -Id $script:Sshd.Id -Force -ErrorAction SilentlyContinue; $script:Sshd.WaitForExit(5000) | Out-Null }
    if ($script:Root) { Remove-Item -LiteralPath $script:Root -Recurse -Force -ErrorAction SilentlyContinue }
}

Describe 'Remoting over SSH (Invoke-Command -HostName 127.0.0.1)' {
    It 'listens on 127.0.0.1 only' -Skip:(Test-SkipUnless $HaveSsh) {
        $script:Sshd.HasExited | Should -BeFalse -Because (Get-Content -LiteralPath $script:SshdLog -Raw -ErrorAction SilentlyContinue)
        # The local address column of every listening socket on that port.
        $local = @(& ss -Hltn "sport = :$($script:Port)" | ForEach-Object { (-split $_)[3] })
        $local.Count | Should -BeGreaterThan 0
        $local | Should -Be (@("127.0.0.1:$($script:Port)") * $local.Count)
    }

    It 'returns Deserialized KsmStat, guests and the report with PSComputerName' -Skip:(Test-SkipUnless $HaveSsh) {
        $out = Invoke-Command @script:Remote -ErrorAction Stop -ScriptBlock {
            Import-Module -Name $using:ModulePath -ErrorAction Stop
            Get-KsmStat
            Get-KvmGuest
            Get-OvercommitReport -IopsSampleSeconds 0.2 -SkipDiskImages
        }
        $stat = @($out | Where-Object { $_.PSObject.TypeNames[0] -eq 'Deserialized.KvmOvercommit.Engine.Ksm.KsmStat' })
        $stat.Count | Should -Be 1
        $stat[0].PSComputerName | Should -Be '127.0.0.1'
        $stat[0].PagesToScan | Should -Be (Get-KsmStat).PagesToScan
        $report = @($out | Where-Object { $_.PSObject.TypeNames[0] -eq 'Deserialized.KvmOvercommit.Engine.HostInfo.OvercommitReport' })
        $report.Count | Should -Be 1
        $report[0].PSComputerName | Should -Be '127.0.0.1'
        $report[0].MemoryTotalBytes | Should -BeGreaterThan 0
        # Get-KvmGuest there lists the guests of that host: the same as here (it is this host).
        @($out | Where-Object { $_.PSObject.TypeNames[0] -like 'Deserialized.KvmOvercommit.Engine.Qemu.KvmGuest' }).Count | Should -Be @(Get-KvmGuest).Count
    }

    It 'renders the table views for Deserialized objects when the client imported the module' -Skip:(Test-SkipUnless $HaveSsh) {
        $stat = Invoke-Command @script:Remote -ErrorAction Stop -ScriptBlock { Import-Module -Name $using:ModulePath; Get-KsmStat }
        $local = Get-KsmStat | Format-Table | Out-String -Width 120
        $remote = $stat | Format-Table | Out-String -Width 120
        $header = ($local -split "`n" | Where-Object { $_.Trim() } | Select-Object -First 1).Trim()
        $header | Should -Match 'Saved\(MiB\)'
        $remote | Should -Match ([regex]::Escape($header))
        # Without the module on the client there is no view: PowerShell's default list of every property.
        # Without the module on the client (a runspace of its own) there is no view: PowerShell's default rendering.
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript({
                    param($Remote, $M)
                    Invoke-Command @Remote -ScriptBlock { Import-Module -Name $using:M; Get-KsmStat } | Format-Table | Out-String -Width 120
                }).AddArgument($script:Remote).AddArgument($script:ModulePath)
            $plain = $ps.Invoke()
            $ps.Streams.Error | Should -BeNullOrEmpty
        }
        finally { $ps.Dispose() }
        ($plain -join "`n") | Should -Match 'PagesToScan'
        ($plain -join "`n") | Should -Not -Match 'Saved\(MiB\)'
    }

    It 'pipes remote leases into ConvertTo-AnsibleInventory' -Skip:(Test-SkipUnless $HaveSsh) {
        $ini = Invoke-Command @script:Remote -ErrorAction Stop -ScriptBlock {
            Import-Module -Name $using:ModulePath
            Get-DnsmasqLease -Path $using:Leases
        } | ConvertTo-AnsibleInventory -ErrorAction Stop
        ($ini -join "`n") | Should -Match 'win7-01 ansible_host=192\.168\.122\.10'
        ($ini -join "`n") | Should -Match 'win7-02 ansible_host=192\.168\.122\.11'
    }

    It 'brings a remote error back as an ErrorRecord with its error id' -Skip:(Test-SkipUnless $HaveSsh) {
        $missing = Join-Path $script:Root 'no-such.qcow2'
        Invoke-Command @script:Remote -ErrorVariable err -ErrorAction SilentlyContinue -ScriptBlock {
            Import-Module -Name $using:ModulePath
            Get-QcowImage -Path $using:missing
        } | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'Qcow*,KvmOvercommit.Commands.GetQcowImageCommand'
        $err[0].TargetObject | Should -Be $missing
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].OriginInfo.PSComputerName | Should -Be '127.0.0.1'
    }
}
