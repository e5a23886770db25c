# Probes a guest over PowerShell Direct (VMBus; works only on the Hyper-V host itself).
# The guest password is read from an environment variable named by PasswordVariable,
# so it never appears on a command line.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][string]$UserName,
    [Parameter(Mandatory)][string]$PasswordVariable
)
$ErrorActionPreference = 'Stop'
try {
    $plain = [Environment]::GetEnvironmentVariable($PasswordVariable)
    if ([string]::IsNullOrEmpty($plain)) {
        ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = "environment variable $PasswordVariable is not set" }) -Compress
        exit 1
    }
    $secure = ConvertTo-SecureString -String $plain -AsPlainText -Force
    $credential = New-Object System.Management.Automation.PSCredential ($UserName, $secure)
    $computer = Invoke-Command -VMName $VMName -Credential $credential -ScriptBlock { $env:COMPUTERNAME }
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $true; answered = $true; computer = [string]$computer }) -Compress
} catch {
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $true; answered = $false; error = $_.Exception.Message }) -Compress
}
