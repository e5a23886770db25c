# Shared by guest scripts through an include line (see Invoke-Native.ps1).
# The state number of `sc.exe query` output, found by the value's shape: the labels
# are localized (STATE, STATUS, ESTADO, ...), the state words after the number are not.
function Get-StateNumber {
    param([string]$Text)
    if ($Text -match ':\s*(\d+)\s+(STOPPED|START_PENDING|STOP_PENDING|RUNNING|CONTINUE_PENDING|PAUSE_PENDING|PAUSED)\b') { return [int]$Matches[1] }
    return 0
}
