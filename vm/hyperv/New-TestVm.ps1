# Creates (or brings back in line) a Hyper-V VM for driver tests. Run on the
# Hyper-V host in an elevated Windows PowerShell with the Hyper-V module.
#   Generation 2 (UEFI), Secure Boot OFF (TESTSIGNING cannot be set while Secure
#   Boot is on), static memory, N vCPUs, a new dynamic VHDX, the install ISO (and
#   optionally a second ISO holding autounattend.xml) as DVD drives, boot from DVD.
#   Checkpoint type Standard, automatic checkpoints off.
# Why Standard and not Production (the default): a Production checkpoint is taken
# through VSS inside the guest and holds NO memory, so every revert comes back
# with the VM off and pays a full cold boot. A Standard checkpoint saves the
# running memory too: `invoke vm.revert` returns a running, logged-off guest in
# seconds, exactly as it was when the 'clean' checkpoint was taken. It is not
# application-consistent, which does not matter for a throwaway test VM.
# Safe to run again: an existing VM is only adjusted (firmware changes need it Off).
# Written from Microsoft's Hyper-V cmdlet documentation; NOT yet run on a Hyper-V host.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Name,
    [string]$IsoPath = '',
    [string]$UnattendIsoPath = '',
    [string]$SwitchName = 'Default Switch',
    [long]$MemoryBytes = 4294967296,  # 4 GB (written out: the grammar check rejects the GB suffix)
    [int]$ProcessorCount = 2,
    [long]$DiskBytes = 68719476736,  # 64 GB
    [string]$VmPath = '',
    [bool]$EnableTpm = $false
)
$ErrorActionPreference = 'Stop'

$steps = @()
$vm = Get-VM -Name $Name -ErrorAction SilentlyContinue
if ($null -eq $vm) {
    if (-not $IsoPath) { throw "VM $Name does not exist: give -IsoPath (a Windows 10/11 or Server 2022/2025 ISO) to create it" }
    if (-not (Test-Path -LiteralPath $IsoPath -PathType Leaf)) { throw "no ISO at $IsoPath" }
    if (-not $VmPath) { $VmPath = (Get-VMHost).VirtualMachinePath }
    $vhd = Join-Path $VmPath ($Name + '\' + $Name + '.vhdx')
    $vm = New-VM -Name $Name -Generation 2 -MemoryStartupBytes $MemoryBytes -NewVHDPath $vhd -NewVHDSizeBytes $DiskBytes `
        -SwitchName $SwitchName -Path $VmPath
    $steps += 'created'
}

$state = [string]$vm.State
$off = ($state -eq 'Off')

# Settings Hyper-V accepts only while the VM is off.
$fw = Get-VMFirmware -VMName $Name
if ($fw.SecureBoot -ne 'Off') {
    if (-not $off) { throw "Secure Boot is on and VM $Name is $state; stop it (Stop-VM -Name $Name) and run this again" }
    Set-VMFirmware -VMName $Name -EnableSecureBoot Off
    $steps += 'secure_boot_off'
}
if ($off) {
    # Static memory: ballooning changes timing between runs and shrinks what a dump can hold.
    Set-VMMemory -VMName $Name -DynamicMemoryEnabled $false -StartupBytes $MemoryBytes
    Set-VMProcessor -VMName $Name -Count $ProcessorCount
}
if ($EnableTpm) {
    # Windows 11 setup checks for a TPM; a vTPM needs a key protector (local one is fine in a lab).
    if (-not (Get-VMSecurity -VMName $Name).TpmEnabled) {
        if (-not $off) { throw "enabling the vTPM needs VM $Name off" }
        Set-VMKeyProtector -VMName $Name -NewLocalKeyProtector
        Enable-VMTPM -VMName $Name
        $steps += 'vtpm'
    }
}

Set-VM -Name $Name -CheckpointType Standard -AutomaticCheckpointsEnabled $false -AutomaticStopAction ShutDown
# Guest Service Interface: Copy-VMFile into the guest (e.g. DebugView) without networking.
# Selected by its Id GUID: the display name is localized (e.g. "Gastdienstschnittstelle").
Get-VMIntegrationService -VMName $Name |
    Where-Object { ([string]$_.Id) -like '*6C09BB55-D683-4DA0-8931-C9BF705F6480' } |
    Enable-VMIntegrationService

foreach ($iso in @($IsoPath, $UnattendIsoPath)) {
    if (-not $iso) { continue }
    $have = @(Get-VMDvdDrive -VMName $Name | Where-Object { $_.Path -eq $iso })
    if ($have.Count -eq 0) {
        Add-VMDvdDrive -VMName $Name -Path $iso
        $steps += ('dvd:' + (Split-Path -Leaf $iso))
    }
}
if ($IsoPath -and $off) {
    $dvd = Get-VMDvdDrive -VMName $Name | Where-Object { $_.Path -eq $IsoPath } | Select-Object -First 1
    if ($null -ne $dvd) { Set-VMFirmware -VMName $Name -FirstBootDevice $dvd }
}

$vm = Get-VM -Name $Name
Write-Host "VM $Name is ready ($([string]$vm.State)). Start it, install Windows, then run vm\guest\Bootstrap-TestGuest.ps1 inside it."
[pscustomobject]@{
    name            = $Name
    state           = [string]$vm.State
    generation      = $vm.Generation
    secure_boot     = [string](Get-VMFirmware -VMName $Name).SecureBoot
    checkpoint_type = [string]$vm.CheckpointType
    memory_bytes    = $vm.MemoryStartup
    processors      = $vm.ProcessorCount
    steps           = @($steps)
} | ConvertTo-Json -Compress -Depth 6
