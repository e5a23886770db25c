# The driver store's packages and their signers (`pnputil /enum-drivers`), for
# doctor only: enumerating the store is slow, so no deploy step runs it.
[CmdletBinding()]
param()
$ErrorActionPreference = 'Stop'

#include Invoke-Native.ps1

[pscustomobject]@{
    driver_packages = Invoke-Native 'pnputil.exe' @('/enum-drivers')
} | ConvertTo-Json -Compress -Depth 6
