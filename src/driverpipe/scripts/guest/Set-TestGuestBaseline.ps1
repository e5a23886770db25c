# The parts of a TEST guest's baseline that Set-GuestPrepared.ps1 does not cover:
# crash dump settings (so a bugcheck leaves a dump and Event 1001 for regress),
# auto-logon off, the WinRM service starting on its own, and whether DebugView
# is present. Idempotent: each value is written only when it differs; returns
# what changed and whether a reboot is needed. -CheckOnly reports without writing.
# Python calls this only on targets with test_machine = true.
# Written from Microsoft's documentation; not yet run on a real Windows guest.
[CmdletBinding()]
param(
    [ValidateSet('none', 'complete', 'kernel', 'small', 'automatic', 'active')]
    [string]$CrashDump = 'automatic',
    [string]$DumpFile = '%SystemRoot%\MEMORY.DMP',
    [string]$MinidumpDir = '%SystemRoot%\Minidump',
    [bool]$AutoReboot = $true,
    [bool]$DisableAutoLogon = $true,
    [string]$DebugViewPath = 'C:\Tools\Dbgview.exe',
    [bool]$CheckOnly = $false
)
$ErrorActionPreference = 'Stop'

# CrashDumpEnabled values (CrashControl): 0 none, 1 complete, 2 kernel, 3 small, 7 automatic;
# 'active' is complete (1) plus FilterPages=1 (Windows 10 1607+).
$dumpCodes = @{ none = 0; complete = 1; kernel = 2; small = 3; automatic = 7; active = 1 }

# One reference object collects what Set-Value did. Not $script: variables: scripts run
# through [scriptblock]::Create + & (Invoke-Batch, the SSH/local wrapper, Invoke-InVm)
# have no script scope of their own, so $script: would land in the global scope.
$state = [pscustomobject]@{ changed = New-Object System.Collections.ArrayList; already = New-Object System.Collections.ArrayList; reboot = $false }

function Set-Value {
    param([string]$Key, [string]$Name, $Value, [string]$Kind, [string]$Label, [bool]$NeedsReboot)
    $current = Get-ItemProperty -LiteralPath $Key -Name $Name -ErrorAction SilentlyContinue
    $have = $null
    if ($null -ne $current) { $have = $current.$Name }
    # ExpandString values come back expanded; compare against the expanded wish too.
    $same = ($null -ne $have) -and (("$have" -eq "$Value") -or ("$have" -eq [Environment]::ExpandEnvironmentVariables("$Value")))
    if ($same) {
        [void]$state.already.Add($Label)
        return
    }
    if (-not $CheckOnly) {
        if (-not (Test-Path -LiteralPath $Key)) { New-Item -Path $Key -Force | Out-Null }
        New-ItemProperty -LiteralPath $Key -Name $Name -PropertyType $Kind -Value $Value -Force | Out-Null
    }
    [void]$state.changed.Add($Label)
    if ($NeedsReboot) { $state.reboot = $true }
}

# Crash dumps: the kernel reads CrashControl at boot (unsure whether every value
# needs a reboot; treated as needing one, which provision does anyway).
$cc = 'HKLM:\SYSTEM\CurrentControlSet\Control\CrashControl'
Set-Value $cc 'CrashDumpEnabled' ([int]$dumpCodes[$CrashDump]) 'DWord' "crash_dump=$CrashDump" $true
if ($CrashDump -eq 'active') {
    Set-Value $cc 'FilterPages' 1 'DWord' 'crash_dump_filter_pages' $true
} elseif ($null -ne (Get-ItemProperty -LiteralPath $cc -Name 'FilterPages' -ErrorAction SilentlyContinue)) {
    # A leftover FilterPages would turn 'complete' into 'active'.
    if (-not $CheckOnly) { Remove-ItemProperty -LiteralPath $cc -Name 'FilterPages' }
    [void]$state.changed.Add('crash_dump_filter_pages_removed')
    $state.reboot = $true
}
Set-Value $cc 'DumpFile' $DumpFile 'ExpandString' 'dump_file' $true
Set-Value $cc 'MinidumpDir' $MinidumpDir 'ExpandString' 'minidump_dir' $true
# AutoReboot: the guest comes back after a bugcheck, so regress can read Event 1001 and pull the dump.
Set-Value $cc 'AutoReboot' ([int]$AutoReboot) 'DWord' 'auto_reboot' $true
Set-Value $cc 'LogEvent' 1 'DWord' 'log_event' $true
Set-Value $cc 'Overwrite' 1 'DWord' 'overwrite_dump' $false
# An NMI from the hypervisor (regress, on a hung guest) bugchecks (0x80) and writes a dump.
Set-Value $cc 'NMICrashDump' 1 'DWord' 'nmi_crash_dump' $true
# Keep MEMORY.DMP even when the disk is low on space (small test VM disks).
Set-Value $cc 'AlwaysKeepMemoryDump' 1 'DWord' 'always_keep_dump' $false

# Auto-logon off: an unattended install may have left it on with a clear-text DefaultPassword.
$winlogon = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon'
$removedPassword = $false
if ($DisableAutoLogon) {
    Set-Value $winlogon 'AutoAdminLogon' '0' 'String' 'auto_logon_off' $false
    $pw = Get-ItemProperty -LiteralPath $winlogon -Name 'DefaultPassword' -ErrorAction SilentlyContinue
    if ($null -ne $pw) {
        if (-not $CheckOnly) { Remove-ItemProperty -LiteralPath $winlogon -Name 'DefaultPassword' }
        [void]$state.changed.Add('default_password_removed')
        $removedPassword = $true
    }
}

# WinRM must come back by itself after every reboot the pipeline triggers.
$winrm = Get-Service -Name WinRM -ErrorAction SilentlyContinue
$winrmStart = ''
if ($null -ne $winrm) {
    $winrmStart = [string]$winrm.StartType
    if ($winrmStart -ne 'Automatic') {
        if (-not $CheckOnly) { Set-Service -Name WinRM -StartupType Automatic }
        [void]$state.changed.Add('winrm_autostart')
    } else {
        [void]$state.already.Add('winrm_autostart')
    }
}

$dumpRoot = [Environment]::ExpandEnvironmentVariables($MinidumpDir)
[pscustomobject]@{
    changed           = @($state.changed)
    already           = @($state.already)
    reboot_required   = $state.reboot
    check_only        = $CheckOnly
    crash_dump        = $CrashDump
    minidump_dir      = $dumpRoot
    debugview_present = (Test-Path -LiteralPath $DebugViewPath -PathType Leaf)
    winrm_start_type  = $winrmStart
    removed_password  = $removedPassword
} | ConvertTo-Json -Compress -Depth 6
