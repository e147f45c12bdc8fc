#Requires -Version 7.4
# Pester 5: the packaged module imports, exports exactly the manifest's cmdlets, and every cmdlet has full help.
# build.ps1 / build.sh set $env:KVMOC_MODULE to the packaged manifest (out/KvmOvercommit/<version>/KvmOvercommit.psd1).

BeforeDiscovery {
    $script:ModulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    $script:Exported = @((Import-PowerShellDataFile -LiteralPath $script:ModulePath).CmdletsToExport)
}

BeforeAll {
    $ModulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    $Manifest = Import-PowerShellDataFile -LiteralPath $ModulePath
    $Module = Import-Module -Name $ModulePath -Force -PassThru -ErrorAction Stop
}

AfterAll {
    Remove-Module -Name KvmOvercommit -Force -ErrorAction SilentlyContinue
}

Describe 'KvmOvercommit module' {
    It 'imports from the package folder' {
        $Module.Name | Should -Be 'KvmOvercommit'
        $Module.Version | Should -Be ([version] $Manifest.ModuleVersion)
        Test-ModuleManifest -Path $ModulePath -ErrorAction Stop | Should -Not -BeNullOrEmpty
    }

    It 'exports exactly the cmdlets the manifest names' {
        $commands = @(Get-Command -Module KvmOvercommit)
        $commands.Count | Should -Be @($Manifest.CmdletsToExport).Count
        (@($commands.Name | Sort-Object) -join ',') | Should -Be (@($Manifest.CmdletsToExport | Sort-Object) -join ',')
        @($commands | Where-Object CommandType -ne 'Cmdlet').Count | Should -Be 0
    }

    It 'has the about topic' {
        Get-Help about_KvmOvercommit | Should -Not -BeNullOrEmpty
    }
}

Describe 'Help for <_>' -ForEach $Exported {
    BeforeAll {
        $Name = $_
        $Help = Get-Help -Name $Name -Full
        $Command = Get-Command -Name $Name
        $Common = @([System.Management.Automation.PSCmdlet]::CommonParameters) + @([System.Management.Automation.PSCmdlet]::OptionalCommonParameters)
    }

    It 'has a synopsis from the help file' {
        "$($Help.Synopsis)".Trim() | Should -Not -BeNullOrEmpty
        "$($Help.Synopsis)".Trim() | Should -Not -BeLike "$Name *"
    }

    It 'has at least one example that uses it' {
        @($Help.Examples.Example).Count | Should -BeGreaterThan 0
        @($Help.Examples.Example)[0].Code | Should -Match ([regex]::Escape($Name))
    }

    It 'describes every parameter' {
        $own = @($Command.Parameters.Keys | Where-Object { $_ -notin $Common })
        foreach ($parameter in $own) {
            $entry = @($Help.Parameters.Parameter | Where-Object Name -eq $parameter)
            $entry.Count | Should -Be 1 -Because "-$parameter must be in the help"
            "$($entry[0].Description.Text)".Trim() | Should -Not -BeNullOrEmpty -Because "-$parameter needs a description"
        }
    }
}
