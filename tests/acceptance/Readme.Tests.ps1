#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
# The README's PowerShell examples, run as written, so the README cannot drift from the module.
# Every ```powershell block of README.md is a test. Each statement of a block (PowerShell's own parser splits it):
#   - binds: every KvmOvercommit cmdlet it names is exported and every parameter it names exists on it;
#   - runs verbatim, in order, in a sandbox folder (a base image, 30 overlays, a saved mdstat, a lease file, the tiny
#     guest "tiny1" running) — unless $NotRun below names it with the reason it cannot run on a test host;
#   - writes no error, except the ones $HostErrors expects where the test host lacks what the example assumes.
# A statement that is in neither table and fails, fails its block. Guests it starts are stopped and KSM is restored.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $readme = Join-Path (Split-Path -Parent (Split-Path -Parent $PSScriptRoot)) 'README.md'
    $lines = Get-Content -LiteralPath $readme
    $Blocks = [System.Collections.Generic.List[object]]::new()
    for ($i = 0; $i -lt $lines.Count; $i++) {
        if ($lines[$i] -ne '```powershell') { continue }
        $start = $i + 1
        $body = [System.Collections.Generic.List[string]]::new()
        for ($i++; $i -lt $lines.Count -and $lines[$i] -ne '```'; $i++) { $body.Add($lines[$i]) }
        $Blocks.Add(@{ Line = $start; Text = ($body -join "`n"); First = ($body | Where-Object { $_ -and $_ -notmatch '^\s*#' } | Select-Object -First 1).Trim() })
    }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $ModulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module -Name $ModulePath -Force -ErrorAction Stop
    $ExportedCmdlets = @((Get-Module KvmOvercommit).ExportedCmdlets.Keys)

    # Statements that cannot run on a test host, by their exact text, with the reason.
    $NotRun = @{
        "Get-KvmTinyGuest | Start-KvmGuest -Name tiny1 -MemoryMB 128 -KernelArguments 'kvmoc.fill=64,1' -PassThru" = 'runs once, verbatim, in BeforeAll: it starts the tiny1 the other examples use'
        'Invoke-OvercommitExperiment -GuestCount 4 -KsmProfile Default,Aggressive,Adaptive -Duration 00:02:00 -ReportPath ./report' = 'the whole experiment, 6 minutes (xunit ExperimentHostTests runs it with 2 guests)'
        '$r = Invoke-OvercommitExperiment -GuestCount 2 -KsmProfile Aggressive,Adaptive -Duration 00:00:30' = 'the whole experiment, over a minute (xunit ExperimentHostTests runs the same)'
        '$r.Profiles | Format-Table' = 'needs $r of the experiment above'
        '$r.Profiles.Guests' = 'needs $r of the experiment above'
        'Invoke-OvercommitExperiment -BaseImage win7-base.qcow2 -GuestCount 30 -MemoryMB 4048 -CpuCount 2 -StaggerSeconds 60 -KsmProfile Aggressive,Adaptive -UntilStable -ReportPath ./win7-report' = '30 guests x 4048 MiB: more than a test host has'
        'Watch-KsmStat -IntervalSeconds 1 -UntilStable' = 'runs until the savings stop growing: minutes while guests boot (Ksm.Tests covers -UntilStable)'
        '1..30 | % { "win7-$_.qcow2" } | New-QcowOverlay -BackingPath win7-base.qcow2 | Start-KvmGuest -MemoryMB 4048 -StaggerSeconds 60' = '30 guests x 4048 MiB, 30 minutes of stagger'
        '1..30 | % { "win7-$_.qcow2" } | New-QcowOverlay -BackingPath win7-base.qcow2 | Start-KvmGuest -MemoryMB 4048 -CpuCount 2 -StaggerSeconds 60' = '30 guests x 4048 MiB, 30 minutes of stagger'
        'Get-KvmGuest -Id 4242 | Format-List *' = 'a pid of the author''s host'
        'Measure-KvmGuestIops ''win7-*'' -Continuous | Where-Object Iops -gt 100' = 'runs until Ctrl+C (the hosted-runspace tests stop it)'
        "Get-KvmGuest | Measure-KvmGuestIops -Count 12 -IntervalSeconds 5 | Group-Object Name |`n    Select-Object Name, @{ n = 'AvgIops'; e = { (`$_.Group | Measure-Object Iops -Average).Average } }" = 'samples for 60 s'
        'Start-KvmGuest -DiskPath web1.qcow2 -MemoryMB 2048 -CpuCount 2 -Network Tap -Bridge br0 -PassThru' = 'needs the bridge br0 of a real host'
        'Get-ChildItem *.qcow2 | Start-KvmGuest -NoVnc -StaggerSeconds 10' = 'one guest per disk of the folder, 10 s apart'
        'Get-KvmGuest | Stop-KvmGuest -TurnOff -Force' = 'turns off every guest on the host, not only the sandbox''s'
        'Measure-DeviceIops -Device md12* -Continuous -Total' = 'needs md RAID arrays, and runs until Ctrl+C'
        'Measure-ProcessIops -Name qemu* -Continuous' = 'runs until Ctrl+C (the hosted-runspace tests stop it)'
        'Invoke-KsmAutoTune -Duration 600 -Verbose' = 'tunes for 10 minutes (AutoTune.Tests runs it for 3 s)'
        '$r = Invoke-KsmAutoTune -Duration (New-TimeSpan -Minutes 10)' = 'tunes for 10 minutes (AutoTune.Tests runs a TimeSpan of 2 s)'
        '$r.Decisions | Format-Table' = 'needs $r of the 10-minute run above'
        'Get-ChildItem /srv/dhcp/*.leases | Get-DnsmasqLease' = '/srv/dhcp is a folder of the author''s host'
        'ansible -i inventory.ini win7 -m ping' = 'the win7 guests of the inventory are not on a test host'
        "`$old = Set-KvmGuestIoLimit web1 -Iops 200 -IopsMax 2000 -IopsMaxLength 10 -PassThru" = 'needs the guest web1 of a real host (Iops.Tests sets, reads back and restores a tiny guest''s limits)'
        '$old | Set-KvmGuestIoLimit' = 'needs $old from web1 above'
        "`$r = Invoke-KvmMemoryBalancer -Name 'memory-bal*' -Duration 30 -IntervalSeconds 1 -HostTargetPercent 1 -MinimumMB 100 -Verbose" = 'balances two guests named memory-bal* for 30 s (Memory.Tests runs exactly this on two tiny guests)'
        'Get-KvmTinyGuest | Start-KvmGuest -Name tiny-cg1 -MemoryMB 256 -Cgroup fleet -NoVnc -Network None -PassThru' = 'needs the memory cgroup "fleet" of a real host (xunit MemoryCgroupHostTests starts guests in a cgroup it creates and removes)'
        '$v = Invoke-OvercommitExperiment -GuestCount 2 -KsmProfile Default -Duration 10 -CgroupLimitMB 2048 -ValidateEstimate -HeadroomPercent 0' = 'boots guests until the kernel OOM-kills one, about 4 minutes (xunit ExperimentHostTests runs exactly this)'
        '$v | Format-List PredictedAdditionalGuests, ActualAdditionalGuests, EstimateErrorPercent' = 'needs $v of the validation run above'
        '$v.Validation.Explanation' = 'needs $v of the validation run above'
        'Measure-DeviceIopsCapacity /var/lib/libvirt/images | Get-OvercommitReport' = '/var/lib/libvirt/images is a libvirt host''s folder (Iops.Tests probes a temporary folder)'
        '$t = Get-KvmTinyGuest -Variant Fleet' = 'the fleet guest for the lines below, which need the namespace lab (FleetNetworkHostTests builds one)'
        "`$key = (Get-Content ~/.ssh/id_ed25519.pub -Raw).Trim() -replace ' ', ','" = 'needs root''s SSH key'
        @'
Start-KvmGuest -Name web1 -DiskPath web1.qcow2 -Kernel $t.Kernel -Initrd $t.Initrd -KernelArguments "kvmoc.name=web1 kvmoc.sshkey=$key" `
    -Network Tap -Bridge kvbr0 -NetworkNamespace lab -DiskCache none
'@.TrimEnd("`n") = 'needs the network namespace lab with the bridge kvbr0 (FleetNetworkHostTests makes one)'
        'Get-DnsmasqLease -Path /srv/lab/dnsmasq.leases | ConvertTo-AnsibleInventory -User root | Set-Content inventory.ini' = 'the lease file of the lab network above'
        'ip netns exec lab ansible -i inventory.ini all -m raw -a hostname -o' = 'needs the lab network and its guests (FleetNetworkHostTests runs Ansible there)'
        'Invoke-Command -HostName h1, h2 { Get-KsmStat }' = 'needs the hosts h1 and h2 (Remoting.Tests does it against a local sshd)'
        "Invoke-Command -HostName h1, h2 { Get-DnsmasqLease } | ConvertTo-AnsibleInventory -GroupBy '^(\w+)-\d+$' -User admin" = 'needs the hosts h1 and h2 (Remoting.Tests does it against a local sshd)'
    }
    # Statements that run, but on a test host write these errors (error id patterns) because it lacks what they assume.
    $HostErrors = @{
        'Get-DnsmasqLease' = 'LeaseFileNotFound*'
        'Get-DnsmasqLease -Path /var/lib/libvirt/dnsmasq/*.status | Where-Object HostName -like ''win7-*''' = 'LeaseFileNotFound*|*NotFound*'
        "Get-DnsmasqLease | ConvertTo-AnsibleInventory -GroupBy '^(?<group>[a-z0-9]+)-' -User admin | Set-Content inventory.ini" = 'LeaseFileNotFound*'
        "Get-DnsmasqLease | ConvertTo-AnsibleInventory -Format Json -GroupMap @{ 'win7-*' = 'windows' } | Set-Content inventory.json" = 'LeaseFileNotFound*'
        'Stop-KvmGuest -Name ''win7-*''' = 'GuestNotFound*'
        "Get-KvmGuest 'win7-*' | Set-KvmGuestIoLimit -Iops 50" = 'GuestNotFound*'
        "Get-KvmGuest 'web*' | Set-KvmGuestIoLimit -Iops 500 -Group web" = 'GuestNotFound*'
        "Get-KvmGuest 'win7-*' | Set-KvmGuestMemory -TargetMB 1024 -Wait -PassThru" = 'GuestNotFound*'
        '(Get-KvmGuest ''win7-*'').Count' = 'GuestNotFound*'
        'Get-KvmGuest win7-* | Measure-ProcessIops -IntervalSeconds 5 | Sort-Object WriteBytesPerSec -Descending' = 'GuestNotFound*'
        'Get-KsmProcess -Name qemu*, kvm | Measure-Object SavedBytes -Sum' = 'KsmProcessNotFound*'   # no process is named kvm here
    }

    $Sandbox = Join-Path ([IO.Path]::GetTempPath()) ('kvmoc-readme-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $Sandbox, (Join-Path $Sandbox 'guests') | Out-Null
    & qemu-img create -q -f qcow2 (Join-Path $Sandbox 'win7-base.qcow2') 64M
    & qemu-img create -q -f qcow2 (Join-Path $Sandbox 'base.qcow2') 64M
    & qemu-img create -q -f raw (Join-Path $Sandbox 'base.raw') 64M
    & qemu-img create -q -f qcow2 (Join-Path $Sandbox 'web1.qcow2') 64M
    # ./images with a name PowerShell would read as a wildcard: Get-ChildItem ./images | Get-QcowImage binds it literally.
    New-Item -ItemType Directory -Path (Join-Path $Sandbox 'images') | Out-Null
    & qemu-img create -q -f qcow2 (Join-Path $Sandbox 'images/hx-[br].qcow2') 16M
    Copy-Item -LiteralPath (Join-Path $PSScriptRoot '../KvmOvercommit.Engine.Tests/Fixtures/host/mdstat-degraded') -Destination (Join-Path $Sandbox 'mdstat.saved')
    $SavedKsm = if (Test-Path /sys/kernel/mm/ksm/run) { Get-KsmStat } else { $null }
    $GuestsBefore = @(Get-KvmGuest -ErrorAction SilentlyContinue | ForEach-Object Id)
    # Guests in the sandbox have no network (nothing leaves this host) and run under TCG (KVM does not work here).
    $PSDefaultParameterValues['Start-KvmGuest:Network'] = 'None'
    $PSDefaultParameterValues['Start-KvmGuest:Accelerator'] = 'Tcg'

    # The tiny guest "tiny1" the examples name, started by the README's own statement.
    Push-Location -LiteralPath $Sandbox
    try { Invoke-Expression "Get-KvmTinyGuest | Start-KvmGuest -Name tiny1 -MemoryMB 128 -KernelArguments 'kvmoc.fill=64,1' -PassThru" -ErrorAction Stop | Out-Null }
    finally { Pop-Location }

}

