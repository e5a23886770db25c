# What the pipeline needs to explain a capture: the capture logs in -LogDir
# (newest first), whether a driverpipe capture task / DebugView process runs,
# the driver service's state, the Debug Print Filter DEFAULT value and the
# minidumps. Read-only.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$LogDir,
    [Parameter(Mandatory)][string]$ServiceName,
    [string]$DbgviewPath = '',
    [string]$TaskName = '',
    [string]$LogPath = '',
    [string]$TaskPrefix = 'driverpipe-dbgview-'
)
$ErrorActionPreference = 'Stop'

$logs = @()
if (Test-Path -LiteralPath $LogDir -PathType Container) {
    $logs = @(Get-ChildItem -LiteralPath $LogDir -Filter '*.log' -File | Sort-Object LastWriteTimeUtc -Descending | ForEach-Object {
        [pscustomobject]@{ path = $_.FullName; size = [int64]$_.Length; modified = $_.LastWriteTimeUtc.ToString('o') }
    })
}

$tasks = @(Get-ScheduledTask -ErrorAction SilentlyContinue | Where-Object {
    if ($TaskName) { $_.TaskName -eq $TaskName } else { $_.TaskName -like ($TaskPrefix + '*') }
})
$taskInfo = $null
if ($tasks.Count -gt 0) {
    $t = $tasks[0]
    $info = Get-ScheduledTaskInfo -TaskName $t.TaskName -TaskPath $t.TaskPath
    $taskInfo = [pscustomobject]@{ name = $t.TaskName; state = [string]$t.State; last_result = [int64]$info.LastTaskResult }
}
$capturing = @($tasks | Where-Object { [string]$_.State -eq 'Running' }).Count -gt 0

$procs = @(Get-CimInstance -ClassName Win32_Process | Where-Object { $_.Name -like 'dbgview*' })
$dbgview = [pscustomobject]@{
    running = ($procs.Count -gt 0)
    pids    = @($procs | ForEach-Object { [int]$_.ProcessId })
    path    = $DbgviewPath
    present = [bool]($DbgviewPath -and (Test-Path -LiteralPath $DbgviewPath -PathType Leaf))
}

# Win32_SystemDriver covers kernel services (Get-Service may not list drivers).
$driver = @(Get-CimInstance -ClassName Win32_SystemDriver | Where-Object { $_.Name -ieq $ServiceName }) | Select-Object -First 1
$service = [pscustomobject]@{ exists = ($null -ne $driver); state = $null }
if ($null -ne $driver) { $service.state = ([string]$driver.State).ToUpperInvariant() }

$filter = $null
$filterKey = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Debug Print Filter'
$value = Get-ItemProperty -LiteralPath $filterKey -Name 'DEFAULT' -ErrorAction SilentlyContinue
if ($null -ne $value) { $filter = [int64]$value.DEFAULT }

$dumps = @()
$dumpDir = Join-Path $env:SystemRoot 'Minidump'
if (Test-Path -LiteralPath $dumpDir -PathType Container) {
    $dumps = @(Get-ChildItem -LiteralPath $dumpDir -Filter '*.dmp' -File | ForEach-Object {
        [pscustomobject]@{ path = $_.FullName; size = [int64]$_.Length }
    })
}

$logSize = $null
if ($LogPath -and (Test-Path -LiteralPath $LogPath -PathType Leaf)) { $logSize = [int64](Get-Item -LiteralPath $LogPath).Length }

[pscustomobject]@{
    log_dir      = $LogDir
    logs         = @($logs)
    latest_log   = $(if ($logs.Count -gt 0) { $logs[0].path } else { $null })
    capturing    = [bool]$capturing
    task         = $taskInfo
    dbgview      = $dbgview
    service      = $service
    print_filter = $filter
    log_size     = $logSize
    minidumps    = @($dumps)
} | ConvertTo-Json -Compress -Depth 6
