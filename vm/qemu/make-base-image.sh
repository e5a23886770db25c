#!/usr/bin/env bash
# Build the read-only base image of a Windows test guest for QEMU/KVM.
#
#   vm/qemu/make-base-image.sh install  --iso Win11.iso --dir ~/vms/win11 [--unattend-iso unattend.iso]
#       creates DIR/base.qcow2 and DIR/vars.fd (a copy of the non-Secure-Boot
#       OVMF_VARS_4M.fd) and boots the installer with the SAME virtual hardware the
#       pipeline uses later (q35, AHCI disk, e1000 NIC, user networking with
#       127.0.0.1 forwards to 5986/22/3389). Watch it with a VNC viewer on
#       127.0.0.1:5901. When Windows is installed, run vm/guest/Bootstrap-TestGuest.ps1
#       inside it, then `invoke provision`, then shut the guest down.
#   vm/qemu/make-base-image.sh boot     --dir ~/vms/win11
#       boots the base image again (writable) to finish or fix the preparation.
#   vm/qemu/make-base-image.sh finalize --dir ~/vms/win11
#       makes base.qcow2 and vars.fd read-only and prints the [vm_hosts] entry.
#       From then on every run boots a fresh overlay (qemu-img create -b base.qcow2),
#       so the base is never written and each run starts from the same disk.
#
# Why non-Secure-Boot OVMF: TESTSIGNING cannot be enabled while Secure Boot is on.
# Why the same hardware as the pipeline: Windows may treat a different NIC as a
# new network (profile Public again) and a different disk controller may not boot.
# Why hostfwd on 127.0.0.1 only: the guest's WinRM/RDP stay off the LAN.
# Checked here: `bash -n`, argument handling and the QEMU command line under --dry.
# NOT checked: a full Windows installation (needs an ISO and hours under TCG).
set -euo pipefail

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

cmd="${1:-}"
[ -n "$cmd" ] || usage
shift
iso="" unattend_iso="" dir="" size="64G" memory="4096" cpus="2" vnc="127.0.0.1:1" dry=0 force=0
winrm_port=55986 ssh_port=2222 rdp_port=33389
ovmf_code="${OVMF_CODE:-}" ovmf_vars="${OVMF_VARS:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --iso) iso="$2"; shift 2 ;;
        --unattend-iso) unattend_iso="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --memory) memory="$2"; shift 2 ;;
        --cpus) cpus="$2"; shift 2 ;;
        --vnc) vnc="$2"; shift 2 ;;
        --winrm-port) winrm_port="$2"; shift 2 ;;
        --ssh-port) ssh_port="$2"; shift 2 ;;
        --rdp-port) rdp_port="$2"; shift 2 ;;
        --ovmf-code) ovmf_code="$2"; shift 2 ;;
        --ovmf-vars) ovmf_vars="$2"; shift 2 ;;
        --force) force=1; shift ;;
        --dry) dry=1; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
done
[ -n "$dir" ] || { echo "error: --dir is required" >&2; exit 2; }

# Debian/Ubuntu's ovmf package; the 4M images without .secboot/.ms in their name have no Secure Boot.
for candidate in /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/edk2/x64/OVMF_CODE.4m.fd; do
    [ -n "$ovmf_code" ] || { [ -f "$candidate" ] && ovmf_code="$candidate"; }
done
for candidate in /usr/share/OVMF/OVMF_VARS_4M.fd /usr/share/edk2/x64/OVMF_VARS.4m.fd; do
    [ -n "$ovmf_vars" ] || { [ -f "$candidate" ] && ovmf_vars="$candidate"; }
done
case "$ovmf_code" in
    *secboot*|*.ms.fd) echo "error: $ovmf_code is a Secure Boot build; use OVMF_CODE_4M.fd" >&2; exit 2 ;;
esac

base="$dir/base.qcow2"
vars="$dir/vars.fd"

