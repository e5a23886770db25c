"""Test helpers for the build/package steps: fake executables on PATH, a tiny PE, a KMDF crate.

The fakes are small Python programs written into tmp_path. Each reads a JSON
spec beside it, asserts its exact argv (exit 99 with a clear message on a
mismatch, so the step under test fails loudly), records the call, writes the
files a real tool would write and prints realistic output. Tests only.
"""
