#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
# Acceptance tests of New-QcowOverlay and Get-QcowImage on a host with pwsh (and qemu-img for the cross-checks).
# The module is imported from $env:KVMOC_MODULE, else from the packaged folder out/KvmOvercommit/<version>.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $modulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module $modulePath -Force -ErrorAction Stop
    $script:root = Join-Path ([IO.Path]::GetTempPath()) ("kvmoc-qcow-" + [guid]::NewGuid().ToString('N'))
    $null = New-Item -ItemType Directory -Path $script:root
    $script:base = Join-Path $script:root 'win7-base.raw'
    $stream = [IO.File]::Create($script:base)
    $stream.SetLength(1073741824)
    $stream.Dispose()
    $script:qemuImg = Get-Command qemu-img -CommandType Application -TotalCount 1 -ErrorAction SilentlyContinue
}

AfterAll {
    if ($script:root) { Remove-Item -LiteralPath $script:root -Recurse -Force -ErrorAction SilentlyContinue }
}

Describe 'New-QcowOverlay' {
    It 'creates overlays from the pipeline, relative to the current location' {
        Push-Location $script:root
        try {
            $made = 1..30 | ForEach-Object { "win7-$_.qcow2" } | New-QcowOverlay -BackingPath win7-base.raw
        }
        finally { Pop-Location }
        $made.Count | Should -Be 30
        $made[0].Path | Should -Be (Join-Path $script:root 'win7-1.qcow2')
        $made[0].BackingFormat | Should -Be 'raw'
        $made[0].VirtualSize | Should -Be 1073741824
        $made[0].BackingChain | Should -Be @($script:base)
        $made[0].PSObject.TypeNames[0] | Should -Be 'KvmOvercommit.Engine.Qcow.QcowImage'
    }

    It 'writes what qemu-img check accepts and qemu-img info agrees with' -Skip:(Test-SkipUnless ([bool](Get-Command qemu-img -CommandType Application -ErrorAction SilentlyContinue))) {
        $o = New-QcowOverlay (Join-Path $script:root 'checked, ü.qcow2') -BackingPath $script:base -ClusterSize 4096
        & $script:qemuImg.Source 'check' '-q' $o.Path
        $LASTEXITCODE | Should -Be 0
        $info = (& $script:qemuImg.Source 'info' '--output=json' $o.Path) | ConvertFrom-Json
        $info.'virtual-size' | Should -Be $o.VirtualSize
        $info.'cluster-size' | Should -Be 4096
        $info.'backing-filename' | Should -Be $o.BackingFile
        $info.'backing-filename-format' | Should -Be 'raw'
    }

    It 'refuses an existing file without -Force and writes nothing with -WhatIf' {
        $target = Join-Path $script:root 'taken.qcow2'
        Set-Content -LiteralPath $target -Value 'keep me'
        New-QcowOverlay $target -BackingPath $script:base -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowOverlayExists*'
        $err[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        New-QcowOverlay $target -BackingPath $script:base -Force -WhatIf
        Get-Content -LiteralPath $target | Should -Be 'keep me'
        $new = Join-Path $script:root 'whatif.qcow2'
        New-QcowOverlay $new -BackingPath $script:base -WhatIf
        Test-Path -LiteralPath $new | Should -BeFalse
        (New-QcowOverlay $target -BackingPath $script:base -Force).Format | Should -Be 'qcow2'
    }

    It 'never makes an image its own backing file' {
        New-QcowOverlay $script:base -BackingPath $script:base -Force -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowOverlayIsOwnBacking*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'stores the backing path relative to the overlay with -RelativeBackingPath' {
        $sub = New-Item -ItemType Directory -Path (Join-Path $script:root 'guests')
        $o = New-QcowOverlay (Join-Path $sub 'web1.qcow2') -ParentPath $script:base -RelativeBackingPath -SizeBytes 21474836480
        $o.BackingFile | Should -Be '../win7-base.raw'
        $o.VirtualSize | Should -Be 21474836480
    }
}

Describe 'Get-QcowImage' {
    It 'reads files from Get-ChildItem and wildcards' {
        $images = Get-ChildItem -Path $script:root -Filter 'win7-*.qcow2' | Get-QcowImage
        $images.Count | Should -Be 30
        (Get-QcowImage (Join-Path $script:root 'win7-1*.qcow2')).Count | Should -Be 11
        ($images | Where-Object InUse).Count | Should -Be 0
        (Get-QcowImage $script:base).Format | Should -Be 'raw'
    }

    It 'reports a corrupt header as InvalidData naming the field' {
        $bad = Join-Path $script:root 'corrupt.qcow2'
        $bytes = [IO.File]::ReadAllBytes((Join-Path $script:root 'win7-1.qcow2'))
        $bytes[23] = 40 # cluster_bits
        [IO.File]::WriteAllBytes($bad, $bytes)
        Get-QcowImage $bad -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowInvalidHeader*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        "$($err[0])" | Should -BeLike '*cluster_bits*'
    }
}
