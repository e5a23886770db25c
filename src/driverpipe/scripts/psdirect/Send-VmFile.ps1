# Pushes one host file into a VM over PowerShell Direct, in one session: skip when the
# VM's copy already has the same SHA-256, else Copy-Item -ToSession to a partial name
# beside the destination and let the shipped Complete-FileUpload.ps1 (its text bound
# as CompleteScript) check the hash and replace the destination atomically. A failed
# copy removes the partial: the destination is never half-written.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][string]$UserName,
    [Parameter(Mandatory)][string]$LocalPath,
    [Parameter(Mandatory)][string]$RemotePath,
    [Parameter(Mandatory)][string]$Sha256,
    [Parameter(Mandatory)][string]$HashScript,
    [Parameter(Mandatory)][string]$CompleteScript
)
$ErrorActionPreference = 'Stop'
#include Open-VmSession.ps1
$session = Open-DpVmSession -VMName $VMName -UserName $UserName
try {
    $present = Invoke-Command -Session $session -ArgumentList $HashScript, $RemotePath -ScriptBlock {
        param([string]$Text, [string]$Path)
        & ([scriptblock]::Create($Text)) -Path $Path
    } | Select-Object -Last 1 | ConvertFrom-Json
    if ($present.exists -and $present.sha256 -eq $Sha256.ToLowerInvariant()) {
        ConvertTo-Json -InputObject ([pscustomobject]@{ copied = $false; sha256 = $present.sha256; size = [int64]$present.size }) -Compress -Depth 4
        return
    }
    $partial = $RemotePath + '.partial-' + [guid]::NewGuid().ToString('N').Substring(0, 8)
    Invoke-Command -Session $session -ArgumentList $RemotePath -ScriptBlock {
        param([string]$Path)
        $folder = Split-Path -Parent $Path
        if ($folder -and -not (Test-Path -LiteralPath $folder)) { New-Item -ItemType Directory -Force -Path $folder | Out-Null }
    }
    try {
        Copy-Item -LiteralPath $LocalPath -Destination $partial -ToSession $session -Force
        $done = Invoke-Command -Session $session -ArgumentList $CompleteScript, $partial, $RemotePath, $Sha256 -ScriptBlock {
            param([string]$Text, [string]$Partial, [string]$Path, [string]$Expected)
            # Splatted: the grammar the tests parse with has no parameter names with digits.
            $complete = @{ Partial = $Partial; Path = $Path; Sha256 = $Expected }
            & ([scriptblock]::Create($Text)) @complete
        } | Select-Object -Last 1 | ConvertFrom-Json
    } catch {
        Invoke-Command -Session $session -ArgumentList $partial -ScriptBlock {
            param([string]$Partial)
            Remove-Item -LiteralPath $Partial -Force -ErrorAction SilentlyContinue
        }
        throw
    }
    ConvertTo-Json -InputObject ([pscustomobject]@{ copied = $true; sha256 = $done.sha256; size = [int64]$done.size }) -Compress -Depth 4
} finally {
    Remove-PSSession -Session $session
}
