# Driver Verifier for the regression's optional pass: `verifier /standard /driver X`
# or `verifier /reset`. Both take effect at the next boot; exit code 2 means
# "reboot required" (note 02), which the caller turns into a reboot-and-wait.
[CmdletBinding()]
param(
    [string]$Driver = '',
    [switch]$Reset
)
$ErrorActionPreference = 'Stop'
if ($Reset) {
    $out = & verifier.exe /reset 2>&1 | Out-String
} else {
    if (-not $Driver) { throw 'Driver is required unless -Reset is given' }
    $out = & verifier.exe /standard /driver $Driver 2>&1 | Out-String
}
$rc = $LASTEXITCODE
# What will be active after the reboot, as verifier prints it (parsed by driverpipe.winparse.parse_verifier).
$settings = & verifier.exe /querysettings 2>&1 | Out-String
[pscustomobject]@{
    rc              = $rc
    output          = $out
    settings        = $settings
    reboot_required = ($rc -eq 2)
} | ConvertTo-Json -Compress -Depth 6
