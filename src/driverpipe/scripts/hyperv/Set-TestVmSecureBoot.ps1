# Turns UEFI Secure Boot on or off for a Generation 2 Hyper-V VM (it must be Off):
# the fix for "bcdedit /set testsigning on" being refused by Secure Boot policy.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][ValidateSet('On', 'Off')][string]$SecureBoot
)
$ErrorActionPreference = 'Stop'
try {
    $vm = Get-VM -Name $VMName
    if ($vm.Generation -ne 2) {
        ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = "VM $VMName is Generation $($vm.Generation): Secure Boot exists only on Generation 2" }) -Compress -Depth 4
        exit 1
    }
    if ([string]$vm.State -ne 'Off') {
        ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; notOff = $true; error = "VM $VMName is $($vm.State); Set-VMFirmware needs it Off" }) -Compress -Depth 4
        exit 1
    }
    Set-VMFirmware -VMName $VMName -EnableSecureBoot $SecureBoot
    $now = [string](Get-VMFirmware -VMName $VMName).SecureBoot
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $true; secureBoot = $now }) -Compress -Depth 4
} catch {
    ConvertTo-Json -InputObject ([pscustomobject]@{ ok = $false; error = $_.Exception.Message }) -Compress -Depth 4
    exit 1
}
