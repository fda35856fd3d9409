#!/usr/bin/env bash
# Boots a Kestrel disk image in qemu with its target's firmware (amd64:
# OVMF, arm64: AAVMF, armv7: U-Boot), the serial console on this terminal
# (Ctrl-A X quits) and SSH forwarded to localhost:2222. The Raspberry Pi
# images are booted by the tests (test/boottest), not here.
# The image stays pristine: the VM writes to a qcow2 overlay next to it.
#
# ACCEL=tcg (the default) emulates the CPU in software; ACCEL=kvm uses the
# host's KVM (/dev/kvm: a laptop or NUC), many times faster. The default is
# tcg because KVM hangs on the machines this project is built on.
set -euo pipefail
img=${1:?usage: run-qemu.sh IMAGE [TARGET]}
target=${2:-amd64}
size=${DISK_SIZE:-8G}
case "${ACCEL:=tcg}" in
  # Under TCG the arm CPU models that emulate fastest (-cpu max is 5x slower);
  # under KVM the host's CPU.
  tcg) accel=(-accel tcg); cpu_a64=(-cpu cortex-a72); cpu_a32=(-cpu cortex-a15) ;;
  kvm) [ -w /dev/kvm ] || { echo "run-qemu.sh: ACCEL=kvm but /dev/kvm is missing or not writable" >&2; exit 1; }
       accel=(-accel kvm -cpu host); cpu_a64=(); cpu_a32=() ;;
  *) echo "run-qemu.sh: ACCEL=$ACCEL: want kvm or tcg" >&2; exit 2 ;;
esac
overlay="${img%.img}.run.qcow2"
vars="${img%.img}.efivars.fd"
# A rebuilt image is a freshly flashed disk: an overlay over the old bytes
# would read garbage, so it starts again.
if [ -f "$overlay" ] && [ "$img" -nt "$overlay" ]; then rm -f "$overlay"; fi
[ -f "$overlay" ] || qemu-img create -q -f qcow2 -b "$(realpath "$img")" -F raw "$overlay" "$size"
net=(-netdev user,id=net0,hostfwd=tcp:127.0.0.1:${SSH_PORT:-2222}-:22 -device virtio-net-pci,netdev=net0)
common=("${accel[@]}" -smp 1 -m "${MEMORY:-1024}" -nodefaults -display none -serial mon:stdio -no-reboot)
disk=(-drive if=virtio,format=qcow2,file="$overlay")
case "$target" in
amd64)
  [ -f "$vars" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$vars"
  exec qemu-system-x86_64 -M q35 "${common[@]}" \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive if=pflash,format=raw,unit=1,file="$vars" "${disk[@]}" "${net[@]}" ;;
arm64)
  [ -f "$vars" ] || cp /usr/share/AAVMF/AAVMF_VARS.fd "$vars"
  exec qemu-system-aarch64 -M virt "${cpu_a64[@]}" "${common[@]}" -boot menu=on,splash-time=0 \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd \
    -drive if=pflash,format=raw,unit=1,file="$vars" "${disk[@]}" "${net[@]}" ;;
armv7)
  exec qemu-system-arm -M virt,highmem=off "${cpu_a32[@]}" "${common[@]}" \
    -bios /usr/lib/u-boot/qemu_arm/u-boot.bin "${disk[@]}" "${net[@]}" ;;
*)
  echo "run-qemu.sh: no qemu machine for target $target (amd64, arm64, armv7)" >&2; exit 2 ;;
esac
