#Requires -Version 7.4
# Pester 5: per-guest I/O limits (Set-/Get-KvmGuestIoLimit, Start-KvmGuest -IopsLimit) on real QEMU (TCG) with the
# tiny guest writing its disk flat out (kvmoc.io=write), and the IOPS budget of Get-OvercommitReport.
# Needs qemu-system-x86_64, qemu-img, apt-get/dpkg and busybox-static. Every guest started here is stopped
# (AfterAll kills by pid whatever is left).

BeforeAll {
    $ModulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module -Name $ModulePath -Force -ErrorAction Stop

    $Work = Join-Path ([System.IO.Path]::GetTempPath()) ('kvmoc-iops-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    $RunRoot = Join-Path $Work 'run'
    New-Item -ItemType Directory -Path $Work, $RunRoot | Out-Null
    $Tiny = Get-KvmTinyGuest
    $Suffix = [guid]::NewGuid().ToString('N').Substring(0, 6)
    $Common = @{ MemoryMB = 128; Accelerator = 'Tcg'; Network = 'None'; RunDirectory = $RunRoot; Kernel = $Tiny.Kernel; Initrd = $Tiny.Initrd; NoVnc = $true }

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
    foreach ($pidFile in @(Get-ChildItem -LiteralPath $RunRoot -Recurse -Filter 'qemu.pid' -ErrorAction SilentlyContinue)) {
        Stop-Process -Id ([int](Get-Content -LiteralPath $pidFile.FullName -Raw)) -Force -ErrorAction SilentlyContinue
    }
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
    Remove-Module -Name KvmOvercommit -Force -ErrorAction SilentlyContinue
}

Describe 'Set-KvmGuestIoLimit and Get-KvmGuestIoLimit' {
    BeforeAll {
        $disk = Join-Path $Work 'limited.qcow2'
        & qemu-img create -f qcow2 $disk 16M | Out-Null
        $script:Guest = Start-KvmGuest @Common -Name "iops-limit-$Suffix" -DiskPath $disk -KernelArguments 'kvmoc.io=write' -IopsLimit 200 -PassThru
        Wait-Ready $script:Guest | Should -BeTrue
    }
    AfterAll {
        if ($script:Guest) { Stop-KvmGuest -Name $script:Guest.Name -TurnOff -Force -RunDirectory $RunRoot -ErrorAction SilentlyContinue }
    }

    It 'caps a guest writing flat out at 200 IOPS over 10 s (Start-KvmGuest -IopsLimit) and reads the limit back' {
        $limit = Get-KvmGuestIoLimit -Name $script:Guest.Name
        $limit.Drive | Should -Be 'virtio0'
        $limit.Iops | Should -Be 200
        $limit.Throttled | Should -BeTrue
        $limit.QdevId | Should -Match '^/machine/'
        $m = $script:Guest | Measure-KvmGuestIops -IntervalSeconds 10
        $m.Iops | Should -BeLessOrEqual 210
        $m.Iops | Should -BeGreaterThan 20
        ($limit | Out-String -Width 120) | Should -Match 'Iops\s+Read/Write'
    }

    It '-WhatIf changes nothing' {
        Set-KvmGuestIoLimit -Name $script:Guest.Name -Iops 0 -Bps 1MB -WhatIf
        $after = Get-KvmGuestIoLimit -Name $script:Guest.Name
        $after.Iops | Should -Be 200
        $after.Bps | Should -Be 0
    }

    It 'removes the limit with 0, -PassThru returns the previous limits, and piping them back restores them' {
        $old = Set-KvmGuestIoLimit -Name $script:Guest.Name -Iops 0 -PassThru
        $old.Iops | Should -Be 200
        (Get-KvmGuestIoLimit -Name $script:Guest.Name).Throttled | Should -BeFalse
        $free = Measure-KvmGuestIops -Name $script:Guest.Name -IntervalSeconds 5
        $free.Iops | Should -BeGreaterThan 630   # "far above": more than 3 × the limit
        $old | Set-KvmGuestIoLimit
        (Get-KvmGuestIoLimit -Name $script:Guest.Name).Iops | Should -Be 200
    }

    It 'sets bursts, read/write limits and a throttle group, and reports QEMU refusing a burst without its limit' {
        Get-KvmGuest -Name $script:Guest.Name | Set-KvmGuestIoLimit -Iops 300 -IopsMax 600 -IopsMaxLength 3 -Group "grp-$Suffix"
        $l = Get-KvmGuestIoLimit -Name $script:Guest.Name -Drive virtio0
        $l.Iops, $l.IopsMax, $l.IopsMaxLength, $l.Group | Should -Be @(300, 600, 3, "grp-$Suffix")
        Set-KvmGuestIoLimit -Name $script:Guest.Name -IopsRead 100 -IopsWrite 50 -BpsWrite 4MB
        $l = Get-KvmGuestIoLimit -Name $script:Guest.Name
        $l.Iops, $l.IopsRead, $l.IopsWrite, $l.BpsWrite, $l.IopsMax | Should -Be @(0, 100, 50, 4194304, 0)
        Set-KvmGuestIoLimit -Name $script:Guest.Name -BpsMax 100 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'IoLimitInvalid*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        Get-KvmGuestIoLimit -Name $script:Guest.Name -Drive nosuch -ErrorVariable err2 -ErrorAction SilentlyContinue
        $err2[0].FullyQualifiedErrorId | Should -BeLike 'DriveNotFound*'
        Set-KvmGuestIoLimit -Name $script:Guest.Name -IopsRead 0 -IopsWrite 0 -BpsWrite 0
        (Get-KvmGuestIoLimit -Name $script:Guest.Name).Throttled | Should -BeFalse
    }

    It 'kvmoc guest io-limit reads and sets the same limits' {
        $repo = Resolve-Path (Join-Path $PSScriptRoot '../..')
        $kvmoc = if ($env:KVMOC_CLI) { $env:KVMOC_CLI } else { Join-Path $repo 'src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc.dll' }
        $prev = & dotnet $kvmoc guest io-limit $script:Guest.Name --iops 250 --pass-thru --json | ConvertFrom-Json
        $LASTEXITCODE | Should -Be 0
        $prev.Iops | Should -Be 0
        (& dotnet $kvmoc guest io-limit $script:Guest.Name --json | ConvertFrom-Json).Iops | Should -Be 250
        (Get-KvmGuestIoLimit -Name $script:Guest.Name).Iops | Should -Be 250
    }

    It 'Get-OvercommitReport -DeviceIopsCapacity sums the guests'' IOPS limits into IopsRatio and explains the budget' {
        Set-KvmGuestIoLimit -Name $script:Guest.Name -Iops 250
        $r = Get-OvercommitReport -DeviceIopsCapacity 5000 -IopsSampleSeconds 2 -SkipDiskImages
        $r.DeviceIopsCapacity | Should -Be 5000
        $r.DeviceIopsCapacitySource | Should -Be 'given'
        $r.IopsLimitSum | Should -BeGreaterOrEqual 250
        $r.GuestsWithIopsLimit | Should -BeGreaterOrEqual 1
        $r.IopsRatio | Should -Be ([math]::Round($r.IopsLimitSum / 5000, 3))
        $r.PeakIops | Should -BeGreaterOrEqual $r.CurrentIops
        $r.EstimatedAdditionalGuestsByIops | Should -Not -BeNullOrEmpty
        $r.LimitingResource | Should -BeIn @('Memory', 'Iops')
        ($r.Explanation -join "`n") | Should -Match 'IopsRatio = IOPS limits / capacity = \d+ / 5000 \(given\)'
        ($r.Explanation -join "`n") | Should -Match 'EstimatedAdditionalGuestsByIops = floor.* = floor\(\(5000 − '
    }

    It 'refuses a call without any limit and a guest without a disk limit at start' {
        { Set-KvmGuestIoLimit -Name $script:Guest.Name -ErrorAction Stop } | Should -Throw -ErrorId 'IoLimitNotSpecified*'
        $t = Get-KvmTinyGuest   # afresh: other runs may rebuild the cached initramfs meanwhile
        Start-KvmGuest @Common -Name "iops-nodisk-$Suffix" -Kernel $t.Kernel -Initrd $t.Initrd -IopsLimit 10 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'IoLimitNeedsDisk*'
    }
}

Describe 'Measure-DeviceIopsCapacity' {
    It 'measures the device under a folder with fio, removes its file, and pipes into Get-OvercommitReport' {
        # /var/tmp: on this kind of machine /tmp may be a tmpfs, which has no O_DIRECT.
        $dir = Join-Path '/var/tmp' "kvmoc-iops-cap-$Suffix"
        New-Item -ItemType Directory -Path $dir | Out-Null
        try {
            $c = Measure-DeviceIopsCapacity -Path $dir -DurationSeconds 2 -FileSizeMB 32
            $c.Iops | Should -BeGreaterThan 100
            $c.ReadIops + $c.WriteIops | Should -BeGreaterOrEqual ($c.Iops - 0.2)
            $c.Device | Should -Not -BeNullOrEmpty
            $c.CommandLine | Should -Match '--rw=randrw'
            @(Get-ChildItem -LiteralPath $dir -Force).Count | Should -Be 0
            ($c | Out-String -Width 120) | Should -Match 'Iops\s+Read/s\s+Write/s'
            $r = $c | Get-OvercommitReport -IopsSampleSeconds 1 -SkipDiskImages
            $r.DeviceIopsCapacity | Should -Be $c.Iops
            $m = Get-OvercommitReport -MeasureIopsCapacityPath $dir -IopsSampleSeconds 1 -SkipDiskImages
            $m.DeviceIopsCapacitySource | Should -BeLike "measured (fio on $dir*"
            @(Get-ChildItem -LiteralPath $dir -Force).Count | Should -Be 0
            Measure-DeviceIopsCapacity -Path (Join-Path $dir 'nope') -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'PathNotFound*'
        }
        finally { Remove-Item -LiteralPath $dir -Recurse -Force -ErrorAction SilentlyContinue }
    }

    It 'kvmoc host iops-capacity prints the same object' {
        $repo = Resolve-Path (Join-Path $PSScriptRoot '../..')
        $kvmoc = if ($env:KVMOC_CLI) { $env:KVMOC_CLI } else { Join-Path $repo 'src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc.dll' }
        $dir = Join-Path '/var/tmp' "kvmoc-iops-cli-$Suffix"
        New-Item -ItemType Directory -Path $dir | Out-Null
        try {
            $c = & dotnet $kvmoc host iops-capacity $dir --duration-seconds 1 --file-size-mb 16 --json | ConvertFrom-Json
            $LASTEXITCODE | Should -Be 0
            $c.Iops | Should -BeGreaterThan 100
            @(Get-ChildItem -LiteralPath $dir -Force).Count | Should -Be 0
        }
        finally { Remove-Item -LiteralPath $dir -Recurse -Force -ErrorAction SilentlyContinue }
    }
}

Describe 'The blog''s fleet loop with the cmdlets: fleet tiny guest, isolated network, leases, inventory, Ansible' {
    BeforeAll {
        # A network namespace with a bridge and a real dnsmasq, made here with ip (the experiment's -Network Isolated
        # makes the same); the guest's QEMU runs inside it (Start-KvmGuest -NetworkNamespace).
        $script:Ns = "kvmoc-net-p$Suffix"
        $script:NetDir = Join-Path $Work 'net'
        New-Item -ItemType Directory -Path $script:NetDir | Out-Null
        $script:Leases = Join-Path $script:NetDir 'dnsmasq.leases'
        & ip netns add $script:Ns
        & ip -n $script:Ns link set lo up
        & ip -n $script:Ns link add kvbr0 type bridge
        & ip -n $script:Ns addr add 10.213.0.1/24 dev kvbr0
        & ip -n $script:Ns link set kvbr0 up
        $script:Dnsmasq = Start-Process -FilePath ip -PassThru -ArgumentList @('netns', 'exec', $script:Ns, 'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--port=0',
            '--interface=kvbr0', '--bind-interfaces', '--except-interface=lo', '--dhcp-range=10.213.0.10,10.213.0.250,255.255.255.0,1h',
            "--dhcp-leasefile=$($script:Leases)", "--pid-file=$(Join-Path $script:NetDir 'dnsmasq.pid')")
        & ssh-keygen -q -t ed25519 -N '' -C pester -f (Join-Path $script:NetDir 'key') | Out-Null
        $script:Key = Join-Path $script:NetDir 'key'
        $pub = (Get-Content -LiteralPath "$($script:Key).pub" -Raw).Trim() -replace ' ', ','
        $script:Fleet = Get-KvmTinyGuest -Variant Fleet
        $script:Name = "pfleet-$Suffix"
        $disk = Join-Path $Work 'fleet.qcow2'
        & qemu-img create -f qcow2 $disk 16M | Out-Null
        $script:Guest = Start-KvmGuest -Name $script:Name -DiskPath $disk -MemoryMB 128 -Accelerator Tcg -NoVnc -RunDirectory $RunRoot `
            -Kernel $script:Fleet.Kernel -Initrd $script:Fleet.Initrd -KernelArguments "kvmoc.name=$($script:Name) kvmoc.sshkey=$pub" `
            -Network Tap -Bridge kvbr0 -NetworkNamespace $script:Ns -DiskCache none -PassThru
        $env:ANSIBLE_HOST_KEY_CHECKING = 'False'
        $env:ANSIBLE_SSH_ARGS = '-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o ControlMaster=no -o ConnectTimeout=5 -o LogLevel=ERROR'
    }
    AfterAll {
        if ($script:Guest) { Stop-KvmGuest -Name $script:Name -TurnOff -Force -RunDirectory $RunRoot -ErrorAction SilentlyContinue }
        if ($script:Dnsmasq) { Stop-Process -Id $script:Dnsmasq.Id -Force -ErrorAction SilentlyContinue }
        & ip netns delete $script:Ns 2>$null
        Remove-Item Env:ANSIBLE_HOST_KEY_CHECKING, Env:ANSIBLE_SSH_ARGS -ErrorAction SilentlyContinue
    }

    It 'Get-KvmTinyGuest -Variant Fleet adds virtio-net to the tiny guest' {
        $script:Fleet.Variant | Should -Be 'Fleet'
        $script:Fleet.Modules | Should -Contain 'virtio_net'
        $script:Fleet.Initrd | Should -BeLike '*fleet-initrd-*.cpio'
    }

    It 'the guest takes a lease under its own name; Get-DnsmasqLease | ConvertTo-AnsibleInventory makes an inventory ansible-inventory accepts; ansible -m raw reaches it' {
        $deadline = (Get-Date).AddSeconds(120)
        do { Start-Sleep -Milliseconds 500; $lease = Get-DnsmasqLease -Path $script:Leases | Where-Object HostName -EQ $script:Name }
        until ($lease -or (Get-Date) -gt $deadline)
        $lease.IPAddress | Should -BeLike '10.213.0.*'
        $lease.MacAddress | Should -Be $script:Guest.MacAddress
        $inventory = Join-Path $script:NetDir 'inventory.ini'
        Get-DnsmasqLease -Path $script:Leases | ConvertTo-AnsibleInventory -User root | Set-Content -LiteralPath $inventory
        $list = & bash -c 'exec "$@" </dev/null' bash ansible-inventory -i $inventory --list | ConvertFrom-Json
        $list._meta.hostvars.($script:Name).ansible_host | Should -Be $lease.IPAddress
        $out = $null
        do { $out = & bash -c 'exec "$@" </dev/null' bash ip netns exec $script:Ns ansible -i $inventory $script:Name -m raw -a hostname --private-key $script:Key -o 2>&1; Start-Sleep 1 }
        until (($out -join "`n") -match 'CHANGED' -or (Get-Date) -gt $deadline)
        ($out -join "`n") | Should -Match "$($script:Name) \| CHANGED \| rc=0 \| \(stdout\) $($script:Name)"
        # No Python in the initramfs: -m ping (a Python module) cannot work, as the README says.
        $ping = & bash -c 'exec "$@" </dev/null' bash ip netns exec $script:Ns ansible -i $inventory $script:Name -m ping --private-key $script:Key -o 2>&1
        ($ping -join "`n") | Should -Not -Match 'SUCCESS'
    }

    It 'the namespace has no route out' {
        $routes = & ip -n $script:Ns route show
        $routes | Should -HaveCount 1
        $routes | Should -Match '^10\.213\.0\.0/24 dev kvbr0'
        & ip netns exec $script:Ns ip route get 192.0.2.1 2>&1 | Out-String | Should -Match 'unreachable'
    }

    It 'experiment -Network Isolated: -WhatIf shows the network in the plan and does nothing; it needs the tiny guest' {
        $repo = Resolve-Path (Join-Path $PSScriptRoot '../..')
        $kvmoc = if ($env:KVMOC_CLI) { $env:KVMOC_CLI } else { Join-Path $repo 'src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc.dll' }
        $before = @(& ip netns list).Count
        $plan = & dotnet $kvmoc experiment --network isolated --guest-count 2 --ksm-profile Aggressive --duration 10 --what-if
        $LASTEXITCODE | Should -Be 0
        ($plan -join "`n") | Should -Match 'What if: ip netns add kvmoc-net-'
        ($plan -join "`n") | Should -Match 'ansible -m raw'
        Invoke-OvercommitExperiment -GuestCount 2 -Network Isolated -KsmProfile Aggressive -Duration 00:00:10 -WhatIf | Should -BeNullOrEmpty
        @(& ip netns list).Count | Should -Be $before
        { Invoke-OvercommitExperiment -BaseImage (Join-Path $Work 'fleet.qcow2') -GuestCount 1 -Network Isolated -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'ExperimentNetworkNeedsTinyGuest*'
        { Invoke-OvercommitExperiment -GuestCount 2 -IoLoadPercent 50 -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'ExperimentIoLoadNeedsNetwork*'
        $plan = & dotnet $kvmoc experiment --network isolated --io-load-percent 50 --io-load RandomWrite --io-load-seconds 20 --guest-count 4 --what-if
        ($plan -join "`n") | Should -Match 'start a RandomWrite load in 2 of 4 guest\(s\) \(50%\) through Ansible'
    }
}
