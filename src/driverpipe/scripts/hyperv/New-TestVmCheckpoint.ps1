# Saves a Hyper-V VM's current state as a named checkpoint, replacing one of the same name.
# The VM's CheckpointType (Standard keeps memory, Production does not) is reported back.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][string]$CheckpointName
)
$ErrorActionPreference = 'Stop'
try {
    $old = @(Get-VMSnapshot -VMName $VMName | Where-Object { $_.Name -eq $CheckpointName })
    foreach ($item in $old) { Remove-VMSnapshot -VMSnapshot $item -Confirm:$false }
    Checkpoint-VM -Name $VMName -SnapshotName $CheckpointName
    $vm = Get-VM -Name $VMName
    $result = [pscustomobject]@{
        ok             = $true
        checkpoint     = $CheckpointName
        replaced       = ($old.Count -gt 0)
        checkpointType = [string]$vm.CheckpointType
    }
    ConvertTo-Json -InputObject $result -Compress -Depth 4
} catch {
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = $_.Exception.Message }) -Compress -Depth 4
    exit 1
}
