"""VM hosts: one interface (VmHost), one adapter per hypervisor (QEMU, libvirt, Hyper-V)."""
