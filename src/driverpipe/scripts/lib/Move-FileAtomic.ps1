# Shared by guest scripts through an include line (see Invoke-Native.ps1).
# Replaces Destination with Source in one step that is on disk when it returns:
# MoveFileEx with MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH. 5.1's
# Move-Item -Force deletes the destination first, so a crash between the two
# would leave no file at all.
function Move-FileAtomic {
    param([string]$Source, [string]$Destination)
    if (-not ('DriverpipeMoveFile' -as [type])) {
        Add-Type -TypeDefinition @'
using System;
using System.ComponentModel;
using System.Runtime.InteropServices;
public static class DriverpipeMoveFile {
    [DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern bool MoveFileExW(string from, string to, uint flags);
    public static void Replace(string from, string to) {
        // 1: MOVEFILE_REPLACE_EXISTING, 8: MOVEFILE_WRITE_THROUGH
        if (!MoveFileExW(from, to, 9)) { throw new Win32Exception(Marshal.GetLastWin32Error()); }
    }
}
'@
    }
    # A reader holding the destination open without FILE_SHARE_DELETE (a lease query) makes the
    # replace fail for a moment: try again briefly before giving up.
    for ($try = 1; ; $try++) {
        try {
            [DriverpipeMoveFile]::Replace($Source, $Destination)
            return
        } catch {
            if ($try -ge 20) { throw }
            Start-Sleep -Milliseconds 100
        }
    }
}
