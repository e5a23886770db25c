# Prepare a TEST machine: TESTSIGNING, Debug Print Filter, trust of the test
# certificate. Each change is made only if missing; returns what changed and
# whether a reboot is needed. Python refuses to call this on non-test targets.
[CmdletBinding()]
param(
    [bool]$EnableTestSigning = $false,
    [bool]$SetDebugFilter = $false,
    [int]$DebugFilterValue = 15,
    [string]$CertBase64 = '',
    [string]$CertThumbprint = ''
)
$ErrorActionPreference = 'Stop'

#include Invoke-Native.ps1

$changed = @()
$reboot = $false
$bcd = $null

if ($EnableTestSigning) {
    $bcd = Invoke-Native 'bcdedit.exe' @('/set', '{current}', 'testsigning', 'on')
    if ($bcd.rc -eq 0) {
        $changed += 'testsigning'
        $reboot = $true
    }
}

if ($SetDebugFilter) {
    $key = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Debug Print Filter'
    if (-not (Test-Path -LiteralPath $key)) { New-Item -Path $key -Force | Out-Null }
    New-ItemProperty -LiteralPath $key -Name DEFAULT -PropertyType DWord -Value $DebugFilterValue -Force | Out-Null
    $changed += 'debug_filter'
    # Read at boot; no reboot just for this: DebugView's verbose kernel capture (/v) covers this boot.
}

if ($CertBase64) {
    $bytes = [Convert]::FromBase64String($CertBase64)
    $cert = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2 -ArgumentList (, $bytes)
    foreach ($storeName in @('Root', 'TrustedPublisher')) {
        if (-not (Test-Path -LiteralPath ('Cert:\LocalMachine\' + $storeName + '\' + $cert.Thumbprint))) {
            $store = New-Object System.Security.Cryptography.X509Certificates.X509Store -ArgumentList $storeName, 'LocalMachine'
            $store.Open('ReadWrite')
            try { $store.Add($cert) } finally { $store.Close() }
            $changed += ('cert_' + $storeName)
        }
    }
}

[pscustomobject]@{
    changed = @($changed)
    reboot_required = $reboot
    bcdedit = $bcd
    thumbprint = $CertThumbprint
} | ConvertTo-Json -Compress -Depth 6
