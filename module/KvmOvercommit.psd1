@{
    RootModule           = 'KvmOvercommit.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '5b0c7f0e-6a7d-4d55-9a1e-3f2b8c9d4e71'
    Author               = 'KvmOvercommit developers'
    CompanyName          = 'KvmOvercommit'
    Copyright            = '(c) KvmOvercommit developers. MIT License.'
    Description          = 'KVM memory, CPU and disk overcommit experiments from PowerShell: KSM tuning and statistics, qcow2 overlays, QEMU guests over QMP, IOPS and an overcommit report.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('KvmOvercommit.format.ps1xml')
    TypesToProcess       = @('KvmOvercommit.types.ps1xml')
    CmdletsToExport      = @(
        'ConvertTo-AnsibleInventory'
        'Get-DnsmasqLease'
        'Get-HostCpu'
        'Get-HostMemory'
        'Get-KsmProcess'
        'Get-KsmStat'
        'Get-KvmGuest'
        'Get-KvmGuestIoLimit'
        'Get-KvmGuestMemory'
        'Get-KvmTinyGuest'
        'Get-MdRaid'
        'Get-OvercommitReport'
        'Get-QcowImage'
        'Invoke-KsmAutoTune'
        'Invoke-KvmMemoryBalancer'
        'Invoke-OvercommitExperiment'
        'Measure-DeviceIops'
        'Measure-DeviceIopsCapacity'
        'Measure-KvmGuestIops'
        'Measure-ProcessIops'
        'New-QcowOverlay'
        'Set-KsmTuning'
        'Set-KvmGuestIoLimit'
        'Set-KvmGuestMemory'
        'Start-KvmGuest'
        'Stop-KvmGuest'
        'Watch-KsmStat'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('Linux', 'KVM', 'QEMU', 'KSM', 'qcow2', 'Overcommit', 'PSEdition_Core')
            ProjectUri = 'https://example.invalid/KvmOvercommit'
        }
    }
}
