#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
# Acceptance tests of the fleet cmdlets (Get-DnsmasqLease, ConvertTo-AnsibleInventory) on a host with pwsh.
# The module is imported from $env:KVMOC_MODULE, else from the packaged folder out/KvmOvercommit/<version>.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $modulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module $modulePath -Force -ErrorAction Stop

    $leaseText = @(
        '1732262400 52:54:00:6b:3c:58 192.168.122.10 win7-01 01:52:54:00:6b:3c:58'
        '1732262410 52:54:00:6b:3c:59 192.168.122.11 win7-02 *'
        '0 52:54:00:aa:bb:cc 192.168.122.2 * *'
        'this is not a lease'
        'duid 00:01:00:01:2c:5e:1a:2b:52:54:00:00:00:01'
        '1732262500 2818051 fd00:122::10 deb-01 00:01:00:01:2c:5e:1a:2b:52:54:00:6b:3c:61'
    ) -join "`n"
    # lease files in a folder of their own (Get-ChildItem | Get-DnsmasqLease reads all of it); scratch files elsewhere
    $script:root = Join-Path ([IO.Path]::GetTempPath()) ("kvmoc-fleet-" + [guid]::NewGuid().ToString('N'))
    $script:leaseDir = Join-Path $script:root 'leases'
    $script:work = Join-Path $script:root 'work'
    $null = New-Item -ItemType Directory -Path $script:leaseDir, $script:work
    $script:leaseFile = Join-Path $script:leaseDir 'dnsmasq.leases'
    Set-Content -LiteralPath $script:leaseFile -Value $leaseText -NoNewline
    $script:statusFile = Join-Path $script:leaseDir 'virbr0.status'
    Set-Content -LiteralPath $script:statusFile -Value '[{"ip-address":"192.168.122.45","mac-address":"52:54:00:12:34:56","hostname":"deb-02","expiry-time":1732262600}]'
}

AfterAll {
    if ($script:root) { Remove-Item -LiteralPath $script:root -Recurse -Force -ErrorAction SilentlyContinue }
}

Describe 'Get-DnsmasqLease' {
    It 'reads IPv4 and IPv6 leases, infinite expiry and unnamed clients' {
        $leases = Get-DnsmasqLease -Path $script:leaseFile -WarningAction SilentlyContinue
        $leases.Count | Should -Be 4
        $w1 = $leases | Where-Object HostName -eq 'win7-01'
        $w1.IPAddress | Should -Be '192.168.122.10'
        $w1.MacAddress | Should -Be '52:54:00:6b:3c:58'
        $w1.Expiry | Should -Be ([DateTimeOffset]::FromUnixTimeSeconds(1732262400))
        $anon = $leases | Where-Object IPAddress -eq '192.168.122.2'
        $anon.HostName | Should -BeNullOrEmpty
        $anon.Expiry | Should -BeNullOrEmpty
        $v6 = $leases | Where-Object IsIPv6
        $v6.Iaid | Should -Be '2818051'
        $v6.MacAddress | Should -BeNullOrEmpty
        $v6.ServerDuid | Should -Be '00:01:00:01:2c:5e:1a:2b:52:54:00:00:00:01'
    }

    It 'warns about a corrupt line with file and line number' {
        $null = Get-DnsmasqLease -Path $script:leaseFile -WarningVariable warnings -WarningAction SilentlyContinue
        $warnings.Count | Should -Be 1
        "$($warnings[0])" | Should -BeLike '*dnsmasq.leases:4:*'
    }

    It 'takes wildcard paths and files from Get-ChildItem' {
        (Get-DnsmasqLease -Path (Join-Path $script:leaseDir '*.status')).HostName | Should -Be 'deb-02'
        $all = Get-ChildItem -Path $script:leaseDir -File | Get-DnsmasqLease -WarningAction SilentlyContinue
        $all.Count | Should -Be 5
    }

    It 'reports a missing file as ObjectNotFound' {
        Get-DnsmasqLease -Path (Join-Path $script:work 'none.leases') -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].FullyQualifiedErrorId | Should -BeLike 'LeaseFileNotFound*'
    }

    It 'round-trips through JSON and CliXml, and the view covers Deserialized objects' {
        $lease = Get-DnsmasqLease -Path $script:statusFile
        $back = $lease | ConvertTo-Json | ConvertFrom-Json
        $back.HostName | Should -Be $lease.HostName
        $back.MacAddress | Should -Be $lease.MacAddress
        $xml = Join-Path $script:work 'lease.clixml'
        $lease | Export-Clixml -LiteralPath $xml
        $deserialized = Import-Clixml -LiteralPath $xml
        $deserialized.pstypenames | Should -Contain 'Deserialized.KvmOvercommit.Engine.Fleet.DnsmasqLease'
        ($deserialized | Format-Table | Out-String) | Should -Match '52:54:00:12:34:56'
    }
}

