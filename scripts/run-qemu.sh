#!/usr/bin/env bash
# Boots a Kestrel disk image in qemu with UEFI firmware, the serial console
# on this terminal (Ctrl-A X quits) and SSH forwarded to localhost:2222.
# The image stays pristine: the VM writes to a qcow2 overlay next to it.
#
# ACCEL=tcg (the default) emulates the CPU in software; ACCEL=kvm uses the
# host's KVM (/dev/kvm: a laptop or NUC), many times faster. The default is
# tcg because KVM hangs on the machines this project is built on.
set -euo pipefail
img=${1:?usage: run-qemu.sh IMAGE}
size=${DISK_SIZE:-8G}
case "${ACCEL:=tcg}" in
  tcg) accel=(-accel tcg) ;;
  kvm) [ -w /dev/kvm ] || { echo "run-qemu.sh: ACCEL=kvm but /dev/kvm is missing or not writable" >&2; exit 1; }
       accel=(-accel kvm -cpu host) ;;
  *) echo "run-qemu.sh: ACCEL=$ACCEL: want kvm or tcg" >&2; exit 2 ;;
esac
overlay="${img%.img}.run.qcow2"
vars="${img%.img}.efivars.fd"
# A rebuilt image is a freshly flashed disk: an overlay over the old bytes
# would read garbage, so it starts again.
if [ -f "$overlay" ] && [ "$img" -nt "$overlay" ]; then rm -f "$overlay"; fi
[ -f "$overlay" ] || qemu-img create -q -f qcow2 -b "$(realpath "$img")" -F raw "$overlay" "$size"
[ -f "$vars" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$vars"
exec qemu-system-x86_64 "${accel[@]}" -M q35 -smp 1 -m "${MEMORY:-1024}" \
  -nodefaults -display none -serial mon:stdio -no-reboot \
  -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
  -drive if=pflash,format=raw,unit=1,file="$vars" \
  -drive if=virtio,format=qcow2,file="$overlay" \
  -netdev user,id=net0,hostfwd=tcp:127.0.0.1:${SSH_PORT:-2222}-:22 -device virtio-net-pci,netdev=net0
