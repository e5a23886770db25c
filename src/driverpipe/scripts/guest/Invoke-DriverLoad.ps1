# (Re)load the kernel driver service: stop an older loaded build and wait for
# STOPPED, create the service or point it at the new image (sc config), start it.
# Returns every sc.exe exit code (the Win32 error) and raw output; Python
# diagnoses them. Only numbers are read here (STATE n), never localized words.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$ServiceName,
    [Parameter(Mandatory)][string]$BinaryPath,
    [string]$ExpectedSha256 = '',
    [int]$StopTimeoutSeconds = 30
)
$ErrorActionPreference = 'Stop'

#include Invoke-Native.ps1

#include Get-StateNumber.ps1
#include Wait-ServiceStopped.ps1

$ops = @()
$result = [ordered]@{ ok = $false; error = ''; ops = $null; start_rc = $null; final_query = $null; actual_sha256 = ''; stop_code = $null }

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

if (-not $result.error) {
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
