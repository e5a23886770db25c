"""Checking a loaded driver: `invoke verify` and `logs`, the regression run and its
reports.

May import: core, parse, transports, vmhosts, image, signing, targets.
"""
