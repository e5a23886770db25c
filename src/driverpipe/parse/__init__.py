"""Reading what Windows tools print: sc.exe (winparse), bcdedit, verifier.exe, the debugger's
`!verifier` and pnputil (tools), DebugView logs (dbgview), DbgPrint expectations and verdicts
(expect), signtool's output (signtool_output), osslsigncode and sigcheck (signers), bugcheck
evidence (bugcheck), and the PowerShell grammar check. Pure functions over text; every reader of
a tool's text goes through text.py's shared decoding (BOMs, UTF-16 read as bytes, prompts,
quoting, log prefixes, markdown).

May import: core.
"""
