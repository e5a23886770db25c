# Smoke-test the device from user mode: CreateFileW on the device path, one
# DeviceIoControl and one ReadFile (the driver should answer both with
# ERROR_INVALID_FUNCTION for now), CloseHandle. .NET's FileStream refuses
# device paths, hence P/Invoke. All calls happen inside one C# method so no
# PowerShell work runs between a call and Marshal.GetLastWin32Error.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$DevicePath,
    [int64]$IoctlCode = 0x222000,
    [int]$ReadBytes = 16
)
$ErrorActionPreference = 'Stop'

if (-not ('DriverpipeSmoke' -as [type])) {
    Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
public static class DriverpipeSmoke {
    [DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern IntPtr CreateFileW(string name, uint access, uint share, IntPtr sa, uint disposition, uint flags, IntPtr template);
    [DllImport("kernel32.dll", SetLastError = true)]
    static extern bool DeviceIoControl(IntPtr h, uint code, byte[] inBuf, uint inSize, byte[] outBuf, uint outSize, out uint returned, IntPtr overlapped);
    [DllImport("kernel32.dll", SetLastError = true)]
    static extern bool ReadFile(IntPtr h, byte[] buf, uint toRead, out uint read, IntPtr overlapped);
    [DllImport("kernel32.dll", SetLastError = true)]
    static extern bool CloseHandle(IntPtr h);
    // [open, ioctl, read, close] Win32 errors; 0 = success, -1 = not attempted.
    public static int[] Run(string path, uint code, int readBytes) {
        int[] r = new int[] { -1, -1, -1, -1 };
        IntPtr h = CreateFileW(path, 0xC0000000, 3, IntPtr.Zero, 3, 0, IntPtr.Zero);
        if (h == new IntPtr(-1)) { r[0] = Marshal.GetLastWin32Error(); return r; }
        r[0] = 0;
        uint n;
        byte[] outBuf = new byte[64];
        r[1] = DeviceIoControl(h, code, null, 0, outBuf, (uint)outBuf.Length, out n, IntPtr.Zero) ? 0 : Marshal.GetLastWin32Error();
        byte[] buf = new byte[Math.Max(1, readBytes)];
        r[2] = ReadFile(h, buf, (uint)buf.Length, out n, IntPtr.Zero) ? 0 : Marshal.GetLastWin32Error();
        r[3] = CloseHandle(h) ? 0 : Marshal.GetLastWin32Error();
        return r;
    }
}
'@
}

$codes = [DriverpipeSmoke]::Run($DevicePath, [uint32]$IoctlCode, $ReadBytes)
[pscustomobject]@{
    device = $DevicePath
    open_error = $codes[0]
    ioctl_error = $codes[1]
    read_error = $codes[2]
    close_error = $codes[3]
} | ConvertTo-Json -Compress -Depth 6
