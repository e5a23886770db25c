# Ends one capture: stops and removes its scheduled task and ends the DebugView
# process(es) writing -LogPath. Idempotent: a capture already gone is fine.
# The log file stays on the guest (pulled as an artifact by `invoke logs`).
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$TaskName,
    [Parameter(Mandatory)][string]$LogPath,
    [string]$DbgviewPath = ''
)
$ErrorActionPreference = 'Stop'

$removed = $false
$task = Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
if ($null -ne $task) {
    Stop-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
    $removed = $true
}

$killed = @()
$needle = $LogPath.ToLowerInvariant()
foreach ($proc in @(Get-CimInstance -ClassName Win32_Process | Where-Object { $_.Name -like 'dbgview*' })) {
    $ours = ($proc.CommandLine -and $proc.CommandLine.ToLowerInvariant().Contains($needle)) -or
        ($DbgviewPath -and $proc.ExecutablePath -and ($proc.ExecutablePath -ieq $DbgviewPath))
    if ($ours) {
        Stop-Process -Id $proc.ProcessId -Force -ErrorAction SilentlyContinue
        $killed += [int]$proc.ProcessId
    }
}

$size = 0
$exists = Test-Path -LiteralPath $LogPath -PathType Leaf
if ($exists) { $size = (Get-Item -LiteralPath $LogPath).Length }
[pscustomobject]@{
    task_removed = $removed
    killed       = @($killed)
    log          = $LogPath
    log_exists   = [bool]$exists
    log_size     = [int64]$size
} | ConvertTo-Json -Compress -Depth 6
