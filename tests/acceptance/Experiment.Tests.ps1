#Requires -Version 7.4
# Pester 5: Invoke-OvercommitExperiment's surface in a real pwsh: -WhatIf does nothing, parameters bind as documented,
# help is generated. The real experiment runs in the xunit host tests (ExperimentHostTests), which hold the host lock.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    # -Skip is evaluated at discovery, so what it needs is decided here (planning reads KSM and needs root and QEMU).
    $CanPlan = (Test-Path /sys/kernel/mm/ksm/run) -and ((id -u) -eq '0') -and [bool](Get-Command -Name @('qemu-system-x86_64', 'qemu-img') -ErrorAction SilentlyContinue)
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $ModulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module -Name $ModulePath -Force -ErrorAction Stop
    $Work = Join-Path ([System.IO.Path]::GetTempPath()) ('kvmoc-experiment-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
}

AfterAll {
    if ($Work -and (Test-Path -LiteralPath $Work)) { Remove-Item -LiteralPath $Work -Recurse -Force }
}

Describe 'Invoke-OvercommitExperiment' {
    It 'is exported and returns ExperimentResult' {
        $cmd = Get-Command Invoke-OvercommitExperiment -ErrorAction Stop
        $cmd.OutputType.Name | Should -Contain 'KvmOvercommit.Engine.Experiment.ExperimentResult'
        $cmd.Parameters.Keys | Should -Contain 'WhatIf'
        $cmd.Parameters['KsmProfile'].ParameterType.Name | Should -Be 'ExperimentProfile[]'
    }

    It 'takes several profiles and rejects unknown ones' {
        { Invoke-OvercommitExperiment -KsmProfile @('Default', 'Turbo') -WhatIf } | Should -Throw
    }

    It '-WhatIf shows the plan and creates nothing' -Skip:(Test-SkipUnless $CanPlan) {
        $out = Invoke-OvercommitExperiment -GuestCount 2 -KsmProfile @('Aggressive', 'Adaptive') -Duration 00:00:30 -WorkDirectory $Work -ReportPath (Join-Path $Work 'report') -WhatIf
        $out | Should -BeNullOrEmpty
        Test-Path -LiteralPath $Work | Should -BeFalse
    }

    It 'has help with an example' {
        $help = Get-Help Invoke-OvercommitExperiment -Full
        $help.Synopsis | Should -Match 'overcommit experiment'
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 1
    }
}
