# Stop the driver service, wait for STOPPED, check the device path is gone
# (CreateFileW must fail with ERROR_FILE_NOT_FOUND; an empty DevicePath: the
# driver declares no device, nothing to probe), optionally sc delete.
# A PnP package (HardwareId given) is unloaded by removing the device nodes
# this pipeline created (its driver unloads with them); delete also runs
# `pnputil /delete-driver oemNN.inf /uninstall` for the packages it published,
# never for one it did not add (the record in lib/PnpDevice.ps1).
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$ServiceName,
    [Parameter(Mandatory)][AllowEmptyString()][string]$DevicePath,
    [bool]$Delete = $false,
    [int]$TimeoutSeconds = 30,
    [string]$HardwareId = ''
)
$ErrorActionPreference = 'Stop'

#include Invoke-Native.ps1

#include Get-StateNumber.ps1
#include Wait-ServiceStopped.ps1
#include Move-FileAtomic.ps1
#include Add-PnpDeviceType.ps1

if (-not ('DriverpipeDeviceProbe' -as [type])) {
    Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
public static class DriverpipeDeviceProbe {
    [DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern IntPtr CreateFileW(string name, uint access, uint share, IntPtr sa, uint disposition, uint flags, IntPtr template);
    [DllImport("kernel32.dll", SetLastError = true)]
    static extern bool CloseHandle(IntPtr h);
    // Win32 error of opening the device (0: it opened, and was closed again).
    public static int OpenError(string path) {
        IntPtr h = CreateFileW(path, 0xC0000000, 3, IntPtr.Zero, 3, 0, IntPtr.Zero);
        if (h == new IntPtr(-1)) { return Marshal.GetLastWin32Error(); }
        CloseHandle(h);
        return 0;
    }
}
'@
}

$pnp = $null
if ($HardwareId) {
    Add-PnpDeviceType
    $recordPath = Get-PnpRecordPath $ServiceName
    $record = Read-PnpRecord $recordPath
    $pnp = [ordered]@{ removed = @(); deleted = @(); record_error = [string]$record.unreadable }
    $left = @()
    foreach ($id in @($record.devices)) {
        $error_ = [DriverpipePnp]::Remove($id)
        $pnp.removed += [pscustomobject]@{ id = $id; error = $error_ }
        # 0xE000020B (ERROR_NO_SUCH_DEVINST): already gone.
        if (($error_ -ne 0) -and ($error_ -ne -536870389)) { $left += $id }
    }
    $record.devices = @($left)
    Write-PnpRecord $recordPath $record
}

$stop = Invoke-Native 'sc.exe' @('stop', $ServiceName)
$state = Get-StateNumber $stop.output
$q = $stop
# 1061: the service is already stopping (it cannot accept the control now): wait for it too.
if (($stop.rc -eq 0) -or ($stop.rc -eq 1061)) {
    $q = Wait-ServiceStopped $ServiceName $TimeoutSeconds
    $state = Get-StateNumber $q.output
}
$openError = $null
if ($DevicePath) { $openError = [DriverpipeDeviceProbe]::OpenError($DevicePath) }
$del = $null
if ($Delete -and $pnp) {
    $kept = @()
    foreach ($name in @($record.published)) {
        $d = Invoke-Native 'pnputil.exe' @('/delete-driver', $name, '/uninstall')
        $pnp.deleted += ($d | Add-Member -NotePropertyName inf -NotePropertyValue $name -PassThru)
        if ($d.rc -ne 0) { $kept += $name }
    }
    $record.published = @($kept)
    Write-PnpRecord $recordPath $record
}
if ($Delete) { $del = Invoke-Native 'sc.exe' @('delete', $ServiceName) }

[pscustomobject]@{
    stop = $stop
    final_query = $q
    device_open_error = $openError
    delete = $del
    pnp = $pnp
} | ConvertTo-Json -Compress -Depth 6
