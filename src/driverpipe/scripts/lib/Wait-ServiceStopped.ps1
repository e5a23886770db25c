# Shared by guest scripts through an include line (see Invoke-Native.ps1); needs
# Invoke-Native and Get-StateNumber included before it.
# Polls `sc.exe query` until the service is STOPPED (or gone: 1060) or the time is up;
# returns the last query ({rc, output}).
function Wait-ServiceStopped {
    param([string]$ServiceName, [int]$TimeoutSeconds)
    $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
    do {
        $q = Invoke-Native 'sc.exe' @('query', $ServiceName)
        if (((Get-StateNumber $q.output) -eq 1) -or ($q.rc -eq 1060)) { break }
        Start-Sleep -Milliseconds 250
    } while ((Get-Date) -lt $deadline)
    return $q
}
