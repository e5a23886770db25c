"""driverpipe: take a Rust KMDF driver from source to a loaded, checked driver in a test VM.

Data flows one way: config -> plan -> steps -> report. The subpackages follow the
pipeline (core, parse, transports, vmhosts, image, signing, targets, checks; see
ARCHITECTURE.md) and talk to the outside world only through small interfaces
(ToolRunner, Guest, GuestOps, VmHost, log sources).

Heavy libraries (pypsrp, paramiko, lief, asn1crypto, cryptography) are imported
lazily inside the functions that need them so that `invoke --list` stays fast.
"""

__version__ = "0.1.0"
