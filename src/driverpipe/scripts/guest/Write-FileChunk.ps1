# Writes one base64 chunk of a pushed file at -Offset (WinRM push).
# Offset 0 creates (or truncates) the file and its folder; any other offset must
# equal the current length, so a lost or repeated chunk is an error, never a hole.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Path,
    # An empty file is pushed as one empty chunk: Mandatory alone would refuse ''.
    [Parameter(Mandatory)][AllowEmptyString()][string]$Base64,
    [Parameter(Mandatory)][long]$Offset
)
$ErrorActionPreference = 'Stop'
$bytes = [Convert]::FromBase64String($Base64)
if ($Offset -eq 0) {
    $dir = Split-Path -Parent $Path
    if ($dir -and -not (Test-Path -LiteralPath $dir)) {
        New-Item -ItemType Directory -Path $dir -Force | Out-Null
    }
    $mode = [IO.FileMode]::Create
} else {
    $mode = [IO.FileMode]::Open
}
$stream = [IO.File]::Open($Path, $mode, [IO.FileAccess]::Write, [IO.FileShare]::None)
try {
    if ($stream.Length -ne $Offset) {
        throw "chunk offset $Offset does not match the partial file's length $($stream.Length)"
    }
    [void]$stream.Seek($Offset, [IO.SeekOrigin]::Begin)
    $stream.Write($bytes, 0, $bytes.Length)
    $size = $stream.Length
} finally {
    $stream.Dispose()
}
ConvertTo-Json -InputObject ([pscustomobject]@{ size = [int64]$size }) -Compress -Depth 6
