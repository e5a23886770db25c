# The lease that keeps two pipeline runs (from any machines) off one guest: take it,
# renew it, or release it. The lease file itself is the mutex while it is read and
# rewritten (opened with FileShare.None), so two callers never interleave. An expired
# lease (its run died and stopped renewing) is taken over and reported as such.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Path,
    [Parameter(Mandatory)][string]$Token,
    [string]$Owner = '',
    [string]$Machine = '',
    [int]$ProcessId = 0,
    [int]$Seconds = 900,
    [switch]$Release,
    [switch]$Query
)
$ErrorActionPreference = 'Stop'
$dir = Split-Path -Parent $Path
if ($dir -and -not (Test-Path -LiteralPath $dir)) {
    New-Item -ItemType Directory -Path $dir -Force | Out-Null
}
$fs = $null
for ($i = 0; ($i -lt 50) -and ($null -eq $fs); $i++) {
    try {
        $fs = [IO.File]::Open($Path, [IO.FileMode]::OpenOrCreate, [IO.FileAccess]::ReadWrite, [IO.FileShare]::None)
    } catch [IO.IOException] {
        Start-Sleep -Milliseconds 100
    }
}
if ($null -eq $fs) { throw "the lease file $Path stays locked by another caller" }
$result = [ordered]@{ acquired = $false; holder = $null; took_over = $null }
try {
    $buffer = New-Object byte[] ([int]$fs.Length)
    [void]$fs.Read($buffer, 0, $buffer.Length)
    $text = [Text.Encoding]::UTF8.GetString($buffer)
    $current = $null
    if ($text.Trim()) {
        try { $current = $text | ConvertFrom-Json } catch { $current = $null }
    }
    $now = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()
    $mine = ($null -ne $current) -and ($current.token -eq $Token)
    if ($Query) {
        # Read only (doctor): who holds an unexpired lease, if anyone.
        if (($null -ne $current) -and ([double]$current.expires -gt $now)) {
            $result.holder = [ordered]@{ owner = $current.owner; host = $current.host; pid = $current.pid; started = $current.started; expires = $current.expires }
        }
    } elseif ($Release) {
        if ($mine) { $fs.SetLength(0) }
        $result.acquired = $true
    } elseif (($null -eq $current) -or $mine -or ([double]$current.expires -le $now)) {
        if (($null -ne $current) -and (-not $mine)) {
            $result.took_over = [ordered]@{ owner = $current.owner; host = $current.host; pid = $current.pid; started = $current.started; expires = $current.expires }
        }
        $started = $now
        if ($mine) { $started = $current.started }
        $lease = [ordered]@{ token = $Token; owner = $Owner; host = $Machine; pid = $ProcessId; started = $started; expires = ($now + $Seconds) }
        $bytes = [Text.Encoding]::UTF8.GetBytes(($lease | ConvertTo-Json -Compress -Depth 4))
        $fs.SetLength(0)
        $fs.Write($bytes, 0, $bytes.Length)
        $result.acquired = $true
    } else {
        $result.holder = [ordered]@{ owner = $current.owner; host = $current.host; pid = $current.pid; started = $current.started; expires = $current.expires }
    }
} finally {
    $fs.Dispose()
}
[pscustomobject]$result | ConvertTo-Json -Compress -Depth 4
