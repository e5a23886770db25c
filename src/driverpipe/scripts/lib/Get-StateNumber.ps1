# Shared by guest scripts through an include line (see Invoke-Native.ps1).
# The STATE number of `sc.exe query` output: numbers, never the localized state words.
function Get-StateNumber {
    param([string]$Text)
    if ($Text -match 'STATE\s*:\s*(\d+)') { return [int]$Matches[1] }
    return 0
}
