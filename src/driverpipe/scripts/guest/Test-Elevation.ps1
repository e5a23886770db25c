# Reports whether this session runs elevated (a full administrator token).
# Over WinRM/SSH a local non-built-in admin gets a filtered token unless
# LocalAccountTokenFilterPolicy is 1 (UAC remote restrictions).
[CmdletBinding()]
param()
$ErrorActionPreference = 'Stop'
$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object Security.Principal.WindowsPrincipal $identity
$elevated = $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
ConvertTo-Json -InputObject ([pscustomobject]@{ elevated = [bool]$elevated; user = $identity.Name }) -Compress -Depth 6
