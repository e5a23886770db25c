"""The frame every step stands on: errors and exit codes, settings (schema, config,
secrets), the run context, the local tool runner, atomic files and locks.

May import: nothing of driverpipe outside core. Everything else may import it.
"""
