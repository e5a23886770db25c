"""Invoke tasks: from Rust KMDF driver source to a loaded, checked driver in a test VM.

The canonical one-liner is `invoke build sign deploy`. Every task honours
Invoke's `--dry` (print each command and remote script, run nothing). Tasks are
thin: all logic lives in the driverpipe package (src/driverpipe).
Exit codes: 0 ok, 1 check failed, 2 bad input/config, 3 missing tool/host/credential,
4 a tool or remote step failed, 5 not implemented yet, 130 interrupted.
"""

from invoke import Collection, task


def _dry(c):
    return bool(c.config.run.dry)


def _cmd():
    from driverpipe import commands  # lazy: keeps `invoke --list` fast

    return commands


TARGET_HELP = "target name from the user config (default: default_target)"


@task(
    help={
        "from": "use an already built .dll/.sys (e.g. a CI artifact) instead of running cargo",
        "profile": "cargo profile: release (default) or debug",
        "features": "cargo features, comma separated (e.g. fault-injection)",
        "build-host": "name of a [build_hosts] entry to build on (non-Windows hosts)",
        "model": "driver model: auto (default), kmdf (cargo + wdk-build) or wdm (rust-lld, no WDK)",
    }
)
def build(c, from_=None, profile=None, features=None, build_host=None, model=None):
    """Build the driver: KMDF with cargo + wdk-build (Windows or a build host), or WDM with rust-lld (any host)."""
    _cmd().build(_dry(c), from_path=from_, profile=profile, features=features, build_host=build_host, model=model)


@task(help={"profile": "cargo profile whose build output is packaged"})
def package(c, profile=None):
    """Make the .sys/.inf/.cat package (stampinf/inf2cat on Windows, built-in elsewhere)."""
    _cmd().package(_dry(c), profile=profile)


@task(
    help={
        "new-cert": "create a new test certificate (rotation) before signing",
        "backend": "force the signing tool: signtool or osslsigncode",
        "profile": "cargo profile whose package is signed",
    }
)
def sign(c, new_cert=False, backend=None, profile=None):
    """Test-sign the package: .sys, then rebuild the catalog, then .cat; verify all."""
    _cmd().sign(_dry(c), new_cert=new_cert, backend=backend, profile=profile)


@task(help={"target": TARGET_HELP, "no-verify": "skip the DbgPrint sequence check after loading"})
def deploy(c, target=None, no_verify=False):
    """Push the signed package to the guest, (re)load the service, smoke-test and verify it."""
    _cmd().deploy(_dry(c), target=target, no_verify=no_verify)


@task(help={"target": TARGET_HELP, "delete": "also delete the service (sc delete)"})
def unload(c, target=None, delete=False):
    """Stop the driver service on the guest and check the device is gone."""
    _cmd().unload(_dry(c), target=target, delete=delete)


@task(
    help={
        "target": TARGET_HELP,
        "log": "check a saved DebugView log file offline instead of a live target",
        "phase": "expectation phase: load (default), unload or failed_load",
        "step": "failing step name for --phase failed_load",
        "json": "print the verdict as JSON",
    }
)
def verify(c, target=None, log=None, phase="load", step=None, json=False):
    """Assert the driver's DbgPrint sequence (live capture, or --log FILE offline)."""
    _cmd().verify(_dry(c), target=target, log=log, phase=phase, as_json=json, step=step)


@task(help={"target": TARGET_HELP, "out": "local folder for the pulled logs (default: artifacts/)"})
def logs(c, target=None, out=None):
    """Pull the DebugView capture and dumps from the guest."""
    _cmd().logs(_dry(c), target=target, out=out)


@task(
    help={
        "target": TARGET_HELP,
        "cycles": "load/unload cycles (default from config: 10)",
        "no-faults": "skip the fault-injection sweep",
        "verifier": "add a Driver Verifier pass",
        "report-dir": "where JUnit/JSON/HTML reports go (default: artifacts/regress)",
    }
)
def regress(c, target=None, cycles=None, no_faults=False, verifier=False, report_dir=None):
    """Run the VM regression suite (revert, deploy, cycles, fault sweep, bugcheck checks)."""
    _cmd().regress(_dry(c), target=target, cycles=cycles, no_faults=no_faults, verifier=verifier, report_dir=report_dir)


@task(help={"target": "also check this guest's reachability and state", "tasks": "only check what these tasks need (comma separated)"})
def doctor(c, target=None, tasks=None):
    """Check tools, WDK, config and (with --target) the guest; print how to fix each gap."""
    _cmd().doctor(_dry(c), target=target, tasks=tasks)


@task(help={"check": "generate into a temporary folder and compare with the committed files (exit 1 when they differ)"})
def bindings(c, check=False):
    """Regenerate the Linux route's wdk-sys from mingw-w64's DDK headers (bindgen + Debian's libclang)."""
    _cmd().bindings(_dry(c), check=check)


@task(help={"target": TARGET_HELP})
def provision(c, target=None):
    """Turn a fresh Windows VM into a test target (idempotent): WinRM, test signing, DebugView."""
    _cmd().provision(_dry(c), target=target)


@task(
    name="target-add",
    help={
        "name": "name of the target to add or update",
        "host": "guest address",
        "transport": "winrm (default), ssh, local or wine",
        "user": "administrator account on the guest",
        "password-env": "environment variable that holds the password (never the password itself)",
        "port": "port (default per transport)",
        "test-machine": "allow boot-setting changes and reboots on this guest",
        "vm-host": "name of the [vm_hosts] entry running it",
        "vm-name": "VM/domain name on that host",
        "default": "also make it the default target (default_target)",
    },
)
def target_add(c, name, host=None, transport=None, user=None, password_env=None, port=None, test_machine=False, vm_host=None, vm_name=None, default=False):
    """Register a guest in the user config (keeps your comments and layout)."""
    values = {
        "host": host,
        "transport": transport,
        "user": user,
        "password_env": password_env,
        "port": port,
        "test_machine": True if test_machine else None,
        "vm_host": vm_host,
        "vm_name": vm_name,
    }
    _cmd().target_add(_dry(c), name=name, values=values, default=default)


VM_TARGET = {"target": "target whose VM is controlled"}


@task(help=VM_TARGET)
def status(c, target=None):
    """Show the target VM's state."""
    _cmd().vm(_dry(c), "status", target=target)


@task(help=VM_TARGET)
def start(c, target=None):
    """Start the target VM and wait until the guest answers."""
    _cmd().vm(_dry(c), "start", target=target)


FORCE = {"force": "act on a target that is not marked test_machine = true"}


@task(help={**VM_TARGET, **FORCE, "timeout": "seconds to wait for a graceful shutdown before a hard stop"})
def stop(c, target=None, timeout=None, force=False):
    """Stop the target VM (graceful, then hard after the timeout)."""
    _cmd().vm(_dry(c), "stop", target=target, timeout=timeout, force=force)


@task(help={**VM_TARGET, **FORCE, "name": "state to revert to (default: the target's clean_state)"})
def revert(c, name=None, target=None, force=False):
    """Revert the target VM to a named clean state."""
    _cmd().vm(_dry(c), "revert", target=target, name=name, force=force)


@task(help={**VM_TARGET, **FORCE, "name": "name of the state to save"})
def snapshot(c, name, target=None, force=False):
    """Save the target VM's current state under a name."""
    _cmd().vm(_dry(c), "snapshot", target=target, name=name, force=force)


ns = Collection(build, package, sign, deploy, unload, verify, logs, regress, doctor, provision, target_add, bindings)
ns.add_collection(Collection("vm", status, start, stop, revert, snapshot))
