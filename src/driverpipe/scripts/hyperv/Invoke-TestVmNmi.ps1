# Injects a non-maskable interrupt into a hung guest. With CrashControl\NMICrashDump = 1
# (set by provisioning) Windows bugchecks (0x80) and writes a dump we can collect.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName
)
$ErrorActionPreference = 'Stop'
try {
    Debug-VM -Name $VMName -InjectNonMaskableInterrupt -Force
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $true }) -Compress -Depth 4
} catch {
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = $_.Exception.Message }) -Compress -Depth 4
    exit 1
}
