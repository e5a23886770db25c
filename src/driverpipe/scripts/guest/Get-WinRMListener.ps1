# Reports the guest's WinRM listeners and the certificate behind the HTTPS one
# (thumbprint, subject, names, expiry, DER as base64), so `invoke provision` can
# pin exactly that certificate on the host (winrm.ca_bundle). Read-only.
# Written from Microsoft's documentation; not yet run on a real Windows guest.
[CmdletBinding()]
param(
    [int]$Port = 5986
)
$ErrorActionPreference = 'Stop'

$listeners = @()
$problem = ''
try {
    foreach ($l in @(Get-WSManInstance -ResourceURI 'winrm/config/listener' -Enumerate)) {
        $listeners += [pscustomobject]@{
            transport  = [string]$l.Transport
            port       = [int]$l.Port
            address    = [string]$l.Address
            hostname   = [string]$l.Hostname
            enabled    = [string]$l.Enabled
            thumbprint = ([string]$l.CertificateThumbprint).Trim().ToUpperInvariant()
        }
    }
} catch {
    # Over SSH the WinRM service may simply not run: say so instead of failing.
    $problem = 'cannot enumerate WinRM listeners: ' + $_.Exception.Message
}

$https = $null
$match = @($listeners | Where-Object { ($_.transport -eq 'HTTPS') -and ($_.port -eq $Port) })
if ($match.Count -gt 0) {
    $thumb = $match[0].thumbprint
    $cert = $null
    if ($thumb) {
        $cert = Get-Item -LiteralPath ('Cert:\LocalMachine\My\' + $thumb) -ErrorAction SilentlyContinue
    }
    $https = [pscustomobject]@{
        thumbprint  = $thumb
        port        = $match[0].port
        hostname    = $match[0].hostname
        found       = ($null -ne $cert)
        subject     = $(if ($cert) { $cert.Subject } else { '' })
        not_after   = $(if ($cert) { $cert.NotAfter.ToUniversalTime().ToString('o') } else { '' })
        dns_names   = @($(if ($cert) { $cert.DnsNameList | ForEach-Object { [string]$_ } }))
        cert_base64 = $(if ($cert) { [Convert]::ToBase64String($cert.RawData) } else { '' })
    }
}

[pscustomobject]@{
    computer  = $env:COMPUTERNAME
    listeners = @($listeners)
    https     = $https
    error     = $problem
} | ConvertTo-Json -Compress -Depth 6
