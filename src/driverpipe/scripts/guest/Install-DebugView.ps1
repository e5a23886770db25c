# Makes sure Sysinternals DebugView is at -Path. Already there (and, for an .exe
# source, with the expected SHA-256): nothing to do. Otherwise it comes from a
# zip pushed by the pipeline (-Archive) or an https download (-Url), checked
# against -Sha256 before it is moved into place (temp name + rename). The EULA
# is accepted later on DebugView's command line (/accepteula).
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Path,
    [string]$Sha256 = '',
    [string]$Url = '',
    [string]$Archive = ''
)
$ErrorActionPreference = 'Stop'

function Get-Sha256Hex([string]$File) {
    (Get-FileHash -LiteralPath $File -Algorithm SHA256).Hash.ToLowerInvariant()
}

function Install-FromZip([string]$Zip, [string]$Destination) {
    $unpack = Join-Path ([IO.Path]::GetTempPath()) ('driverpipe-dbgview-' + [guid]::NewGuid().ToString('N'))
    Expand-Archive -LiteralPath $Zip -DestinationPath $unpack -Force
    try {
        $leaf = Split-Path -Leaf $Destination
        $found = @(Get-ChildItem -LiteralPath $unpack -Recurse -File | Where-Object { $_.Name -ieq $leaf }) | Select-Object -First 1
        if ($null -eq $found) { throw "the DebugView archive has no $leaf" }
        Copy-Item -LiteralPath $found.FullName -Destination ($Destination + '.tmp') -Force
        Move-Item -LiteralPath ($Destination + '.tmp') -Destination $Destination -Force
    } finally {
        Remove-Item -LiteralPath $unpack -Recurse -Force -ErrorAction SilentlyContinue
    }
}

$want = $Sha256.ToLowerInvariant()
$fromZip = ($Archive -ne '') -or ($Url -match '\.zip($|\?)')
$action = 'present'
$present = Test-Path -LiteralPath $Path -PathType Leaf
# The checksum names the source file: it can only be compared with an installed .exe.
if ($present -and $want -and -not $fromZip -and ((Get-Sha256Hex $Path) -ne $want)) {
    $present = $false
    $action = 'replaced'
}

if ($Archive -ne '' -and -not $present) {
    if (-not (Test-Path -LiteralPath $Archive -PathType Leaf)) { throw "DebugView archive $Archive is missing on the guest" }
    if ($want -and ((Get-Sha256Hex $Archive) -ne $want)) { throw "DebugView archive $Archive does not have SHA-256 $want" }
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Path) | Out-Null
    Install-FromZip $Archive $Path
    $action = 'unpacked'
} elseif (-not $present) {
    if ($Url -eq '') {
        throw "DebugView is not installed at $Path and no source is configured (set debugview.source to a local path or an https URL)"
    }
    if ($want -eq '') { throw "refusing to download $Url without a checksum (set debugview.sha256)" }
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Path) | Out-Null
    # Expand-Archive in Windows PowerShell 5.1 (Archive 1.0.1.0) refuses any extension but .zip.
    $download = if ($fromZip) { $Path + '.download.zip' } else { $Path + '.download' }
    # Windows PowerShell 5.1 may default to TLS 1.0; HTTPS servers want 1.2.
    [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
    $ProgressPreference = 'SilentlyContinue'
    Invoke-WebRequest -Uri $Url -OutFile $download -UseBasicParsing
    $got = Get-Sha256Hex $download
    if ($got -ne $want) {
        Remove-Item -LiteralPath $download -Force
        throw "download of $Url has SHA-256 $got, expected $want"
    }
    if ($fromZip) {
        Install-FromZip $download $Path
        Remove-Item -LiteralPath $download -Force
    } else {
        Move-Item -LiteralPath $download -Destination $Path -Force
    }
    $action = 'downloaded'
}

$item = Get-Item -LiteralPath $Path
[pscustomobject]@{
    path    = $Path
    action  = $action
    sha256  = (Get-Sha256Hex $Path)
    version = [string]$item.VersionInfo.FileVersion
} | ConvertTo-Json -Compress -Depth 6
