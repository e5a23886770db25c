"""Reading what Windows tools print: sc.exe, bcdedit, verifier, pnputil (winparse),
DebugView logs (dbgview), DbgPrint expectations and verdicts (expect), signtool's
output, and the PowerShell grammar check. Pure functions over text.

May import: core.
"""
