# Starts one DebugView kernel capture to -LogPath that outlives the WinRM shell:
# a scheduled task running as SYSTEM (pypsrp ends child processes when its pool
# closes). Switches (DebugView 4.81 /?): /accepteula, /t tray (no window), /k
# kernel capture, /v verbose kernel output (Debug Print Filter not needed), /om
# clock time with ms, /f no filter prompt, /l log file, /m size limit in MB.
# Captures of earlier runs (tasks named -TaskPrefix*) are ended first: one at a time.
# Returns after a short bounded wait for the process and its log file (unsure:
# when DebugView creates the file); it never waits for output.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$DbgviewPath,
    [Parameter(Mandatory)][string]$LogPath,
    [Parameter(Mandatory)][string]$TaskName,
    [string]$TaskPrefix = 'driverpipe-dbgview-',
    [int]$LimitMB = 64,
    [double]$ReadyTimeoutSec = 3
)
$ErrorActionPreference = 'Stop'

if (-not (Test-Path -LiteralPath $DbgviewPath -PathType Leaf)) {
    throw "DebugView is not installed at $DbgviewPath (the install step runs first; set debugview.source)"
}
$logDir = Split-Path -Parent $LogPath

function Get-CaptureProcess {
    # Win32_Process sees SYSTEM's processes in session 0 with their command lines.
    @(Get-CimInstance -ClassName Win32_Process | Where-Object {
        ($_.Name -like 'dbgview*') -and (
            ($_.ExecutablePath -and ($_.ExecutablePath -ieq $DbgviewPath)) -or
            ($_.CommandLine -and $_.CommandLine.ToLowerInvariant().Contains($logDir.ToLowerInvariant()))
        )
    })
}

$stale = @(Get-ScheduledTask -ErrorAction SilentlyContinue | Where-Object { $_.TaskName -like ($TaskPrefix + '*') })
foreach ($task in $stale) {
    Stop-ScheduledTask -TaskName $task.TaskName -TaskPath $task.TaskPath -ErrorAction SilentlyContinue
    Unregister-ScheduledTask -TaskName $task.TaskName -TaskPath $task.TaskPath -Confirm:$false
}
foreach ($proc in (Get-CaptureProcess)) {
    Stop-Process -Id $proc.ProcessId -Force -ErrorAction SilentlyContinue
}

New-Item -ItemType Directory -Force -Path $logDir | Out-Null
if (Test-Path -LiteralPath $LogPath) { Remove-Item -LiteralPath $LogPath -Force }

$arguments = '/accepteula /t /k /v /om /f /l "{0}" /m {1}' -f $LogPath, $LimitMB
$action = New-ScheduledTaskAction -Execute $DbgviewPath -Argument $arguments -WorkingDirectory $logDir
$principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
$settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew
Register-ScheduledTask -TaskName $TaskName -Action $action -Principal $principal -Settings $settings -Force | Out-Null
Start-ScheduledTask -TaskName $TaskName

$deadline = (Get-Date).AddSeconds($ReadyTimeoutSec)
$procs = @()
$logExists = $false
do {
    $procs = @(Get-CaptureProcess)
    $logExists = Test-Path -LiteralPath $LogPath
    if (($procs.Count -gt 0) -and $logExists) { break }
    Start-Sleep -Milliseconds 100
} while ((Get-Date) -lt $deadline)

$info = Get-ScheduledTaskInfo -TaskName $TaskName
[pscustomobject]@{
    task          = $TaskName
    log           = $LogPath
    arguments     = $arguments
    task_state    = [string](Get-ScheduledTask -TaskName $TaskName).State
    last_result   = [int64]$info.LastTaskResult
    pids          = @($procs | ForEach-Object { [int]$_.ProcessId })
    log_exists    = [bool]$logExists
    stale_removed = $stale.Count
} | ConvertTo-Json -Compress -Depth 6
