# Builds the driver crate on a Windows build host (called by driverpipe/buildhost.py).
# Unpacks the pushed source archive into <WorkDir>\src (fresh each time, so deleted
# files do not linger), runs the same cargo command as a local build with
# CARGO_TARGET_DIR=<WorkDir>\target (kept: incremental builds), and returns the
# cdylib's .dll/.pdb (from cargo's compiler-artifact messages) and .map (deps\,
# where wdk-build's /MAP puts it) with SHA-256, the exit code and a tail of errors.
# Written for Windows PowerShell 5.1; not run against a real build host here.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$WorkDir,
    [Parameter(Mandatory)][string]$ArchivePath,
    [Parameter(Mandatory)][string]$CrateDir,
    [Parameter(Mandatory)][string]$LibName,
    [ValidateSet('release', 'debug')][string]$BuildProfile = 'release',
    [string]$Features = '',
    # Below the client's own limit, so the build is ended here and its tree with it.
    [int]$TimeoutSeconds = 3500
)
$ErrorActionPreference = 'Stop'

#include Invoke-Native.ps1

# Expand-Archive's progress bar fails or slows down in non-interactive sessions.
$ProgressPreference = 'SilentlyContinue'

function Get-ArtifactEntry {
    param([string]$Kind, [string]$Path)
    [ordered]@{
        kind   = $Kind
        path   = $Path
        sha256 = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
        size   = (Get-Item -LiteralPath $Path).Length
    }
}

$cargo = Get-Command cargo -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
if ($null -eq $cargo) {
    ConvertTo-Json -InputObject ([ordered]@{ exitCode = -1; cargoMissing = $true; libName = $LibName; artifacts = @(); errors = @(); stderrTail = 'cargo not found on PATH' }) -Compress -Depth 6
    return
}

$src = Join-Path $WorkDir 'src'
$target = Join-Path $WorkDir 'target'
if (Test-Path -LiteralPath $src) { Remove-Item -LiteralPath $src -Recurse -Force }
New-Item -ItemType Directory -Path $src -Force | Out-Null
Expand-Archive -LiteralPath $ArchivePath -DestinationPath $src -Force
$crate = Join-Path $src $CrateDir

$cargoArgs = @('build')
if ($BuildProfile -eq 'release') { $cargoArgs += '--release' }
$cargoArgs += @('--locked', '--message-format=json-render-diagnostics')
if ($Features) { $cargoArgs += @('--features', $Features) }

$outFile = Join-Path $WorkDir 'cargo-stdout.jsonl'
$errFile = Join-Path $WorkDir 'cargo-stderr.log'
$env:CARGO_TARGET_DIR = $target
$env:CARGO_TERM_COLOR = 'never'
# Start-Process with files: cargo writes progress to stderr, which PowerShell 5.1 would
# turn into terminating errors under $ErrorActionPreference = 'Stop' if piped.
# No -Wait: it waits for every descendant too (a lingering mspdbsrv.exe or sccache server
# would hang the build); wait for cargo itself.
$proc = Start-Process -FilePath $cargo.Source -ArgumentList $cargoArgs -WorkingDirectory $crate -NoNewWindow -PassThru `
    -RedirectStandardOutput $outFile -RedirectStandardError $errFile
$null = $proc.Handle  # cache the handle now, or ExitCode reads as empty after the exit (a .NET quirk)
# Short waits, bounded: PowerShell stops a pipeline only between statements, and a build that
# never ends must not hold the session. A stop or the time limit ends cargo's whole tree
# (rustc, link.exe): .NET Framework's Kill() would end cargo alone.
$deadline = (Get-Date).AddSeconds($TimeoutSeconds)
$timedOut = $false
try {
    while (-not $proc.WaitForExit(250)) {
        if ((Get-Date) -ge $deadline) {
            $timedOut = $true
            break
        }
    }
} finally {
    if (-not $proc.HasExited) { Stop-NativeTree $proc.Id }
}
$exitCode = -2
if (-not $timedOut) { $exitCode = [int]$proc.ExitCode }

$dll = $null
$pdb = $null
$errors = @()
foreach ($line in (Get-Content -LiteralPath $outFile -Encoding UTF8)) {
    if (-not $line.StartsWith('{')) { continue }
    try { $msg = $line | ConvertFrom-Json } catch { continue }
    if ($msg.reason -eq 'compiler-artifact') {
        if (($msg.target.crate_types -contains 'cdylib') -and ($msg.target.name.Replace('-', '_') -eq $LibName)) {
            foreach ($f in $msg.filenames) {
                if ($f -like '*.dll') { $dll = $f } elseif ($f -like '*.pdb') { $pdb = $f }
            }
        }
    } elseif ($msg.reason -eq 'compiler-message') {
        if (($msg.message.level -eq 'error') -and $msg.message.rendered) { $errors += [string]$msg.message.rendered }
    }
}

$artifacts = @()
if ($dll -and (Test-Path -LiteralPath $dll)) {
    $artifacts += Get-ArtifactEntry -Kind 'dll' -Path $dll
    if ($pdb -and (Test-Path -LiteralPath $pdb)) { $artifacts += Get-ArtifactEntry -Kind 'pdb' -Path $pdb }
    $map = Join-Path (Join-Path (Split-Path -Parent $dll) 'deps') ([IO.Path]::GetFileNameWithoutExtension($dll) + '.map')
    if (Test-Path -LiteralPath $map) { $artifacts += Get-ArtifactEntry -Kind 'map' -Path $map }
}
$tail = ''
if (Test-Path -LiteralPath $errFile) { $tail = (Get-Content -LiteralPath $errFile -Tail 200 -Encoding UTF8) -join "`n" }
if ($timedOut) { $tail = "cargo did not finish within $TimeoutSeconds s on the build host; ended`n" + $tail }

ConvertTo-Json -InputObject ([ordered]@{
        exitCode   = $exitCode
        libName    = $LibName
        artifacts  = @($artifacts)
        errors     = @($errors)
        stderrTail = $tail
    }) -Compress -Depth 6
