# Lists a Hyper-V VM's IP addresses as reported by the guest's integration services
# (Data Exchange/KVP must run in the guest (unsure); empty until the guest reports them).
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName
)
$ErrorActionPreference = 'Stop'
try {
    $addresses = @(Get-VMNetworkAdapter -VMName $VMName | ForEach-Object { $_.IPAddresses } | Where-Object { $_ })
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $true; addresses = $addresses }) -Compress -Depth 3
} catch {
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = $_.Exception.Message }) -Compress -Depth 4
    exit 1
}
