# Finishes a push: checks the uploaded partial file's SHA-256, then atomically
# replaces the destination with it ([IO.File]::Replace on the same volume).
# A hash mismatch deletes the partial and fails: the destination is never
# half-written; a destination that already has this content is left alone
# (replaced = false). -Discard only deletes the partial (cleanup after a failed push).
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Partial,
    [string]$Path = '',
    [string]$Sha256 = '',
    [switch]$Discard
)
$ErrorActionPreference = 'Stop'

#include Move-FileAtomic.ps1

if ($Discard) {
    if (Test-Path -LiteralPath $Partial) { Remove-Item -LiteralPath $Partial -Force }
    ConvertTo-Json -InputObject ([pscustomobject]@{ discarded = $true }) -Compress -Depth 6
    return
}
if (-not $Path -or -not $Sha256) { throw 'Complete-FileUpload needs -Path and -Sha256 (or -Discard)' }
$actual = (Get-FileHash -LiteralPath $Partial -Algorithm SHA256).Hash.ToLowerInvariant()
if ($actual -ne $Sha256.ToLowerInvariant()) {
    Remove-Item -LiteralPath $Partial -Force
    throw "uploaded file hash $actual does not match the local file ($Sha256); nothing was replaced"
}
$size = (Get-Item -LiteralPath $Partial).Length
if (Test-Path -LiteralPath $Path -PathType Leaf) {
    # Already this content (a one-shot push sends without asking first): leave it alone, so a
    # loaded driver's unchanged image is never replaced.
    $existing = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($existing -eq $actual) {
        Remove-Item -LiteralPath $Partial -Force
        ConvertTo-Json -InputObject ([pscustomobject]@{ sha256 = $actual; size = [int64]$size; replaced = $false }) -Compress -Depth 6
        return
    }
    try {
        [IO.File]::Replace($Partial, $Path, [NullString]::Value)
    } catch {
        # Replace refuses some file systems/attributes: MoveFileEx replaces in one step too
        # (never Move-Item -Force, which deletes the destination first on 5.1).
        Move-FileAtomic $Partial $Path
    }
} else {
    [IO.File]::Move($Partial, $Path)
}
ConvertTo-Json -InputObject ([pscustomobject]@{ sha256 = $actual; size = [int64]$size; replaced = $true }) -Compress -Depth 6
