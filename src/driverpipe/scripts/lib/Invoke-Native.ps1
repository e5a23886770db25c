# Shared by guest scripts: an include line naming this file (expanded
# by driverpipe.core.scripts.load_script before the script is sent).
# Runs a native program and returns its exit code (the Win32 error for sc.exe),
# its raw output bytes (stdout, then stderr) as base64 with the OEM code page
# they are most likely in, and the same text as this PowerShell decodes it.
# Python decodes the bytes itself (driverpipe.parse.text.native_text): 5.1's own
# decoding of native output follows [Console]::OutputEncoding, which in a remote
# session without a console is not what sc.exe or bcdedit.exe wrote.
# The text is localized, so Python parses numbers and layout only.

# One argument quoted for CommandLineToArgvW (what sc.exe, bcdedit.exe and the
# C runtime split the command line with): quotes only where needed, backslashes
# doubled only before a quote.
function ConvertTo-NativeArgument {
    param([string]$Value)
    if (($Value.Length -gt 0) -and ($Value -notmatch '[\s"]')) { return $Value }
    $quoted = New-Object System.Text.StringBuilder
    [void]$quoted.Append([char]34)
    $slashes = 0
    foreach ($c in $Value.ToCharArray()) {
        if ($c -eq [char]92) {
            $slashes++
            continue
        }
        if ($c -eq [char]34) {
            [void]$quoted.Append([char]92, 2 * $slashes + 1)
        } elseif ($slashes -gt 0) {
            [void]$quoted.Append([char]92, $slashes)
        }
        [void]$quoted.Append($c)
        $slashes = 0
    }
    if ($slashes -gt 0) { [void]$quoted.Append([char]92, 2 * $slashes) }
    [void]$quoted.Append([char]34)
    return $quoted.ToString()
}

# Ends a process and everything it started (taskkill /T /F), waiting at most 5 s, never
# throwing: .NET Framework's Process.Kill() ends only the process itself.
function Stop-NativeTree {
    param([int]$ProcessId)
    try {
        $killer = [System.Diagnostics.Process]::Start('taskkill.exe', ('/T /F /PID ' + $ProcessId))
        [void]$killer.WaitForExit(5000)
    } catch { $null = $_ }
}

function Invoke-Native {
    param([string]$Exe, [string[]]$Arguments)
    # The system's OEM code page (console tools write it when redirected); the culture's as a fallback.
    $codePage = 0
    $nls = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Nls\CodePage' -Name OEMCP -ErrorAction SilentlyContinue
    if ($null -ne $nls) { [void][int]::TryParse([string]$nls.OEMCP, [ref]$codePage) }
    if ($codePage -le 0) { $codePage = (Get-Culture).TextInfo.OEMCodePage }

    $info = New-Object System.Diagnostics.ProcessStartInfo
    $info.FileName = $Exe
    $info.Arguments = (@($Arguments | ForEach-Object { ConvertTo-NativeArgument $_ }) -join ' ')
    $info.UseShellExecute = $false
    $info.CreateNoWindow = $true
    $info.RedirectStandardOutput = $true
    $info.RedirectStandardError = $true
    $process = [System.Diagnostics.Process]::Start($info)
    # Both pipes drained at once: a tool that fills one while we wait on the other would hang.
    $stdout = New-Object System.IO.MemoryStream
    $stderr = New-Object System.IO.MemoryStream
    $copyOut = $process.StandardOutput.BaseStream.CopyToAsync($stdout)
    $copyErr = $process.StandardError.BaseStream.CopyToAsync($stderr)
    try {
        # Short waits, not one blocking call: PowerShell can only stop a pipeline between
        # statements, so a hung tool would otherwise outlive the client's script_timeout.
        while (-not $process.WaitForExit(250)) { }
        # The copies end when every writer closed the pipes; a child the tool left running may
        # hold them for ever: wait a bounded time (in short, stoppable waits), then take what came.
        $copyDeadline = (Get-Date).AddSeconds(10)
        while ((-not ($copyOut.IsCompleted -and $copyErr.IsCompleted)) -and ((Get-Date) -lt $copyDeadline)) {
            [void][Threading.Tasks.Task]::WaitAll(@($copyOut, $copyErr), 250)
        }
        $rc = $process.ExitCode
    } finally {
        # A stopped pipeline (the client's timeout, Ctrl-C) ends the tool and everything it
        # started: .NET Framework's Kill() ends only the direct child, taskkill /T the tree.
        if (-not $process.HasExited) {
            Stop-NativeTree $process.Id
            try { $process.Kill() } catch { $null = $_ }
        }
        $process.Dispose()
    }

    $merged = New-Object System.IO.MemoryStream
    $stdout.WriteTo($merged)
    $stderr.WriteTo($merged)
    $bytes = $merged.ToArray()
    try {
        $text = [System.Text.Encoding]::GetEncoding($codePage).GetString($bytes)
    } catch {
        $text = [System.Text.Encoding]::Default.GetString($bytes)
    }
    [pscustomobject]@{
        rc = $rc
        output = $text.TrimEnd("`r", "`n")
        outputB64 = [Convert]::ToBase64String($bytes)
        codePage = $codePage
    }
}
