#Requires -Version 7.4
# Pester 5 acceptance tests of the host cmdlets: Measure-DeviceIops, Measure-ProcessIops, Get-HostMemory,
# Get-HostCpu, Get-MdRaid and Get-OvercommitReport. Run by build.ps1 where pwsh and Pester exist. Nothing here
# changes host state.

BeforeAll {
    $modulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
    Import-Module $modulePath -Force
    $script:Fixtures = Join-Path $PSScriptRoot '../KvmOvercommit.Engine.Tests/Fixtures/host'
}

Describe 'Measure-DeviceIops' {
    It 'measures every whole disk by default, without loop devices' {
        $rows = Measure-DeviceIops -IntervalSeconds 0.2
        $rows | Should -Not -BeNullOrEmpty
        $rows | ForEach-Object { $_ | Should -BeOfType 'KvmOvercommit.Engine.Io.DeviceIops' }
        $rows.Device | Where-Object { $_ -like 'loop*' } | Should -BeNullOrEmpty
        $rows[0].IntervalSeconds | Should -BeGreaterThan 0.1
    }

    It 'adds a Total row per interval with -Total' {
        $rows = Measure-DeviceIops -IntervalSeconds 0.1 -Count 2 -Total
        @($rows | Where-Object Device -EQ 'Total').Count | Should -Be 2
    }

    It 'reports an unknown device as ObjectNotFound listing the devices that exist' {
        $caught = $null
        try { Measure-DeviceIops -Device 'nosuchdisk0' } catch { $caught = $_ }
        $caught | Should -Not -BeNullOrEmpty
        $caught.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $caught.FullyQualifiedErrorId | Should -BeLike 'DeviceNotFound*'
        $first = (Get-ChildItem /sys/block | Where-Object Name -NotLike 'loop*' | Select-Object -First 1).Name
        $caught.ToString() | Should -BeLike "*$first*"
    }

    It 'stops a continuous sample when the pipeline stops' {
        $rows = Measure-DeviceIops -IntervalSeconds 0.1 -Continuous | Select-Object -First 3
        @($rows).Count | Should -Be 3
    }
}

Describe 'Measure-ProcessIops' {
    It 'binds Id by property name (Get-Process objects)' {
        $row = Get-Process -Id $PID | Measure-ProcessIops -IntervalSeconds 0.1
        $row.Id | Should -Be $PID
        $row.Source | Should -Contain "WriteBytesPerSec=/proc/$PID/io:write_bytes"
        ($row.Note -join ' ') | Should -BeLike '*libaio*'
    }
}

Describe 'Get-HostMemory and Get-HostCpu' {
    It 'reads /proc/meminfo' {
        $m = Get-HostMemory
        $m.TotalBytes | Should -BeGreaterThan 0
        $m.AvailableBytes | Should -BeLessOrEqual $m.TotalBytes
        $m.UsedMinusBuffersCacheBytes | Should -Be ($m.TotalBytes - $m.FreeBytes - $m.BuffersBytes - $m.CachedBytes)
    }

    It 'counts the logical CPUs' {
        $c = Get-HostCpu
        $c.LogicalCpus | Should -Be ((Get-Content /proc/cpuinfo | Where-Object { $_ -match '^processor\s*:' }).Count)
        $c.Cores * $c.ThreadsPerCore | Should -Be $c.LogicalCpus
    }
}

Describe 'Get-MdRaid' {
    It 'parses the blog''s RAID10 from a saved copy' {
        $a = Get-MdRaid -Path (Join-Path $script:Fixtures 'mdstat-blog-raid10') -Name md126
        $a.Level | Should -Be 'raid10'
        $a.Health | Should -Be 'UUUU'
        $a.Devices.Count | Should -Be 4
    }

    It 'finds degraded arrays' {
        $d = Get-MdRaid -Path (Join-Path $script:Fixtures 'mdstat-degraded') | Where-Object Degraded
        $d.Name | Should -Contain 'md0'
    }
}

Describe 'Get-OvercommitReport' {
    It 'explains its arithmetic' {
        $r = Get-OvercommitReport -IopsSampleSeconds 0.2 -SkipDiskImages
        $r | Should -BeOfType 'KvmOvercommit.Engine.HostInfo.OvercommitReport'
        $r.LogicalCpus | Should -BeGreaterThan 0
        ($r.Explanation -join "`n") | Should -BeLike '*VcpuRatio = guest vCPUs / host logical CPUs*'
    }

    It 'rejects a headroom of 100 percent' {
        { Get-OvercommitReport -HeadroomPercent 100 } | Should -Throw
    }
}
