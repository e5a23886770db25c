"""Where the driver runs: the guest-operations interface (guestops), PowerShell over a
transport (a Windows guest), the Wine prefix (wine/), the deploy plan and its steps,
the DebugView capture on a guest, reboots, leases and provisioning.

May import: core, parse, transports, vmhosts, image, signing. Never checks or the task layer.
"""
