# Run ONCE inside a fresh Windows 10/11 or Server 2022/2025 test VM, in an
# elevated Windows PowerShell 5.1 (or from autounattend.xml FirstLogonCommands).
# It makes the VM reachable for driverpipe, after which `invoke provision` does
# the rest from the host:
#   - network profile Private (WinRM refuses to configure itself on Public),
#   - WinRM enabled, an HTTPS listener on 5986 with a self-signed certificate
#     whose names include this machine's DNS names and IP addresses,
#   - a firewall rule for that port,
#   - LocalAccountTokenFilterPolicy=1 so a LOCAL administrator is elevated over WinRM,
#   - no sleep/hibernation (a sleeping VM fails a nightly run),
#   - optionally the OpenSSH server (-InstallOpenSSH),
#   - exports the listener certificate as .cer (DER) and .pem to -ExportDir and
#     prints its thumbprint: copy the .pem to the host and set
#     targets.NAME.winrm.ca_bundle to it (vm/README.md).
# Safe to run again: existing pieces are kept (a certificate valid for at least
# 30 more days with the same names is reused; -RenewCertificate forces a new one).
# Written from Microsoft's documentation; NOT yet run on a real Windows machine.
[CmdletBinding()]
param(
    [string[]]$DnsName = @(),
    [string[]]$IPAddress = @(),
    [int]$Port = 5986,
    [string]$ExportDir = 'C:\driverpipe',
    [int]$CertYears = 5,
    [switch]$RenewCertificate,
    [switch]$InstallOpenSSH,
    [bool]$AllowLocalAdmins = $true,
    [bool]$DisableSleep = $true
)
$ErrorActionPreference = 'Stop'

$friendly = 'driverpipe WinRM HTTPS'
$ruleName = 'driverpipe-WinRM-HTTPS'
$steps = @()

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$isAdmin = ([Security.Principal.WindowsPrincipal]$identity).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
if (-not $isAdmin) { throw 'run this script in an elevated PowerShell (Run as Administrator)' }

# 1. Network profile Private (domain networks stay as they are: they cannot be changed).
foreach ($netProfile in @(Get-NetConnectionProfile)) {
    if ($netProfile.NetworkCategory -eq 'Public') {
        Set-NetConnectionProfile -InterfaceIndex $netProfile.InterfaceIndex -NetworkCategory Private
        $steps += ('network_private:' + $netProfile.InterfaceAlias)
    }
}

# 2. WinRM service + PowerShell remoting endpoint (also creates the HTTP listener on 5985).
Enable-PSRemoting -Force -SkipNetworkProfileCheck | Out-Null
Set-Service -Name WinRM -StartupType Automatic
$steps += 'winrm_enabled'

# 3. The listener certificate: names the host may use to reach this VM.
if ($DnsName.Count -eq 0) {
    $DnsName = @($env:COMPUTERNAME, 'localhost')
    try {
        $fqdn = [System.Net.Dns]::GetHostEntry($env:COMPUTERNAME).HostName
        if ($fqdn -and ($DnsName -notcontains $fqdn)) { $DnsName += $fqdn }
    } catch {
        Write-Verbose "no DNS entry for $env:COMPUTERNAME; using the bare name"
    }
}
if ($IPAddress.Count -eq 0) {
    # 127.0.0.1 covers QEMU's host forward (the pipeline connects to 127.0.0.1:55986).
    $IPAddress = @('127.0.0.1')
    foreach ($a in @(Get-NetIPAddress -AddressFamily IPv4 -ErrorAction SilentlyContinue)) {
        if (($a.IPAddress -ne '127.0.0.1') -and ($a.IPAddress -notlike '169.254.*')) { $IPAddress += $a.IPAddress }
    }
}
$san = @()
foreach ($n in $DnsName) { $san += ('DNS=' + $n) }
foreach ($ip in $IPAddress) { $san += ('IPAddress=' + $ip) }
$sanText = $san -join '&'

$cert = $null
if (-not $RenewCertificate) {
    $soon = (Get-Date).AddDays(30)
    $cert = Get-ChildItem -Path Cert:\LocalMachine\My |
        Where-Object { ($_.FriendlyName -eq $friendly) -and ($_.NotAfter -gt $soon) -and ($_.HasPrivateKey) } |
        Where-Object {
            $have = @($_.DnsNameList | ForEach-Object { [string]$_ })
            # IP SANs are not in DnsNameList: look for each address in the SAN extension's text,
            # by the number itself (the text around it is localized).
            $sanExt = $_.Extensions | Where-Object { $_.Oid.Value -eq '2.5.29.17' } | Select-Object -First 1
            $sanText = if ($null -ne $sanExt) { $sanExt.Format($false) } else { '' }
            $missingIp = @($IPAddress | Where-Object { $sanText -notmatch ('(?<![\d.])' + [regex]::Escape($_) + '(?![\d.])') })
            (@($DnsName | Where-Object { $have -notcontains $_ }).Count -eq 0) -and ($missingIp.Count -eq 0)
        } |
        Sort-Object -Property NotAfter -Descending | Select-Object -First 1
}
if ($null -eq $cert) {
    # SAN via -TextExtension so IP addresses can be included (-DnsName takes names only).
    # (unsure) the exact certreq-style SAN syntax was not tried on a real machine.
    $cert = New-SelfSignedCertificate -CertStoreLocation Cert:\LocalMachine\My `
        -Subject ('CN=' + $DnsName[0]) -FriendlyName $friendly `
        -TextExtension @('2.5.29.37={text}1.3.6.1.5.5.7.3.1', ('2.5.29.17={text}' + $sanText)) `
        -KeyAlgorithm RSA -KeyLength 2048 -HashAlgorithm SHA256 -KeyExportPolicy NonExportable `
        -NotAfter (Get-Date).AddYears($CertYears)
    $steps += 'certificate_created'
}
$thumb = $cert.Thumbprint.ToUpperInvariant()

