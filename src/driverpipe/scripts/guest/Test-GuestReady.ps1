# Readiness after a reboot: LogonUI recreates the volatile AutoLogonChecked key
# once logon is possible (note 02). If that key never appears on this edition
# (unsure), a few minutes of uptime with the service manager answering counts.
[CmdletBinding()]
param(
    [int]$SettledUptimeSeconds = 180
)
$ErrorActionPreference = 'Stop'
$key = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon\AutoLogonChecked'
$autoLogonChecked = Test-Path -LiteralPath $key
$os = Get-CimInstance -ClassName Win32_OperatingSystem -Property LastBootUpTime
$uptime = [int]((Get-Date) - $os.LastBootUpTime).TotalSeconds
$scm = $false
try {
    $scm = ((Get-Service -Name 'WinRM').Status -eq 'Running')
} catch {
    $scm = $false
}
$ready = $autoLogonChecked -or ($scm -and ($uptime -ge $SettledUptimeSeconds))
[pscustomobject]@{
    ready = $ready
    autologon_checked = $autoLogonChecked
    uptime_seconds = $uptime
    boot_time = $os.LastBootUpTime.ToFileTime()
} | ConvertTo-Json -Compress -Depth 6
