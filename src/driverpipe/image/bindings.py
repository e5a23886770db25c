"""`invoke bindings`: regenerate the Linux route's wdk-sys from mingw-w64's DDK headers.

The generator (tools/wdk-bindgen, a small Rust program on bindgen) is built with
cargo and run against Debian's libclang; it writes
src/driverpipe/kernel/wdk-sys/src/generated/{types,constants,ntddk}.rs, which are
committed. `--check` writes into a temporary folder instead and reports whether
the committed files match (the test that keeps them honest runs this).
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..core.context import RunContext
from ..core.errors import CheckFailed, EnvironmentProblem, StepFailed

PACKAGE = Path(__file__).resolve().parents[1]
WDK_SYS = PACKAGE / "kernel" / "wdk-sys"
GENERATOR = PACKAGE.parents[1] / "tools" / "wdk-bindgen"
FILES = ("types.rs", "constants.rs", "ntddk.rs")
MINGW_INCLUDE = Path("/usr/share/mingw-w64/include")
CLANG_FIX = "apt-get install libclang-dev clang (Debian's libclang; bash ci/setup-linux.sh installs them)"


def generator(ctx: RunContext) -> Path:
    """Builds the generator (cached by cargo) and returns its executable."""
    if not (GENERATOR / "Cargo.toml").is_file():
        raise EnvironmentProblem(f"the bindings generator {GENERATOR} is missing", "run from a checkout of the repository")
    cargo = shutil.which("cargo")
    if cargo is None:
        raise EnvironmentProblem("cargo is not installed (it builds the bindings generator)", "install Rust with rustup")
    ctx.step(f"cargo build --release --locked in {GENERATOR}")
    done = subprocess.run([cargo, "build", "--release", "--locked", "-q"], cwd=GENERATOR, capture_output=True, text=True, timeout=1200, check=False)
    exe = GENERATOR / "target" / "release" / "wdk-bindgen"
    if done.returncode != 0 or not exe.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StepFailed(f"building the bindings generator failed: {last}", f"run `cargo build --release` in {GENERATOR} to see why")
    return exe


def generate(ctx: RunContext, out_crate: Path) -> None:
    """Runs the generator into `out_crate`/src/generated."""
    if not (MINGW_INCLUDE / "ddk" / "ntifs.h").is_file():
        raise EnvironmentProblem(f"mingw-w64's DDK headers are missing ({MINGW_INCLUDE}/ddk/ntifs.h)", "apt-get install mingw-w64-x86-64-dev")
    if shutil.which("clang") is None:
        raise EnvironmentProblem("clang is not installed (the generator asks it for its own headers)", CLANG_FIX)
    exe = generator(ctx)
    done = subprocess.run([str(exe), str(out_crate), str(MINGW_INCLUDE)], capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        text = done.stderr.strip()
        if "libclang" in text and ("Unable to find" in text or "couldn't find" in text or "not find" in text):
            raise EnvironmentProblem("libclang was not found (bindgen loads it at run time)", CLANG_FIX)
        last = next((ln for ln in reversed(text.splitlines()) if ln.startswith("error")), text.splitlines()[-1] if text else "no output")
        raise StepFailed(f"the bindings generator failed: {last}", "see the generator's message; the header set is mingw-w64's ddk/ntifs.h")


def run(ctx: RunContext, *, check: bool) -> int:
    committed = WDK_SYS / "src" / "generated"
    if ctx.dry:
        where = "into a temporary folder and compare them with" if check else "into"
        ctx.say(f"[dry] would build {GENERATOR} and write {', '.join(FILES)} {where} {committed}")
        return 0
    if not check:
        generate(ctx, WDK_SYS)
        ctx.say(f"wrote {', '.join(FILES)} in {committed} (commit them with the change that needed them)")
        return 0
    with tempfile.TemporaryDirectory(prefix="driverpipe-bindings-") as tmp:
        generate(ctx, Path(tmp))
        fresh = Path(tmp) / "src" / "generated"
        differ = [name for name in FILES if not (committed / name).is_file() or not filecmp.cmp(fresh / name, committed / name, shallow=False)]
    if differ:
        raise CheckFailed(f"the committed bindings differ from a fresh generation: {', '.join(differ)}", "run `invoke bindings` and commit the result")
    ctx.say(f"bindings up to date: {', '.join(FILES)} match a fresh generation from {MINGW_INCLUDE}/ddk")
    return 0
