# (Re)load the kernel driver service: stop an older loaded build and wait for
# STOPPED, create the service or point it at the new image (sc config), start it.
# Returns every sc.exe exit code (the Win32 error) and raw output; Python
# diagnoses them. Only numbers are read here (STATE n), never localized words.
#
# A PnP package (HardwareId given: a root-enumerated id from the INF's models
# section) goes Windows' way instead of sc create/config: `pnputil /add-driver
# <inf> /install` stages it (Python parses pnputil's answer), a device node
# with that hardware id is created once (an existing one is reused), the driver
# is installed on it (which creates and starts the service), then sc start
# (1056 when the PnP manager already started it). The oemNN.inf names this
# run added to the driver store and the device it created are recorded
# (lib/PnpDevice.ps1), so unload/delete removes only those.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$ServiceName,
    [Parameter(Mandatory)][string]$BinaryPath,
    [string]$ExpectedSha256 = '',
    [int]$StopTimeoutSeconds = 30,
    [string]$InfPath = '',
    [string]$HardwareId = ''
)
$ErrorActionPreference = 'Stop'

#include Invoke-Native.ps1

#include Get-StateNumber.ps1
#include Wait-ServiceStopped.ps1
#include Move-FileAtomic.ps1
#include Add-PnpDeviceType.ps1

$ops = @()
$result = [ordered]@{ ok = $false; error = ''; ops = $null; start_rc = $null; final_query = $null; actual_sha256 = ''; stop_code = $null; pnp = $null }

# Never load an image other than the one we pushed.
if ($ExpectedSha256) {
    if (-not (Test-Path -LiteralPath $BinaryPath -PathType Leaf)) {
        $result.error = 'image_missing'
    } else {
        $actual = (Get-FileHash -LiteralPath $BinaryPath -Algorithm SHA256).Hash.ToLowerInvariant()
        $result.actual_sha256 = $actual
        if ($actual -ne $ExpectedSha256.ToLowerInvariant()) { $result.error = 'hash_mismatch' }
    }
}

if ((-not $result.error) -and $HardwareId) {
    Add-PnpDeviceType
    $recordPath = Get-PnpRecordPath $ServiceName
    $record = Read-PnpRecord $recordPath
    $before = Get-PublishedInfs
    $add = Invoke-Native 'pnputil.exe' @('/add-driver', $InfPath, '/install')
    $ops += ($add | Add-Member -NotePropertyName op -NotePropertyValue 'pnputil' -PassThru)
    $pnp = [ordered]@{ hardware_id = $HardwareId; devices = @([DriverpipePnp]::Find($HardwareId)); created = ''; create_error = 0; update_error = 0; reboot_required = $false; published_new = @(); record_error = [string]$record.unreadable }
    if ($pnp.devices.Count -eq 0) {
        $id = ''
        $pnp.create_error = [DriverpipePnp]::Create($InfPath, $HardwareId, [ref]$id)
        if ($pnp.create_error -eq 0) {
            $pnp.created = $id
            $pnp.devices = @($id)
        }
    }
    if ($pnp.create_error -eq 0) {
        $reboot = $false
        $pnp.update_error = [DriverpipePnp]::Update($InfPath, $HardwareId, [ref]$reboot)
        $pnp.reboot_required = [bool]$reboot
    }
    # pnputil or the update published the package: a name that was not there before is ours.
    $pnp.published_new = @(Get-PublishedInfs | Where-Object { $before -notcontains $_ })
    $record.published = @(@($record.published) + @($pnp.published_new) | Select-Object -Unique)
    if ($pnp.created) { $record.devices = @(@($record.devices) + @($pnp.created) | Select-Object -Unique) }
    if (($pnp.published_new.Count -gt 0) -or $pnp.created) { Write-PnpRecord $recordPath $record }
    $result.pnp = $pnp
    if (($pnp.create_error -eq 0) -and ($pnp.update_error -eq 0)) {
        $start = Invoke-Native 'sc.exe' @('start', $ServiceName)
        $ops += ($start | Add-Member -NotePropertyName op -NotePropertyValue 'start' -PassThru)
        $result.start_rc = $start.rc
        $result.final_query = Invoke-Native 'sc.exe' @('query', $ServiceName)
        $result.ok = (@(0, 1056) -contains $start.rc)
    }
} elseif (-not $result.error) {
    $query = Invoke-Native 'sc.exe' @('query', $ServiceName)
    $ops += ($query | Add-Member -NotePropertyName op -NotePropertyValue 'query' -PassThru)
    $exists = ($query.rc -ne 1060)
    $state = Get-StateNumber $query.output

    if ($exists -and ($state -ne 1) -and ($state -ne 0)) {
        $stop = Invoke-Native 'sc.exe' @('stop', $ServiceName)
        $ops += ($stop | Add-Member -NotePropertyName op -NotePropertyValue 'stop' -PassThru)
        # 0: stopping; 1061: already stopping (cannot accept the control now); 1062: not running.
        # Anything else (1052: no unload routine) is a refusal: waiting for STOPPED would only time out.
        if (@(0, 1061, 1062) -notcontains $stop.rc) {
            $result.error = 'stop_refused'
            $result.stop_code = $stop.rc
        } else {
            $q = Wait-ServiceStopped $ServiceName $StopTimeoutSeconds
            $state = Get-StateNumber $q.output
            $ops += ($q | Add-Member -NotePropertyName op -NotePropertyValue 'wait_stopped' -PassThru)
            if (($state -ne 1) -and ($q.rc -ne 1060)) { $result.error = 'stop_timeout' }
            if ($q.rc -eq 1060) { $exists = $false }
        }
    }

    if (-not $result.error) {
        if ($exists) {
            $cfg = Invoke-Native 'sc.exe' @('config', $ServiceName, 'type=', 'kernel', 'start=', 'demand', 'binPath=', $BinaryPath)
            $ops += ($cfg | Add-Member -NotePropertyName op -NotePropertyValue 'config' -PassThru)
            $setupRc = $cfg.rc
        } else {
            $create = Invoke-Native 'sc.exe' @('create', $ServiceName, 'type=', 'kernel', 'start=', 'demand', 'binPath=', $BinaryPath)
            $ops += ($create | Add-Member -NotePropertyName op -NotePropertyValue 'create' -PassThru)
            $setupRc = $create.rc
        }
        if ($setupRc -eq 0) {
            $start = Invoke-Native 'sc.exe' @('start', $ServiceName)
            $ops += ($start | Add-Member -NotePropertyName op -NotePropertyValue 'start' -PassThru)
            $result.start_rc = $start.rc
            $final = Invoke-Native 'sc.exe' @('query', $ServiceName)
            $result.final_query = $final
            $result.ok = ($start.rc -eq 0)
        }
    }
}
$result.ops = @($ops)
[pscustomobject]$result | ConvertTo-Json -Compress -Depth 6
