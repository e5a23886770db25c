# Reads up to -Count bytes of a guest file from -Offset, as base64 (WinRM pull and
# log tailing). Opens with ReadWrite sharing so a log still being written can be read.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Path,
    [long]$Offset = 0,
    [Parameter(Mandatory)][int]$Count
)
$ErrorActionPreference = 'Stop'
if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) {
    ConvertTo-Json -InputObject ([pscustomobject]@{ exists = $false; size = 0; offset = $Offset; base64 = '' }) -Compress -Depth 6
    return
}
$stream = [IO.File]::Open($Path, [IO.FileMode]::Open, [IO.FileAccess]::Read, [IO.FileShare]::ReadWrite)
try {
    $size = $stream.Length
    $data = ''
    if ($Offset -lt $size -and $Count -gt 0) {
        [void]$stream.Seek($Offset, [IO.SeekOrigin]::Begin)
        $buffer = New-Object byte[] ([Math]::Min([long]$Count, $size - $Offset))
        $read = 0
        while ($read -lt $buffer.Length) {
            $n = $stream.Read($buffer, $read, $buffer.Length - $read)
            if ($n -le 0) { break }
            $read += $n
        }
        $data = [Convert]::ToBase64String($buffer, 0, $read)
    }
} finally {
    $stream.Dispose()
}
ConvertTo-Json -InputObject ([pscustomobject]@{ exists = $true; size = [int64]$size; offset = $Offset; base64 = $data }) -Compress -Depth 6
