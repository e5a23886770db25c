# Pulls one file out of a VM over PowerShell Direct (Copy-Item -FromSession) to a host
# path; Python writes to a partial name and renames it, so a failed pull leaves nothing.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][string]$UserName,
    [Parameter(Mandatory)][string]$RemotePath,
    [Parameter(Mandatory)][string]$LocalPath
)
$ErrorActionPreference = 'Stop'
#include Open-VmSession.ps1
$session = Open-DpVmSession -VMName $VMName -UserName $UserName
try {
    $exists = Invoke-Command -Session $session -ArgumentList $RemotePath -ScriptBlock {
        param([string]$Path)
        Test-Path -LiteralPath $Path -PathType Leaf
    }
    if (-not $exists) {
        ConvertTo-Json -InputObject ([pscustomobject]@{ exists = $false }) -Compress -Depth 4
        return
    }
    Copy-Item -LiteralPath $RemotePath -Destination $LocalPath -FromSession $session -Force
    ConvertTo-Json -InputObject ([pscustomobject]@{ exists = $true; size = [int64](Get-Item -LiteralPath $LocalPath).Length }) -Compress -Depth 4
} finally {
    Remove-PSSession -Session $session
}