Describe 'ConvertTo-AnsibleInventory' {
    It 'writes an INI inventory grouped by name prefix with ansible_user' {
        $ini = Get-DnsmasqLease -Path $script:leaseFile -WarningAction SilentlyContinue |
            ConvertTo-AnsibleInventory -GroupBy '^(?<group>[a-z0-9]+)-' -User admin
        $ini | Should -BeOfType [string]
        $lines = $ini -split "`n"
        $lines | Should -Contain '[win7]'
        $lines | Should -Contain 'win7-01 ansible_host=192.168.122.10 ansible_user=admin mac_address=52:54:00:6b:3c:58'
        $lines | Should -Contain '192.168.122.2 ansible_host=192.168.122.2 ansible_user=admin mac_address=52:54:00:aa:bb:cc'
    }

    It 'writes the dynamic-inventory JSON with _meta.hostvars' {
        $json = Get-DnsmasqLease -Path $script:leaseFile -WarningAction SilentlyContinue |
            ConvertTo-AnsibleInventory -Format Json -GroupMap @{ 'win7-*' = 'windows' } | ConvertFrom-Json
        $json.all.children | Should -Contain 'windows'
        $json.windows.hosts | Should -Be @('win7-01', 'win7-02')
        $json._meta.hostvars.'deb-01'.ansible_host | Should -Be 'fd00:122::10'
    }

    It 'accepts any object with Name and IPAddress, and the latest lease wins' {
        $guests = @(
            [pscustomobject]@{ Name = 'web-1'; IPAddress = @('10.0.0.1'); Expiry = [DateTimeOffset]::FromUnixTimeSeconds(100) }
            [pscustomobject]@{ Name = 'web-1'; IPAddress = @('10.0.0.2'); Expiry = [DateTimeOffset]::FromUnixTimeSeconds(200) }
            [pscustomobject]@{ Name = 'db-1'; IPAddress = '10.0.0.3' }
        )
        $verbose = $guests | ConvertTo-AnsibleInventory -Verbose 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
        "$verbose" | Should -BeLike "*web-1*latest wins: 10.0.0.2*"
        $ini = $guests | ConvertTo-AnsibleInventory
        $ini | Should -Match 'web-1 ansible_host=10.0.0.2'
        $ini | Should -Not -Match '10.0.0.1'
    }

    It 'binds Expiry as remoting delivers it (a string or a Deserialized.System.DateTimeOffset)' {
        $xml = Join-Path $script:work 'leases.clixml'
        Get-DnsmasqLease -Path $script:leaseFile -WarningAction SilentlyContinue | Export-Clixml -LiteralPath $xml
        $ini = Import-Clixml -LiteralPath $xml | ConvertTo-AnsibleInventory -ErrorAction Stop
        $ini | Should -Match 'win7-02 ansible_host=192.168.122.11'
        $later = [pscustomobject]@{ Name = 'win7-01'; IPAddress = '192.168.122.99'; Expiry = '2030-01-01T00:00:00Z' }
        $ini = @(Get-DnsmasqLease -Path $script:leaseFile -WarningAction SilentlyContinue) + $later | ConvertTo-AnsibleInventory -ErrorAction Stop
        $ini | Should -Match 'win7-01 ansible_host=192.168.122.99'
    }

    It 'is read back by ansible-inventory' -Skip:(Test-SkipUnless ([bool](Get-Command ansible-inventory -ErrorAction SilentlyContinue))) {
        $file = Join-Path $script:work 'inventory.ini'
        Get-DnsmasqLease -Path $script:leaseFile -WarningAction SilentlyContinue |
            ConvertTo-AnsibleInventory -GroupBy '^(?<group>[a-z0-9]+)-' -User admin | Set-Content -LiteralPath $file
        $errFile = Join-Path $script:work 'ansible-inventory.err'
        # Ansible refuses a non-blocking stdin (as CI gives it): give it /dev/null.
        $json = & bash -c 'exec "$@" </dev/null' bash ansible-inventory -i $file --list 2> $errFile
        $LASTEXITCODE | Should -Be 0 -Because (Get-Content -LiteralPath $errFile -Raw)
        $list = ($json -join "`n") | ConvertFrom-Json
        $list.win7.hosts | Should -Be @('win7-01', 'win7-02')
        $list._meta.hostvars.'win7-02'.ansible_user | Should -Be 'admin'
    }
}
