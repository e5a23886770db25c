# Fault injection: REG_DWORD FailAtStep under the service's Parameters key.
# The driver reads it in DriverEntry and fails that step; 0 clears it.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$ServiceName,
    [Parameter(Mandatory)][int]$Step
)
$ErrorActionPreference = 'Stop'
$key = 'HKLM:\SYSTEM\CurrentControlSet\Services\' + $ServiceName + '\Parameters'
if ($Step -gt 0) {
    if (-not (Test-Path -LiteralPath $key)) { New-Item -Path $key -Force | Out-Null }
    New-ItemProperty -LiteralPath $key -Name FailAtStep -PropertyType DWord -Value $Step -Force | Out-Null
} elseif (Test-Path -LiteralPath $key) {
    Remove-ItemProperty -LiteralPath $key -Name FailAtStep -ErrorAction SilentlyContinue
}
[pscustomobject]@{ service = $ServiceName; step = $Step } | ConvertTo-Json -Compress -Depth 6
