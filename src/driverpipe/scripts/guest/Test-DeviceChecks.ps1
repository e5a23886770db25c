# The project's device checks from user mode: CreateFileW on the device path,
# then each check in order on that one handle (DeviceIoControl, ReadFile or
# WriteFile with the given bytes), CloseHandle. The same table and the same
# answer as the Wine agent's `checks`; driverpipe judges the answer.
# .NET's FileStream refuses device paths, hence P/Invoke. All calls happen
# inside one C# method so no PowerShell work runs between a call and
# Marshal.GetLastWin32Error.
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$DevicePath,
    # JSON array of {name, op: ioctl|read|write, code, input (hex), output_length}
    [Parameter(Mandatory)][string]$ChecksJson
)
$ErrorActionPreference = 'Stop'

if (-not ('DriverpipeDeviceChecks' -as [type])) {
    Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
public static class DriverpipeDeviceChecks {
    [DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern IntPtr CreateFileW(string name, uint access, uint share, IntPtr sa, uint disposition, uint flags, IntPtr template);
    [DllImport("kernel32.dll", SetLastError = true)]
    static extern bool DeviceIoControl(IntPtr h, uint code, byte[] inBuf, uint inSize, byte[] outBuf, uint outSize, out uint returned, IntPtr overlapped);
    [DllImport("kernel32.dll", SetLastError = true)]
    static extern bool ReadFile(IntPtr h, byte[] buf, uint toRead, out uint read, IntPtr overlapped);
    [DllImport("kernel32.dll", SetLastError = true)]
    static extern bool WriteFile(IntPtr h, byte[] buf, uint toWrite, out uint written, IntPtr overlapped);
    [DllImport("kernel32.dll", SetLastError = true)]
    static extern bool CloseHandle(IntPtr h);

    // results[0] = {open_error, close_error}; results[1 + i] = {error, returned} of check i
    // (absent when the open failed); outputs[i] = the bytes check i got back.
    static byte[] FromHex(string hex) {
        byte[] b = new byte[hex.Length / 2];
        for (int i = 0; i < b.Length; i++) { b[i] = Convert.ToByte(hex.Substring(2 * i, 2), 16); }
        return b;
    }

    public static int[][] Run(string path, string[] ops, uint[] codes, string[] inputHex, int[] outLengths, out string[] outputs) {
        outputs = new string[ops.Length];
        byte[][] inputs = new byte[ops.Length][];
        for (int i = 0; i < ops.Length; i++) { inputs[i] = FromHex(inputHex[i]); }
        IntPtr h = CreateFileW(path, 0xC0000000, 3, IntPtr.Zero, 3, 0, IntPtr.Zero);
        if (h == new IntPtr(-1)) { return new int[][] { new int[] { Marshal.GetLastWin32Error(), 0 } }; }
        int[][] r = new int[ops.Length + 1][];
        for (int i = 0; i < ops.Length; i++) {
            byte[] input = inputs[i].Length == 0 ? null : inputs[i];
            byte[] output = outLengths[i] == 0 ? null : new byte[outLengths[i]];
            uint n = 0;
            bool ok;
            if (ops[i] == "ioctl") {
                ok = DeviceIoControl(h, codes[i], input, (uint)inputs[i].Length, output, (uint)outLengths[i], out n, IntPtr.Zero);
            } else if (ops[i] == "read") {
                ok = ReadFile(h, output == null ? new byte[1] : output, (uint)outLengths[i], out n, IntPtr.Zero);
            } else {
                ok = WriteFile(h, input == null ? new byte[1] : input, (uint)inputs[i].Length, out n, IntPtr.Zero);
            }
            r[i + 1] = new int[] { ok ? 0 : Marshal.GetLastWin32Error(), (int)n };
            int shown = (output == null || ops[i] == "write") ? 0 : Math.Min((int)n, output.Length);
            outputs[i] = shown == 0 ? "" : BitConverter.ToString(output, 0, shown).Replace("-", "").ToLowerInvariant();
        }
        r[0] = new int[] { 0, CloseHandle(h) ? 0 : Marshal.GetLastWin32Error() };
        return r;
    }
}
'@
}

$checks = @(ConvertFrom-Json -InputObject $ChecksJson)
$ops = [string[]]@($checks | ForEach-Object { [string]$_.op })
$codes = [uint32[]]@($checks | ForEach-Object { [uint32]$_.code })
$inputs = [string[]]@($checks | ForEach-Object { [string]$_.input })
$lengths = [int[]]@($checks | ForEach-Object { [int]$_.output_length })
$outputs = $null
$r = [DriverpipeDeviceChecks]::Run($DevicePath, $ops, $codes, $inputs, $lengths, [ref]$outputs)

$steps = @()
if ($r.Length -gt 1) {
    for ($i = 0; $i -lt $checks.Count; $i++) {
        $steps += [pscustomobject]@{
            name = [string]$checks[$i].name
            error = $r[$i + 1][0]
            returned = $r[$i + 1][1]
            output = $outputs[$i]
        }
    }
}
[pscustomobject]@{
    device = $DevicePath
    open_error = $r[0][0]
    steps = @($steps)
    close_error = $r[0][1]
} | ConvertTo-Json -Compress -Depth 6
