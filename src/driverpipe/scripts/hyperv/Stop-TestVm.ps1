# Stops a Hyper-V VM: a guest shutdown through the Shutdown integration service, and
# Stop-VM -TurnOff (power off) when it has not finished within TimeoutSeconds.
# Stop-VM has no timeout of its own, so the graceful attempt runs as a job.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName,
    [int]$TimeoutSeconds = 60
)
$ErrorActionPreference = 'Stop'
try {
    $vm = Get-VM -Name $VMName
    if ([string]$vm.State -eq 'Off') {
        ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $true; mode = 'graceful'; already = $true }) -Compress -Depth 4
        return
    }
    $mode = 'hard'
    $reason = ''
    if (([string]$vm.State -eq 'Running') -and ($TimeoutSeconds -gt 0)) {
        $job = Stop-VM -Name $VMName -Force -AsJob
        if (Wait-Job -Job $job -Timeout $TimeoutSeconds) {
            if ($job.State -eq 'Completed') { $mode = 'graceful' } else { $reason = 'graceful shutdown failed' }
        } else {
            $reason = "no shutdown within $TimeoutSeconds s"
            Stop-Job -Job $job
        }
        Remove-Job -Job $job -Force
    }
    if ([string](Get-VM -Name $VMName).State -ne 'Off') {
        Stop-VM -Name $VMName -TurnOff -Force
        $mode = 'hard'
    }
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $true; mode = $mode; reason = $reason; already = $false }) -Compress -Depth 4
} catch {
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = $_.Exception.Message }) -Compress -Depth 4
    exit 1
}
