# The manifest the acceptance tests import: $env:KVMOC_MODULE (build.ps1 / build.sh set it to the packaged manifest),
# else the package folder of this version (out/KvmOvercommit/<version>/KvmOvercommit.psd1, made by ./build.sh package).
# Every *.Tests.ps1 calls it: $modulePath = & (Join-Path $PSScriptRoot 'TestModulePath.ps1')
if ($env:KVMOC_MODULE) { return $env:KVMOC_MODULE }
$root = Split-Path -Parent (Split-Path -Parent $PSScriptRoot)
$version = (Import-PowerShellDataFile -LiteralPath (Join-Path $root 'module/KvmOvercommit.psd1')).ModuleVersion
Join-Path $root "out/KvmOvercommit/$version/KvmOvercommit.psd1"
