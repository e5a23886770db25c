# The lease that keeps two pipeline runs (from any machines) off one guest: take it,
# renew it, or release it. A lock file beside the lease (opened with FileShare.None) is
# the mutex while the lease is read and rewritten, so two callers never interleave. The
# lease is written to a temp file flushed to disk, then moved over the old one with
# MoveFileEx (REPLACE_EXISTING | WRITE_THROUGH): a bugcheck right after a renewal leaves
# the old lease or the new one, never a NUL-filled file. A lease that still cannot be read
# (NUL-filled, truncated, garbage) counts as held until its last write time plus the lease
# length (the larger of the caller's and the holder's, whose expiry is also written to a
# small sidecar before the lease), never as free. An expired lease (its run died and
# stopped renewing) is taken over and reported as such; so is the lease of
# TakeOverMachineId/TakeOverProcessId (a run of the caller's own machine and pid space,
# whose pid the caller saw gone), if it is still that holder. A hostname alone is never
# enough: containers and cloned runners share one; a lease without a machine id is
# another host's (expiry only).
# -Query only reads: it creates nothing (no folder, no lock file).
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Path,
    [Parameter(Mandatory)][string]$Token,
    [string]$Owner = '',
    [string]$Machine = '',
    [string]$MachineId = '',
    [int]$ProcessId = 0,
    [int]$Seconds = 900,
    [string]$TakeOverMachineId = '',
    [int]$TakeOverProcessId = 0,
    [switch]$Release,
    [switch]$Query
)
$ErrorActionPreference = 'Stop'

#include Move-FileAtomic.ps1

function Test-LeaseNumber {
    param($Value)
    return ($Value -is [int]) -or ($Value -is [long]) -or ($Value -is [double]) -or ($Value -is [decimal])
}

# $null: no lease (absent, or empty after a release). Else the lease; one that does not read
# as a lease is returned as 'unreadable', held until its last write time plus the lease length.
function Read-Lease {
    param([string]$LeasePath, [int]$LeaseSeconds)
    if (-not [IO.File]::Exists($LeasePath)) { return $null }
    $bytes = [IO.File]::ReadAllBytes($LeasePath)
    if ($bytes.Length -eq 0) { return $null }
    $parsed = $null
    try { $parsed = [Text.Encoding]::UTF8.GetString($bytes) | ConvertFrom-Json } catch { $parsed = $null }
    $valid = ($parsed -is [Management.Automation.PSCustomObject]) -and ($parsed.token -is [string]) -and ($parsed.token.Length -gt 0) -and
        (Test-LeaseNumber $parsed.expires) -and (Test-LeaseNumber $parsed.started) -and (Test-LeaseNumber $parsed.pid) -and
        ($parsed.owner -is [string]) -and ($parsed.host -is [string])
    if ($valid) { return $parsed }
    $written = ([DateTimeOffset][IO.File]::GetLastWriteTimeUtc($LeasePath)).ToUnixTimeSeconds()
    $expires = $written + $LeaseSeconds
    # The holder's own expiry, from the sidecar written before its lease: its lease may be longer than ours.
    $sidecar = $LeasePath + '.expires'
    if ([IO.File]::Exists($sidecar)) {
        $text = ''
        try { $text = [IO.File]::ReadAllText($sidecar).Trim() } catch { $text = '' }
        $theirs = [long]0
        if ([long]::TryParse($text, [ref]$theirs) -and ($theirs -gt $expires)) { $expires = $theirs }
    }
    return [pscustomobject]@{
        token = ''; owner = ''; host = ''; machine = ''; pid = 0; started = $written; expires = $expires
        unreadable = "the lease file $LeasePath cannot be read"
    }
}

function Get-LeaseHolder {
    param($Lease)
    $holder = [ordered]@{ owner = $Lease.owner; host = $Lease.host; machine = [string]$Lease.machine; pid = $Lease.pid; started = $Lease.started; expires = $Lease.expires }
    if ($Lease.unreadable) { $holder.unreadable = $Lease.unreadable }
    return $holder
}

$result = [ordered]@{ acquired = $false; holder = $null; took_over = $null }
$now = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()

if ($Query) {
    # Read only (doctor): who holds an unexpired lease, if anyone.
    $current = Read-Lease $Path $Seconds
    if (($null -ne $current) -and ([double]$current.expires -gt $now)) { $result.holder = Get-LeaseHolder $current }
    [pscustomobject]$result | ConvertTo-Json -Compress -Depth 4
    return
}

$dir = Split-Path -Parent $Path
if ($dir -and -not (Test-Path -LiteralPath $dir)) {
    New-Item -ItemType Directory -Path $dir -Force | Out-Null
}
$mutex = $null
for ($i = 0; ($i -lt 50) -and ($null -eq $mutex); $i++) {
    try {
        $mutex = [IO.File]::Open($Path + '.lock', [IO.FileMode]::OpenOrCreate, [IO.FileAccess]::ReadWrite, [IO.FileShare]::None)
    } catch [IO.IOException] {
        Start-Sleep -Milliseconds 100
    }
}
if ($null -eq $mutex) { throw "the lease file $Path stays locked by another caller" }
try {
    $current = Read-Lease $Path $Seconds
    $mine = ($null -ne $current) -and ($current.token -eq $Token)
    $deadHere = ($null -ne $current) -and (-not $current.unreadable) -and $TakeOverMachineId -and
        ($current.machine -is [string]) -and ($current.machine -eq $TakeOverMachineId) -and ([long]$current.pid -eq $TakeOverProcessId)
    if ($Release) {
        if ($mine) {
            [IO.File]::Delete($Path)
            [IO.File]::Delete($Path + '.expires')
        }
        $result.acquired = $true
    } elseif (($null -eq $current) -or $mine -or $deadHere -or ([double]$current.expires -le $now)) {
        if (($null -ne $current) -and (-not $mine)) { $result.took_over = Get-LeaseHolder $current }
        $started = $now
        if ($mine) { $started = $current.started }
        $lease = [ordered]@{ token = $Token; owner = $Owner; host = $Machine; machine = $MachineId; pid = $ProcessId; started = $started; expires = ($now + $Seconds) }
        # The sidecar first: if the lease write is torn, its expiry is still known.
        $writes = @(@(($Path + '.expires'), [string]($now + $Seconds)), @($Path, ($lease | ConvertTo-Json -Compress -Depth 4)))
        foreach ($write in $writes) {
            $bytes = [Text.Encoding]::UTF8.GetBytes($write[1])
            $tmp = $write[0] + '.' + $Token + '.tmp'
            $out = New-Object IO.FileStream($tmp, [IO.FileMode]::Create, [IO.FileAccess]::Write, [IO.FileShare]::None, 4096, [IO.FileOptions]::WriteThrough)
            try {
                $out.Write($bytes, 0, $bytes.Length)
                $out.Flush($true)
            } finally {
                $out.Dispose()
            }
            Move-FileAtomic $tmp $write[0]
        }
        $result.acquired = $true
    } else {
        $result.holder = Get-LeaseHolder $current
    }
} finally {
    $mutex.Dispose()
}
[pscustomobject]$result | ConvertTo-Json -Compress -Depth 4