AfterAll {
    $PSDefaultParameterValues.Remove('Start-KvmGuest:Network')
    $PSDefaultParameterValues.Remove('Start-KvmGuest:Accelerator')
    $started = @(Get-KvmGuest -ErrorAction SilentlyContinue | Where-Object { $_.Id -notin $GuestsBefore })
    if ($started) { $started | Stop-KvmGuest -TurnOff -Force -Confirm:$false }
    if ($SavedKsm) { $SavedKsm | Set-KsmTuning -Force -ErrorAction SilentlyContinue }
    if ($Sandbox) { Remove-Item -LiteralPath $Sandbox -Recurse -Force -ErrorAction SilentlyContinue }
}

Describe 'README PowerShell examples' {
    It 'block at README.md line <Line> (<First>) binds and runs' -ForEach $Blocks {
        $tokens = $null; $parseErrors = $null
        $ast = [System.Management.Automation.Language.Parser]::ParseInput($Text, [ref] $tokens, [ref] $parseErrors)
        $parseErrors | Should -BeNullOrEmpty
        $problems = [System.Collections.Generic.List[string]]::new()
        Push-Location -LiteralPath $Sandbox
        try {
            foreach ($statement in $ast.EndBlock.Statements) {
                $stmt = $statement.Extent.Text
                # Binding: our cmdlets and their parameters exist (also for statements that cannot run here).
                foreach ($cmd in $statement.FindAll({ param($n) $n -is [System.Management.Automation.Language.CommandAst] }, $true)) {
                    $name = $cmd.GetCommandName()
                    if ($name -notin $ExportedCmdlets) { continue }
                    $meta = Get-Command -Name $name -Module KvmOvercommit
                    foreach ($p in $cmd.CommandElements | Where-Object { $_ -is [System.Management.Automation.Language.CommandParameterAst] }) {
                        $match = @($meta.Parameters.Values | Where-Object { $_.Name -like "$($p.ParameterName)*" -or ($_.Aliases | Where-Object { $_ -like "$($p.ParameterName)*" }) })
                        if ($match.Count -ne 1 -and -not ($meta.Parameters.Values | Where-Object { $_.Name -eq $p.ParameterName -or $_.Aliases -contains $p.ParameterName })) {
                            $problems.Add("$name has no parameter -$($p.ParameterName) (in: $stmt)")
                        }
                    }
                }
                if ($NotRun.ContainsKey($stmt)) { continue }
                $allowed = $HostErrors[$stmt]
                # Dot-sourced, so a statement's variables ($saved, $old, $t) reach the statements after it.
                $Error.Clear()
                try { . ([scriptblock]::Create($stmt)) 3>$null | Out-Null }
                catch { }
                foreach ($e in @($Error)) {
                    if ($e -isnot [System.Management.Automation.ErrorRecord]) { continue }
                    if ($allowed -and (@($allowed -split '\|') | Where-Object { $e.FullyQualifiedErrorId -like $_ })) { continue }
                    $problems.Add("$stmt -> $($e.FullyQualifiedErrorId): $($e.Exception.Message)")
                }
            }
        }
        finally { Pop-Location }
        $problems | Should -BeNullOrEmpty
    }

    It 'names in its tables only statements the README has' {
        $readme = Get-Content -LiteralPath (Join-Path (Split-Path -Parent (Split-Path -Parent $PSScriptRoot)) 'README.md') -Raw
        foreach ($text in @($NotRun.Keys) + @($HostErrors.Keys)) { $readme.Contains($text) | Should -BeTrue -Because "'$text' is listed in Readme.Tests.ps1" }
    }
}
