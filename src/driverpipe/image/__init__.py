"""The driver image: crate preflight, WDK discovery, the build (KMDF with wdk-build,
locally or on a build host; WDM with rust-lld), the image rules, the package
(INF stamping, built-in catalog).

May import: core, parse, transports (the build host is reached like a guest).
"""
