"""The hypervisors a test VM runs on: QEMU (QMP), libvirt (virsh), Hyper-V (PowerShell),
behind one VmHost interface.

May import: core, parse, transports (Hyper-V hosts may be remote).
"""
