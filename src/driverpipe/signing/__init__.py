"""Test signing: the test certificate's lifecycle and signing + verifying the package.

May import: core, parse, image.
"""
