# Shared by guest scripts: an include line naming this file (expanded
# by driverpipe.core.scripts.load_script before the script is sent).
# Runs a native program and returns its exit code (the Win32 error for sc.exe)
# and its merged output; the text is localized, so Python parses numbers only.
function Invoke-Native {
    param([string]$Exe, [string[]]$Arguments)
    # Windows PowerShell 5.1 turns native stderr into terminating errors under 'Stop'.
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        $lines = @(& $Exe @Arguments 2>&1 | ForEach-Object { "$_" })
        $rc = $LASTEXITCODE
    } finally {
        $ErrorActionPreference = $saved
    }
    [pscustomobject]@{ rc = $rc; output = ($lines -join "`r`n") }
}
