# Ends a process and everything it started (taskkill /T /F): a script whose time ran out on
# a channel that cannot stop it (SSH) is ended from a second session by the pid its wrapper
# announced. .NET Framework's Kill() would end only the process itself.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][int]$ProcessId
)
$ErrorActionPreference = 'Stop'

#include Invoke-Native.ps1

$kill = Invoke-Native 'taskkill.exe' @('/T', '/F', '/PID', [string]$ProcessId)
ConvertTo-Json -InputObject ([pscustomobject]@{ rc = $kill.rc; output = $kill.output }) -Compress -Depth 4
