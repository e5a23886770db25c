# Reports whether a file exists on the guest, and its SHA-256 and size.
# Used before a push (skip when equal) and after one (verify what landed).
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Path
)
$ErrorActionPreference = 'Stop'
if (Test-Path -LiteralPath $Path -PathType Leaf) {
    $item = Get-Item -LiteralPath $Path
    $hash = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
    $result = [pscustomobject]@{ exists = $true; sha256 = $hash; size = [int64]$item.Length }
} else {
    $result = [pscustomobject]@{ exists = $false; sha256 = ''; size = 0 }
}
ConvertTo-Json -InputObject $result -Compress -Depth 6
