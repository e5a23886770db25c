# Everything deploy needs to know about the guest, in ONE round trip.
# Native tools (bcdedit.exe, sc.exe) are returned raw with their exit codes:
# their text is localized, so Python parses numbers and layout, not words.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$ServiceName,
    [string]$GuestDir = '',
    [string[]]$FileNames = @(),
    [string]$CertThumbprint = '',
    [string]$DebugViewPath = ''
)
$ErrorActionPreference = 'Stop'

#include Invoke-Native.ps1

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$elevated = ([Security.Principal.WindowsPrincipal]$identity).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)

$os = Get-CimInstance -ClassName Win32_OperatingSystem
$bootTime = $os.LastBootUpTime.ToFileTime()

# Secure Boot: BIOS firmware has no Secure Boot; Confirm-SecureBootUEFI throws there.
$secureBoot = 'unknown'
$secureBootDetail = ''
try {
    if (Confirm-SecureBootUEFI) { $secureBoot = 'on' } else { $secureBoot = 'off' }
} catch [System.PlatformNotSupportedException] {
    $secureBoot = 'unsupported'
} catch {
    $secureBootDetail = $_.Exception.Message
}

# HVCI (memory integrity): running per Device Guard, else configured in the registry.
$hvciRunning = $null
try {
    $dg = Get-CimInstance -ClassName Win32_DeviceGuard -Namespace 'root\Microsoft\Windows\DeviceGuard'
    $hvciRunning = @($dg.SecurityServicesRunning) -contains 2
} catch {
    $hvciRunning = $null
}
$hvciConfigured = $false
$hvciKey = 'HKLM:\SYSTEM\CurrentControlSet\Control\DeviceGuard\Scenarios\HypervisorEnforcedCodeIntegrity'
$hvciValue = Get-ItemProperty -Path $hvciKey -Name Enabled -ErrorAction SilentlyContinue
if (($null -ne $hvciValue) -and ($hvciValue.Enabled -eq 1)) { $hvciConfigured = $true }

$bcd = Invoke-Native 'bcdedit.exe' @('/enum', '{current}')
# What the running kernel booted with (bcdedit shows the store, which may be pending).
$startOptions = (Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control' -Name SystemStartOptions).SystemStartOptions

$filter = $null
$filterValue = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Debug Print Filter' -Name DEFAULT -ErrorAction SilentlyContinue
if ($null -ne $filterValue) { $filter = [int64]$filterValue.DEFAULT }

$certRoot = $false
$certPublisher = $false
if ($CertThumbprint) {
    $certRoot = Test-Path -LiteralPath ('Cert:\LocalMachine\Root\' + $CertThumbprint)
    $certPublisher = Test-Path -LiteralPath ('Cert:\LocalMachine\TrustedPublisher\' + $CertThumbprint)
}

$files = @{}
foreach ($name in $FileNames) {
    $path = Join-Path $GuestDir $name
    if (Test-Path -LiteralPath $path -PathType Leaf) {
        $files[$name] = (Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash.ToLowerInvariant()
    } else {
        $files[$name] = $null
    }
}

$debugView = $null
if ($DebugViewPath) { $debugView = Test-Path -LiteralPath $DebugViewPath -PathType Leaf }

$qc = Invoke-Native 'sc.exe' @('qc', $ServiceName)
$query = Invoke-Native 'sc.exe' @('query', $ServiceName)

$pending = (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') -or
    (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired')

[pscustomobject]@{
    elevated = $elevated
    os_caption = [string]$os.Caption
    os_build = [int]$os.BuildNumber
    secure_boot = $secureBoot
    secure_boot_detail = $secureBootDetail
    hvci_running = $hvciRunning
    hvci_configured = $hvciConfigured
    bcdedit = $bcd
    start_options = [string]$startOptions
    debug_filter = $filter
    cert_root = $certRoot
    cert_trusted_publisher = $certPublisher
    files = $files
    debugview_present = $debugView
    sc_qc = $qc
    sc_query = $query
    boot_time = $bootTime
    pending_reboot = $pending
} | ConvertTo-Json -Compress -Depth 6