# 4. The HTTPS listener: created, or pointed at the current certificate.
$selector = @{ Address = '*'; Transport = 'HTTPS' }
$existing = $null
try {
    $existing = Get-WSManInstance -ResourceURI 'winrm/config/listener' -SelectorSet $selector
} catch {
    $existing = $null
}
if ($null -eq $existing) {
    $values = @{ Hostname = $DnsName[0]; CertificateThumbprint = $thumb; Port = $Port }
    New-WSManInstance -ResourceURI 'winrm/config/listener' -SelectorSet $selector -ValueSet $values | Out-Null
    $steps += 'listener_created'
} elseif ((([string]$existing.CertificateThumbprint).Trim().ToUpperInvariant() -ne $thumb) -or ([int]$existing.Port -ne $Port)) {
    Set-WSManInstance -ResourceURI 'winrm/config/listener' -SelectorSet $selector -ValueSet @{ CertificateThumbprint = $thumb; Port = $Port } | Out-Null
    $steps += 'listener_updated'
}

# 5. Firewall: the listener port, every profile (QEMU user networking can look like any of them).
$rule = Get-NetFirewallRule -Name $ruleName -ErrorAction SilentlyContinue
if ($null -eq $rule) {
    New-NetFirewallRule -Name $ruleName -DisplayName "WinRM over HTTPS ($Port, driverpipe)" -Direction Inbound `
        -Protocol TCP -LocalPort $Port -Action Allow -Profile Any | Out-Null
    $steps += 'firewall_rule'
} else {
    Set-NetFirewallRule -Name $ruleName -LocalPort $Port -Enabled True | Out-Null
}

# 6. Remote UAC: without this a LOCAL admin account gets a filtered (non-elevated) token over WinRM.
if ($AllowLocalAdmins) {
    $policy = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System'
    $current = Get-ItemProperty -LiteralPath $policy -Name LocalAccountTokenFilterPolicy -ErrorAction SilentlyContinue
    if (($null -eq $current) -or ($current.LocalAccountTokenFilterPolicy -ne 1)) {
        New-ItemProperty -LiteralPath $policy -Name LocalAccountTokenFilterPolicy -PropertyType DWord -Value 1 -Force | Out-Null
        $steps += 'local_account_token_filter'
    }
}

# 7. Never sleep or hibernate: a nightly run must find the VM awake.
if ($DisableSleep) {
    # Native stderr (powercfg prints some to it) must not become a terminating error under 'Stop'.
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        foreach ($powercfgArgs in @(@('/change', 'standby-timeout-ac', '0'), @('/change', 'hibernate-timeout-ac', '0'), @('/hibernate', 'off'))) {
            & powercfg.exe @powercfgArgs 2>&1 | Out-Null
        }
    } finally {
        $ErrorActionPreference = $saved
    }
    $steps += 'sleep_off'
}

# 8. Optional OpenSSH server (needs Windows Update or a Features on Demand source).
$sshStatus = 'not requested'
if ($InstallOpenSSH) {
    $cap = Get-WindowsCapability -Online | Where-Object { $_.Name -like 'OpenSSH.Server*' } | Select-Object -First 1
    if ($null -eq $cap) {
        $sshStatus = 'OpenSSH.Server capability not offered by this Windows'
    } else {
        if ($cap.State -ne 'Installed') {
            Add-WindowsCapability -Online -Name $cap.Name | Out-Null
            $steps += 'openssh_installed'
        }
        Set-Service -Name sshd -StartupType Automatic
        Start-Service -Name sshd
        if ($null -eq (Get-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -ErrorAction SilentlyContinue)) {
            New-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -DisplayName 'OpenSSH Server (sshd)' -Direction Inbound `
                -Protocol TCP -LocalPort 22 -Action Allow -Profile Any | Out-Null
        }
        $sshStatus = 'running'
    }
}

# 9. Export the certificate for the host's winrm.ca_bundle.
New-Item -ItemType Directory -Path $ExportDir -Force | Out-Null
$base = Join-Path $ExportDir ('winrm-' + $env:COMPUTERNAME)
[IO.File]::WriteAllBytes($base + '.cer', $cert.RawData)
$b64 = [Convert]::ToBase64String($cert.RawData, 'InsertLineBreaks')
$pem = "-----BEGIN CERTIFICATE-----`n" + ($b64 -replace "`r`n", "`n") + "`n-----END CERTIFICATE-----`n"
[IO.File]::WriteAllText($base + '.pem', $pem, (New-Object System.Text.ASCIIEncoding))

Write-Host ''
Write-Host "WinRM over HTTPS is listening on port $Port."
Write-Host "Listener certificate thumbprint (SHA-1): $thumb"
Write-Host "Names in the certificate: $($san -join ', ')"
Write-Host "Certificate exported to $base.pem (and .cer)."
Write-Host 'On the host: copy the .pem next to your driverpipe config and set'
Write-Host '  [targets.NAME.winrm] ca_bundle = "/path/to/that.pem"'
Write-Host 'then run: invoke provision --target NAME'
Write-Host ''

[pscustomobject]@{
    computer      = $env:COMPUTERNAME
    port          = $Port
    thumbprint    = $thumb
    not_after     = $cert.NotAfter.ToUniversalTime().ToString('o')
    names         = @($san)
    exported_pem  = ($base + '.pem')
    exported_cer  = ($base + '.cer')
    openssh       = $sshStatus
    steps         = @($steps)
} | ConvertTo-Json -Compress -Depth 6
