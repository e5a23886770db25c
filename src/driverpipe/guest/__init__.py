"""Guest transports: one interface (Guest), one adapter per real thing (WinRM, SSH, local)."""
