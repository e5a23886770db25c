# The last boot time as a FileTime: it changes on every boot, so "it differs
# from before" proves a reboot happened (ansible win_reboot's method).
[CmdletBinding()]
param(
    [int]$Attempts = 3
)
$ErrorActionPreference = 'Stop'
$bootTime = $null
$lastError = ''
for ($i = 0; $i -lt $Attempts; $i++) {
    try {
        $os = Get-CimInstance -ClassName Win32_OperatingSystem -Property LastBootUpTime
        $bootTime = $os.LastBootUpTime.ToFileTime()
        break
    } catch {
        $lastError = $_.Exception.Message
        Start-Sleep -Seconds 1
    }
}
if ($null -eq $bootTime) { throw "cannot read the boot time: $lastError" }
[pscustomobject]@{ boot_time = $bootTime } | ConvertTo-Json -Compress -Depth 6
