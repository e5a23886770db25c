"""Wine as a tier-0 Windows target: a prefix on this Linux machine loads the driver image.

- prefix.py: the prefix's lifecycle (create once, check, snapshot/revert, reset)
  and the Wine processes the pipeline starts (a persistent wineserver and the
  service manager started with the capture environment), ended by pid;
- capture.py: Wine's debug channel -> a DebugView-shaped log with timestamps,
  read by the same expectations as a Windows guest's capture;
- agent.py: the target's agent (driverpipe/agent, built into the user's cache), one Windows process per task
  answering requests over stdin/stdout: SCM query/stop/start, registry values,
  device checks, certificate trust, WinVerifyTrust;
- target.py: the guest operations (state, push, install from the INF, load,
  unload, device checks, fault step, signature check) and the deploy plan on Wine;
- host.py: the prefix as a VM host for `invoke vm.*` and `invoke regress`.

What a Wine pass proves, and what it does not, is in the README ("Verified
where"): Wine is user-mode NT emulation. It runs the image's DriverEntry, its
dispatch routines and DriverUnload; it has no IRQL, no paging rules, no
signature enforcement, no KMDF and no bugchecks.
"""