run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    [ "$dry" -eq 1 ] || "$@"
}

qemu_argv() {
    local accel="tcg"
    [ -w /dev/kvm ] && accel="kvm"
    argv=(qemu-system-x86_64 -name "driverpipe-base" -machine q35 -accel "$accel" -m "$memory" -smp "$cpus"
        -nodefaults -vga std -display none -vnc "$vnc" -rtc base=localtime
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code"
        -drive "if=pflash,format=raw,unit=1,file=$vars"
        -drive "file=$base,format=qcow2,if=none,id=disk0,cache=writeback,discard=unmap"
        -device "ide-hd,drive=disk0,bus=ide.0,bootindex=1"
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$winrm_port-:5986,hostfwd=tcp:127.0.0.1:$ssh_port-:22,hostfwd=tcp:127.0.0.1:$rdp_port-:3389"
        -device "e1000,netdev=n0"
        -device pvpanic
        -device "qemu-xhci" -device "usb-tablet")
}

need_firmware() {
    [ -n "$ovmf_code" ] && [ -f "$ovmf_code" ] || { echo "error: no OVMF_CODE_4M.fd: apt-get install ovmf (or --ovmf-code)" >&2; exit 3; }
    [ -n "$ovmf_vars" ] && [ -f "$ovmf_vars" ] || { echo "error: no OVMF_VARS_4M.fd: apt-get install ovmf (or --ovmf-vars)" >&2; exit 3; }
}

case "$cmd" in
    install)
        need_firmware
        [ -n "$iso" ] || { echo "error: install needs --iso" >&2; exit 2; }
        [ -f "$iso" ] || [ "$dry" -eq 1 ] || { echo "error: no ISO at $iso" >&2; exit 2; }
        if [ -e "$base" ] && [ "$force" -ne 1 ]; then
            echo "error: $base exists (use 'boot' to continue with it, or --force to start over)" >&2
            exit 2
        fi
        run mkdir -p "$dir"
        run qemu-img create -q -f qcow2 "$base" "$size"
        # The installer writes its boot entry into these vars: keep them with the disk.
        run cp "$ovmf_vars" "$vars"
        qemu_argv
        argv+=(-drive "file=$iso,media=cdrom,readonly=on,if=none,id=cd0" -device "ide-cd,drive=cd0,bus=ide.1,bootindex=0")
        if [ -n "$unattend_iso" ]; then
            argv+=(-drive "file=$unattend_iso,media=cdrom,readonly=on,if=none,id=cd1" -device "ide-cd,drive=cd1,bus=ide.2")
        fi
        echo "installer running; connect a VNC viewer to $vnc (display :${vnc##*:})"
        run "${argv[@]}"
        ;;
    boot)
        need_firmware
        [ -f "$base" ] || [ "$dry" -eq 1 ] || { echo "error: no $base: run install first" >&2; exit 2; }
        [ -w "$base" ] || [ "$dry" -eq 1 ] || { echo "error: $base is read-only (finalized); chmod u+w it deliberately to change the base" >&2; exit 2; }
        qemu_argv
        run "${argv[@]}"
        ;;
    finalize)
        [ -f "$base" ] || [ "$dry" -eq 1 ] || { echo "error: no $base" >&2; exit 2; }
        run chmod a-w "$base" "$vars"
        cat <<EOF
Base image is read-only now. Add this to your driverpipe user config
(\$DRIVERPIPE_CONFIG or ~/.config/driverpipe/config.toml); see vm/qemu/vm_host.example.toml:

[vm_hosts.qemu-local]
kind = "qemu"
base_image = "$base"
ovmf_code = "$ovmf_code"
ovmf_vars = "$vars"
memory_mb = $memory
cpus = $cpus
forward_winrm = $winrm_port
forward_ssh = $ssh_port
forward_rdp = $rdp_port
nic = "e1000"
EOF
        ;;
    *) usage ;;
esac
