#!/usr/bin/env bash
# Everything the pipeline and its tests need on a Debian/Ubuntu machine, from
# Debian's packages, PyPI and rustup (nothing downloaded from anywhere else):
#   bash ci/setup-linux.sh        (as root, or with sudo available)
# Then `invoke build sign deploy` builds the WDM image with rust-lld, signs it
# with osslsigncode and deploys it to the built-in Wine target.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "error: run as root or install sudo (apt-get needs root)" >&2; exit 3; }
    SUDO="sudo"
fi

echo "::group::system packages"
$SUDO apt-get update -q
# wine/wine64: the tier-0 Wine target loads the Linux-built driver image.
# osslsigncode: Authenticode signing and verification of the image and catalog.
# gcc-mingw-w64-x86-64/mingw-w64-x86-64-dev: the DDK headers the Linux route's wdk-sys is generated
#   from, and the layout check against them with gcc.
# clang/libclang-dev: bindgen parses those headers (`invoke bindings`, the regenerate-and-compare test).
# qemu-system-x86/qemu-utils/ovmf: real QEMU, QMP, snapshots, overlays.
# openssh-server/client: real sshd on loopback for the SSH transport.
# the shellcheck package: actionlint checks the workflows' run: scripts with it.
# chromium: the regression report is opened as a person would, headless and offline.
$SUDO apt-get install -y -q --no-install-recommends \
    wine wine64 osslsigncode gcc-mingw-w64-x86-64 mingw-w64-x86-64-dev clang libclang-dev \
    qemu-system-x86 qemu-utils ovmf openssh-server openssh-client \
    shellcheck chromium libc6-dev ca-certificates git
echo "::endgroup::"

echo "::group::rust"
command -v rustup >/dev/null 2>&1 || { echo "error: rustup not found: install Rust with rustup (https://rustup.rs)" >&2; exit 3; }
# The WDM image is linked on Linux by rust-lld for this target.
rustup target add x86_64-pc-windows-msvc
rustup component add rustfmt >/dev/null 2>&1 || true
cargo --version
echo "::endgroup::"

echo "::group::python package"
python3 -m pip install -q --upgrade pip
python3 -m pip install -q -e '.[test]'
echo "::endgroup::"
