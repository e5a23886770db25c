# Evidence of a bugcheck since a given boot: the current boot time, System log
# Event 1001 (WER-SystemErrorReporting, "The computer has rebooted from a
# bugcheck ...") since that time, and dump files written since then.
[CmdletBinding()]
param(
    [long]$SinceFileTime = 0
)
$ErrorActionPreference = 'Stop'

$os = Get-CimInstance -ClassName Win32_OperatingSystem -Property LastBootUpTime
$bootFileTime = $os.LastBootUpTime.ToFileTime()
$since = [DateTime]::FromFileTime([Math]::Max($SinceFileTime, 0))

$events = @()
try {
    $filter = @{ LogName = 'System'; Id = 1001; ProviderName = 'Microsoft-Windows-WER-SystemErrorReporting'; StartTime = $since }
    $events = @(Get-WinEvent -FilterHashtable $filter -ErrorAction Stop | ForEach-Object {
        [pscustomobject]@{ time = $_.TimeCreated.ToFileTime(); message = [string]$_.Message }
    })
} catch [System.Exception] {
    # Get-WinEvent throws when no event matches; that is the common, healthy case.
    $events = @()
}

$dumps = @()
$root = $env:SystemRoot
$candidates = @()
if (Test-Path -LiteralPath (Join-Path $root 'MEMORY.DMP')) { $candidates += Get-Item -LiteralPath (Join-Path $root 'MEMORY.DMP') }
if (Test-Path -LiteralPath (Join-Path $root 'Minidump')) { $candidates += Get-ChildItem -LiteralPath (Join-Path $root 'Minidump') -Filter '*.dmp' }
foreach ($file in $candidates) {
    if ($file.LastWriteTime -ge $since) { $dumps += $file.FullName }
}

[pscustomobject]@{
    boot_time = $bootFileTime
    events    = @($events)
    new_dumps = @($dumps)
} | ConvertTo-Json -Compress -Depth 6
