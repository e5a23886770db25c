# Reverts a Hyper-V VM to a named checkpoint and leaves it running.
# Production checkpoints hold no memory: after the restore the VM is Off and is
# started here. Standard checkpoints come back Running (or Saved: then resumed).
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][string]$CheckpointName
)
$ErrorActionPreference = 'Stop'
try {
    $snapshot = Get-VMSnapshot -VMName $VMName | Where-Object { $_.Name -eq $CheckpointName } | Select-Object -First 1
    if ($null -eq $snapshot) {
        $known = @(Get-VMSnapshot -VMName $VMName | ForEach-Object { $_.Name }) -join ', '
        ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; missing = $true; error = "no checkpoint '$CheckpointName' (known: $known)" }) -Compress -Depth 4
        exit 1
    }
    Restore-VMSnapshot -VMName $VMName -Name $CheckpointName -Confirm:$false
    $after = [string](Get-VM -Name $VMName).State
    $started = $false
    if (($after -eq 'Off') -or ($after -eq 'Saved')) {
        Start-VM -Name $VMName
        $started = $true
    }
    $result = [pscustomobject]@{
        ok                 = $true
        checkpoint         = $CheckpointName
        stateAfterRestore  = $after
        startedAfterRestore = $started
        state              = [string](Get-VM -Name $VMName).State
    }
    ConvertTo-Json -InputObject $result -Compress -Depth 4
} catch {
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = $_.Exception.Message }) -Compress -Depth 4
    exit 1
}
