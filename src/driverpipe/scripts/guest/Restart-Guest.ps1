# Schedule a reboot with shutdown.exe (note 02): rc 1190 (a shutdown is already
# scheduled) -> abort it (shutdown /a) and schedule ours; rc 1115 means one is
# in progress, which is fine. The caller treats a dropped connection as success.
[CmdletBinding()]
param(
    [int]$DelaySeconds = 2,
    [string]$Comment = 'driverpipe'
)
$ErrorActionPreference = 'Stop'

#include Invoke-Native.ps1

$args1 = @('/r', '/t', [string]$DelaySeconds, '/c', $Comment)
$first = Invoke-Native 'shutdown.exe' $args1
$abort = $null
$second = $null
if ($first.rc -eq 1190) {
    $abort = Invoke-Native 'shutdown.exe' @('/a')
    $second = Invoke-Native 'shutdown.exe' $args1
}
[pscustomobject]@{ first = $first; abort = $abort; second = $second } | ConvertTo-Json -Compress -Depth 6
