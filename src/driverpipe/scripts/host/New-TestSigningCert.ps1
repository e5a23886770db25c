# Find or create the driver test-signing certificate in a CurrentUser store (BUILD HOST, not the guest).
# New-SelfSignedCertificate can only create in Cert:\CurrentUser\My, so the new certificate
# (with its private key) is moved into the dedicated store $StoreName (default
# WDRTestCertStore, like cargo-wdk) where `signtool sign /s $StoreName /n <CN>` finds it.
# -Rotate removes every certificate with this subject from the store first.
# Exports the DER .cer to $CerPath and prints one JSON line: thumbprint, not_after, created.
# Written from Microsoft's documentation; never run by the test suite (fakes replace it).
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Subject,
    [Parameter(Mandatory = $true)][string]$StoreName,
    [Parameter(Mandatory = $true)][string]$CerPath,
    [int]$ValidDays = 730,
    [switch]$Rotate
)
$ErrorActionPreference = 'Stop'
$codeSigning = '1.3.6.1.5.5.7.3.3'

$store = New-Object System.Security.Cryptography.X509Certificates.X509Store($StoreName, 'CurrentUser')
$store.Open('ReadWrite')
try {
    $mine = @($store.Certificates | Where-Object { $_.Subject -eq $Subject })
    if ($Rotate) {
        foreach ($old in $mine) { $store.Remove($old) }
        $mine = @()
    }
    $now = Get-Date
    $usable = @($mine | Where-Object {
            $_.HasPrivateKey -and $_.NotAfter -gt $now -and
            ($_.EnhancedKeyUsageList | Where-Object { $_.ObjectId -eq $codeSigning })
        } | Sort-Object NotAfter -Descending)
    $created = $false
    if ($usable.Count -gt 0) {
        $cert = $usable[0]
    } else {
        $new = New-SelfSignedCertificate -Type CodeSigningCert -Subject $Subject `
            -CertStoreLocation 'Cert:\CurrentUser\My' -KeyAlgorithm RSA -KeyLength 2048 `
            -HashAlgorithm SHA256 -KeyExportPolicy Exportable -NotAfter $now.AddDays($ValidDays)
        $store.Add($new)
        Remove-Item -LiteralPath ('Cert:\CurrentUser\My\' + $new.Thumbprint) -DeleteKey:$false
        $cert = $new
        $created = $true
    }
} finally {
    $store.Close()
}
$dir = Split-Path -Parent $CerPath
if ($dir -and -not (Test-Path -LiteralPath $dir)) { New-Item -ItemType Directory -Path $dir -Force | Out-Null }
[System.IO.File]::WriteAllBytes($CerPath, $cert.RawData)
[pscustomobject]@{
    thumbprint = $cert.Thumbprint
    not_after  = $cert.NotAfter.ToUniversalTime().ToString('o')
    subject    = $cert.Subject
    created    = $created
} | ConvertTo-Json -Compress -Depth 4
