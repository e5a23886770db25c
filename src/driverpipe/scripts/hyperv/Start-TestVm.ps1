# Starts (or resumes) a Hyper-V VM and waits until its Heartbeat integration service is OK.
# Vm.Heartbeat (OkApplicationsHealthy/OkApplicationsUnknown/...) is read instead of the
# integration service by name, whose display name is localized.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName,
    [int]$TimeoutSeconds = 300
)
$ErrorActionPreference = 'Stop'
try {
    $vm = Get-VM -Name $VMName
    $before = [string]$vm.State
    if ($before -eq 'Paused') {
        Resume-VM -Name $VMName
    } elseif ($before -ne 'Running') {
        Start-VM -Name $VMName
    }
    $watch = [Diagnostics.Stopwatch]::StartNew()
    $heartbeat = ''
    while ($watch.Elapsed.TotalSeconds -lt $TimeoutSeconds) {
        $vm = Get-VM -Name $VMName
        $heartbeat = [string]$vm.Heartbeat
        if ($heartbeat -like 'Ok*') { break }
        Start-Sleep -Milliseconds 500
    }
    $result = [pscustomobject]@{
        ok             = $true
        before         = $before
        state          = [string]$vm.State
        heartbeat      = $heartbeat
        heartbeatOk    = ($heartbeat -like 'Ok*')
        waitedSeconds  = [int]$watch.Elapsed.TotalSeconds
    }
    ConvertTo-Json -InputObject $result -Compress -Depth 4
} catch {
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = $_.Exception.Message }) -Compress -Depth 4
    exit 1
}
