# Runs one shipped guest script inside a VM over PowerShell Direct (Hyper-V host only).
# The guest script's text and its parameters (JSON) arrive as bound parameters and are
# splatted inside the VM exactly as the other transports do; what the guest script
# outputs (its JSON line last) comes back as this script's output. The first line is the
# VM-side session's process id: ending powershell.exe on the host on a timeout leaves the
# script running in the VM (holding what it holds), so the caller ends that process with
# its tree from a second session (Stop-ProcessTree.ps1).
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][string]$UserName,
    [Parameter(Mandatory)][string]$ScriptText,
    [string]$ParamsJson = '{}'
)
$ErrorActionPreference = 'Stop'
#include Open-VmSession.ps1
$session = Open-DpVmSession -VMName $VMName -UserName $UserName
try {
    Invoke-Command -Session $session -ArgumentList $ScriptText, $ParamsJson -ScriptBlock {
        param([string]$Text, [string]$Json)
        $ErrorActionPreference = 'Stop'
        'driverpipe-pid: ' + $PID
        $bound = @{}
        $parsed = ConvertFrom-Json -InputObject $Json
        if ($null -ne $parsed) {
            foreach ($property in $parsed.PSObject.Properties) { $bound[$property.Name] = $property.Value }
        }
        & ([scriptblock]::Create($Text)) @bound
    }
} finally {
    Remove-PSSession -Session $session
}
