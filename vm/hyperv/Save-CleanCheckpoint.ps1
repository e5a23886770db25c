# Takes the 'clean' checkpoint that `invoke vm.revert` / `invoke regress` return
# to. Run on the Hyper-V host, elevated, AFTER `invoke provision` succeeded and
# the guest sits logged off at the sign-in screen (so the checkpoint holds a
# guest with TESTSIGNING active and nothing of ours loaded).
# The VM must be Running and use Standard checkpoints, so the checkpoint keeps
# its memory and a revert returns a running guest (see New-TestVm.ps1 for why).
# Idempotent: an existing checkpoint of that name is kept unless -Replace.
# Written from Microsoft's Hyper-V cmdlet documentation; NOT yet run on a Hyper-V host.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Name,
    [string]$CheckpointName = 'clean',
    [switch]$Replace
)
$ErrorActionPreference = 'Stop'

$vm = Get-VM -Name $Name
if ([string]$vm.CheckpointType -ne 'Standard') {
    throw "VM $Name uses $($vm.CheckpointType) checkpoints, which hold no memory: run Set-VM -Name $Name -CheckpointType Standard first"
}
if ([string]$vm.State -ne 'Running') {
    throw "VM $Name is $($vm.State): start it and let it reach the sign-in screen, so the checkpoint holds a running guest"
}
# The Heartbeat service by its Id GUID and its status by the enum value: names and the
# status description are localized.
$heartbeat = Get-VMIntegrationService -VMName $Name -ErrorAction SilentlyContinue |
    Where-Object { ([string]$_.Id) -like '*84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47' } | Select-Object -First 1
if (($null -ne $heartbeat) -and ([string]$heartbeat.PrimaryOperationalStatus -ne 'Ok')) {
    Write-Warning "the guest's heartbeat is '$($heartbeat.PrimaryOperationalStatus)': is Windows fully booted?"
}

$existing = @(Get-VMSnapshot -VMName $Name | Where-Object { $_.Name -eq $CheckpointName })
$action = 'kept'
if (($existing.Count -gt 0) -and (-not $Replace)) {
    Write-Host "checkpoint '$CheckpointName' of $Name exists; kept (use -Replace to take it again)"
} else {
    foreach ($old in $existing) { Remove-VMSnapshot -VMSnapshot $old -Confirm:$false }
    Checkpoint-VM -Name $Name -SnapshotName $CheckpointName
    $action = $(if ($existing.Count -gt 0) { 'replaced' } else { 'created' })
    Write-Host "checkpoint '$CheckpointName' of $Name $action"
}

$snap = Get-VMSnapshot -VMName $Name | Where-Object { $_.Name -eq $CheckpointName } | Select-Object -First 1
[pscustomobject]@{
    vm         = $Name
    checkpoint = $CheckpointName
    action     = $action
    type       = [string]$snap.SnapshotType
    created    = $snap.CreationTime.ToUniversalTime().ToString('o')
} | ConvertTo-Json -Compress -Depth 6
