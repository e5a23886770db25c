# Driver Verifier for the regression's optional pass: `verifier /standard /driver X`
# or `verifier /reset`. Both take effect at the next boot; exit code 2 means
# "reboot required" (note 02), which the caller turns into a reboot-and-wait.
[CmdletBinding()]
param(
    [string]$Driver = '',
    [switch]$Reset
)
$ErrorActionPreference = 'Stop'
#include Invoke-Native.ps1
# Invoke-Native: under 'Stop', `2>&1` on a native command would turn its stderr into a terminating error.
if ($Reset) {
    $run = Invoke-Native 'verifier.exe' @('/reset')
} else {
    if (-not $Driver) { throw 'Driver is required unless -Reset is given' }
    $run = Invoke-Native 'verifier.exe' @('/standard', '/driver', $Driver)
}
$rc = $run.rc
$out = $run.output
# What will be active after the reboot: the whole Invoke-Native result (raw bytes and code page); Python decodes and parses it.
$settings = Invoke-Native 'verifier.exe' @('/querysettings')
[pscustomobject]@{
    rc              = $rc
    output          = $out
    settings        = $settings
    reboot_required = ($rc -eq 2)
} | ConvertTo-Json -Compress -Depth 6
