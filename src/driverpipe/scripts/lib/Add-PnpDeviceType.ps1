# Shared by guest scripts through an include line (see Invoke-Native.ps1); call
# Add-PnpDeviceType once before using [DriverpipePnp].
# Root-enumerated device nodes through SetupAPI (what devcon install/remove
# does): find the present devices with a hardware id, create one
# (SetupDiCreateDeviceInfoW + SPDRP_HARDWAREID + DIF_REGISTERDEVICE), install
# the staged driver on it (newdev's UpdateDriverForPlugAndPlayDevicesW) and
# remove one (DIF_REMOVE). Every call returns the Win32 error (0: done), read
# inside the same C# method as the call, so no PowerShell work runs between a
# call and Marshal.GetLastWin32Error. The oemNN.inf names in the driver store
# are listed by file name, never parsed from localized pnputil text.
function Add-PnpDeviceType {
    if (-not ('DriverpipePnp' -as [type])) {
        Add-Type -TypeDefinition @'
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
public static class DriverpipePnp {
    [StructLayout(LayoutKind.Sequential)]
    struct SP_DEVINFO_DATA { public uint cbSize; public Guid ClassGuid; public uint DevInst; public IntPtr Reserved; }
    [StructLayout(LayoutKind.Sequential)]
    struct SP_REMOVEDEVICE_PARAMS { public uint cbSize; public uint InstallFunction; public uint Scope; public uint HwProfile; }

    [DllImport("setupapi.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern bool SetupDiGetINFClassW(string inf, out Guid classGuid, StringBuilder className, uint size, out uint required);
    [DllImport("setupapi.dll", SetLastError = true)]
    static extern IntPtr SetupDiCreateDeviceInfoList(ref Guid classGuid, IntPtr hwnd);
    [DllImport("setupapi.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern bool SetupDiCreateDeviceInfoW(IntPtr set, string name, ref Guid classGuid, string description, IntPtr hwnd, uint flags, ref SP_DEVINFO_DATA data);
    [DllImport("setupapi.dll", SetLastError = true)]
    static extern bool SetupDiSetDeviceRegistryPropertyW(IntPtr set, ref SP_DEVINFO_DATA data, uint property, byte[] buffer, uint size);
    [DllImport("setupapi.dll", SetLastError = true)]
    static extern bool SetupDiCallClassInstaller(uint function, IntPtr set, ref SP_DEVINFO_DATA data);
    [DllImport("setupapi.dll", SetLastError = true)]
    static extern bool SetupDiSetClassInstallParamsW(IntPtr set, ref SP_DEVINFO_DATA data, ref SP_REMOVEDEVICE_PARAMS p, uint size);
    [DllImport("setupapi.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern IntPtr SetupDiGetClassDevsW(IntPtr classGuid, string enumerator, IntPtr hwnd, uint flags);
    [DllImport("setupapi.dll", SetLastError = true)]
    static extern bool SetupDiEnumDeviceInfo(IntPtr set, uint index, ref SP_DEVINFO_DATA data);
    [DllImport("setupapi.dll", SetLastError = true)]
    static extern bool SetupDiGetDeviceRegistryPropertyW(IntPtr set, ref SP_DEVINFO_DATA data, uint property, out uint regType, byte[] buffer, uint size, out uint required);
    [DllImport("setupapi.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern bool SetupDiGetDeviceInstanceIdW(IntPtr set, ref SP_DEVINFO_DATA data, StringBuilder id, uint size, out uint required);
    [DllImport("setupapi.dll", SetLastError = true)]
    static extern bool SetupDiDestroyDeviceInfoList(IntPtr set);
    [DllImport("newdev.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern bool UpdateDriverForPlugAndPlayDevicesW(IntPtr hwnd, string hardwareId, string inf, uint flags, out bool reboot);

    const uint SPDRP_HARDWAREID = 1;
    const uint DICD_GENERATE_ID = 1;
    const uint DIF_REMOVE = 5;
    const uint DIF_REGISTERDEVICE = 0x19;
    const uint DIGCF_PRESENT = 2;
    const uint DIGCF_ALLCLASSES = 4;
    const uint INSTALLFLAG_FORCE = 1;
    const uint DI_REMOVEDEVICE_GLOBAL = 1;
    static readonly IntPtr Invalid = new IntPtr(-1);

    static SP_DEVINFO_DATA NewData() {
        SP_DEVINFO_DATA d = new SP_DEVINFO_DATA();
        d.cbSize = (uint)Marshal.SizeOf(typeof(SP_DEVINFO_DATA));
        return d;
    }

    static string InstanceId(IntPtr set, ref SP_DEVINFO_DATA d) {
        StringBuilder id = new StringBuilder(512);
        uint required;
        return SetupDiGetDeviceInstanceIdW(set, ref d, id, (uint)id.Capacity, out required) ? id.ToString() : "";
    }

    static bool HasHardwareId(IntPtr set, ref SP_DEVINFO_DATA d, string hardwareId) {
        byte[] buf = new byte[4096];
        uint regType, required;
        if (!SetupDiGetDeviceRegistryPropertyW(set, ref d, SPDRP_HARDWAREID, out regType, buf, (uint)buf.Length, out required)) { return false; }
        foreach (string id in Encoding.Unicode.GetString(buf, 0, (int)Math.Min(required, (uint)buf.Length)).Split('\0')) {
            if (string.Equals(id, hardwareId, StringComparison.OrdinalIgnoreCase)) { return true; }
        }
        return false;
    }

    // The instance ids of the present devices that carry hardwareId.
    public static string[] Find(string hardwareId) {
        List<string> found = new List<string>();
        IntPtr set = SetupDiGetClassDevsW(IntPtr.Zero, null, IntPtr.Zero, DIGCF_ALLCLASSES | DIGCF_PRESENT);
        if (set == Invalid) { return found.ToArray(); }
        SP_DEVINFO_DATA d = NewData();
        for (uint i = 0; SetupDiEnumDeviceInfo(set, i, ref d); i++) {
            if (HasHardwareId(set, ref d, hardwareId)) { found.Add(InstanceId(set, ref d)); }
        }
        SetupDiDestroyDeviceInfoList(set);
        return found.ToArray();
    }

    // A new root-enumerated device node of the INF's class with hardwareId; instanceId: its id.
    public static int Create(string inf, string hardwareId, out string instanceId) {
        instanceId = "";
        Guid classGuid;
        StringBuilder className = new StringBuilder(256);
        uint required;
        if (!SetupDiGetINFClassW(inf, out classGuid, className, (uint)className.Capacity, out required)) { return Marshal.GetLastWin32Error(); }
        IntPtr set = SetupDiCreateDeviceInfoList(ref classGuid, IntPtr.Zero);
        if (set == Invalid) { return Marshal.GetLastWin32Error(); }
        int error = 0;
        SP_DEVINFO_DATA d = NewData();
        byte[] ids = Encoding.Unicode.GetBytes(hardwareId + "\0\0");  // REG_MULTI_SZ
        if (!SetupDiCreateDeviceInfoW(set, className.ToString(), ref classGuid, null, IntPtr.Zero, DICD_GENERATE_ID, ref d)) {
            error = Marshal.GetLastWin32Error();
        } else if (!SetupDiSetDeviceRegistryPropertyW(set, ref d, SPDRP_HARDWAREID, ids, (uint)ids.Length)) {
            error = Marshal.GetLastWin32Error();
        } else if (!SetupDiCallClassInstaller(DIF_REGISTERDEVICE, set, ref d)) {
            error = Marshal.GetLastWin32Error();
        } else {
            instanceId = InstanceId(set, ref d);
        }
        SetupDiDestroyDeviceInfoList(set);
        return error;
    }

    // The staged driver installed on every device with hardwareId (forced: a newer build replaces the running one).
    public static int Update(string inf, string hardwareId, out bool reboot) {
        return UpdateDriverForPlugAndPlayDevicesW(IntPtr.Zero, hardwareId, inf, INSTALLFLAG_FORCE, out reboot) ? 0 : Marshal.GetLastWin32Error();
    }

    // Removes the device node instanceId (its driver unloads with it); 0xE000020B: no such device.
    public static int Remove(string instanceId) {
        IntPtr set = SetupDiGetClassDevsW(IntPtr.Zero, null, IntPtr.Zero, DIGCF_ALLCLASSES);
        if (set == Invalid) { return Marshal.GetLastWin32Error(); }
        int error = unchecked((int)0xE000020B);  // ERROR_NO_SUCH_DEVINST
        SP_DEVINFO_DATA d = NewData();
        for (uint i = 0; SetupDiEnumDeviceInfo(set, i, ref d); i++) {
            if (!string.Equals(InstanceId(set, ref d), instanceId, StringComparison.OrdinalIgnoreCase)) { continue; }
            SP_REMOVEDEVICE_PARAMS p = new SP_REMOVEDEVICE_PARAMS();
            p.cbSize = 8;  // the SP_CLASSINSTALL_HEADER part
            p.InstallFunction = DIF_REMOVE;
            p.Scope = DI_REMOVEDEVICE_GLOBAL;
            if (!SetupDiSetClassInstallParamsW(set, ref d, ref p, (uint)Marshal.SizeOf(typeof(SP_REMOVEDEVICE_PARAMS)))) {
                error = Marshal.GetLastWin32Error();
            } else {
                error = SetupDiCallClassInstaller(DIF_REMOVE, set, ref d) ? 0 : Marshal.GetLastWin32Error();
            }
            break;
        }
        SetupDiDestroyDeviceInfoList(set);
        return error;
    }
}
'@
    }
}

# The driver store's published names (oemNN.inf) right now, lower case.
function Get-PublishedInfs {
    $inf = Join-Path $env:windir 'INF'
    @(Get-ChildItem -LiteralPath $inf -Filter 'oem*.inf' -File | ForEach-Object { $_.Name.ToLowerInvariant() })
}

# Where the record of what this pipeline added for a service lives (outside the deploy
# folder, so a target's own guest_dir never hides it).
function Get-PnpRecordPath {
    param([string]$ServiceName)
    $dir = Join-Path $env:ProgramData 'driverpipe'
    if (-not (Test-Path -LiteralPath $dir -PathType Container)) { [void](New-Item -ItemType Directory -Path $dir) }
    return (Join-Path $dir "pnp-$ServiceName.json")
}

# What this pipeline added on the guest: {published: [oemNN.inf], devices: [instance id]}.
# Only names in it are ever removed; a missing or unreadable record adds nothing.
function Read-PnpRecord {
    param([string]$Path)
    $record = [ordered]@{ published = @(); devices = @() }
    if ($Path -and (Test-Path -LiteralPath $Path -PathType Leaf)) {
        try {
            $data = Get-Content -LiteralPath $Path -Raw -Encoding UTF8 | ConvertFrom-Json
            $record.published = @($data.published | Where-Object { $_ -match '^oem\d+\.inf$' })
            $record.devices = @($data.devices | Where-Object { $_ })
        } catch {
            $record.unreadable = $_.Exception.Message
        }
    }
    return $record
}

function Write-PnpRecord {
    param([string]$Path, $Record)
    if ($Record.Contains('unreadable')) { return }  # never overwrite what could not be read (the answer says so)
    if ((@($Record.published).Count -eq 0) -and (@($Record.devices).Count -eq 0)) {
        if (Test-Path -LiteralPath $Path -PathType Leaf) { Remove-Item -LiteralPath $Path -Force }
        return
    }
    $partial = "$Path.driverpipe-tmp"
    $json = [pscustomobject]@{ published = @($Record.published); devices = @($Record.devices) } | ConvertTo-Json -Compress -Depth 3
    [System.IO.File]::WriteAllText($partial, $json, (New-Object System.Text.UTF8Encoding($false)))
    Move-FileAtomic $partial $Path
}
