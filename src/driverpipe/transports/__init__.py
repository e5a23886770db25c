"""Reaching a Windows machine to run shipped PowerShell scripts with bound parameters:
WinRM, SSH, local, PowerShell Direct; pushes and pulls; connection errors as one line.

May import: core, parse.
"""
