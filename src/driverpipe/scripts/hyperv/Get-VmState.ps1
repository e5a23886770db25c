# Reports one Hyper-V VM's state (read-only; safe under --dry).
# Output: one JSON object {ok, exists, state, heartbeat, uptimeSeconds, checkpointType, generation, secureBoot, checkpoints}.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName
)
$ErrorActionPreference = 'Stop'
try {
    $vm = Get-VM -Name $VMName -ErrorAction SilentlyContinue
    if ($null -eq $vm) {
        ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $true; exists = $false }) -Compress -Depth 4
        return
    }
    $secureBoot = $null
    if ($vm.Generation -eq 2) {
        $secureBoot = [string](Get-VMFirmware -VMName $VMName).SecureBoot
    }
    $checkpoints = @(Get-VMSnapshot -VMName $VMName | ForEach-Object { $_.Name })
    $result = [pscustomobject]@{
        ok             = $true
        exists         = $true
        state          = [string]$vm.State
        heartbeat      = [string]$vm.Heartbeat
        uptimeSeconds  = [int]$vm.Uptime.TotalSeconds
        checkpointType = [string]$vm.CheckpointType
        generation     = [int]$vm.Generation
        secureBoot     = $secureBoot
        checkpoints    = $checkpoints
    }
    ConvertTo-Json -InputObject $result -Compress -Depth 4
} catch {
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = $_.Exception.Message }) -Compress -Depth 4
    exit 1
}
