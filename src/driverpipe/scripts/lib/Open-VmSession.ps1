# Shared by the PowerShell Direct scripts: an include line naming this file (expanded
# by driverpipe.core.scripts.load_script before the script is run on the Hyper-V host).
# Opens a PSSession into a VM over VMBus. The guest password is handed over in the
# environment of this one process (never on a command line) and removed at once.
# A failure is thrown with the 'driverpipe-psdirect:' marker so Python can tell a
# session that could not be opened from a script that failed inside the VM.
function Open-DpVmSession {
    param([string]$VMName, [string]$UserName)
    $plain = [Environment]::GetEnvironmentVariable('DRIVERPIPE_PSDIRECT_PASSWORD')
    [Environment]::SetEnvironmentVariable('DRIVERPIPE_PSDIRECT_PASSWORD', $null)
    if ([string]::IsNullOrEmpty($plain)) {
        throw 'driverpipe-psdirect: no guest password was handed over'
    }
    $secure = ConvertTo-SecureString -String $plain -AsPlainText -Force
    $credential = New-Object System.Management.Automation.PSCredential ($UserName, $secure)
    try {
        New-PSSession -VMName $VMName -Credential $credential -ErrorAction Stop
    } catch {
        throw ('driverpipe-psdirect: ' + ([string]$_.Exception.Message -split "`r?`n")[0])
    }
}
