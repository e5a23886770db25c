# Runs several shipped scripts in ONE remote round trip.
# Each item is {script: <text of a shipped .ps1>, params: {name: value}}; the
# script text becomes a script block and its parameters are splatted (bound),
# never formatted into code. Stops at the first failing item.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$ItemsJson
)
$ErrorActionPreference = 'Stop'
$items = $ItemsJson | ConvertFrom-Json
$results = @()
foreach ($item in $items) {
    $bound = @{}
    if ($null -ne $item.params) {
        foreach ($p in $item.params.PSObject.Properties) { $bound[$p.Name] = $p.Value }
    }
    $block = [scriptblock]::Create([string]$item.script)
    try {
        $out = & $block @bound
        # PowerShell's -and/-or share one precedence level: parenthesise.
        $last = @($out | Where-Object { ($_ -is [string]) -and ($_.Trim().StartsWith('{') -or $_.Trim().StartsWith('[')) }) | Select-Object -Last 1
        $value = $null
        if ($null -ne $last) { $value = $last | ConvertFrom-Json }
        $results += [pscustomobject]@{ ok = $true; result = $value }
    } catch {
        $results += [pscustomobject]@{ ok = $false; error = $_.Exception.Message }
        break
    }
}
ConvertTo-Json -InputObject @($results) -Compress -Depth 8
