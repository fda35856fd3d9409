#!/usr/bin/env bash
# Installs what building and testing Kestrel needs on a fresh Debian bookworm
# machine. Idempotent: a stamp file records the package list it installed, so
# a second run costs one dpkg query. Debian .debs are cached under .cache/apt
# so a CI run on the same machine does not fetch them again.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache="$top/.cache/apt"
mkdir -p "$cache/archives/partial"

pkgs=(
  qemu-system-x86 qemu-utils ovmf          # boot tests (x86_64 UEFI)
  systemd-boot-efi                         # the bootloader put on the ESP
  squashfs-tools e2fsprogs dosfstools mtools fdisk  # image parts, read back in tests
  busybox-static                           # the operator shell in the rootfs
  kmod cpio xz-utils zstd                  # depmod, inspecting initramfs, bench compression
  openssh-client                           # SSH into booted test VMs
  ca-certificates                          # the CA bundle shipped in the rootfs
  openssl                                  # test PKI for the kube-apiserver
  socat                                    # serial console helpers
  cryptsetup-bin                           # veritysetup: checks the builder's dm-verity trees
  xorriso gdisk                            # the hybrid ISO (make iso), read back with sgdisk
)

stamp="$top/.cache/deps.stamp"
want=$(printf '%s\n' "${pkgs[@]}" | sort | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o "Dir::Cache::Archives=$cache/archives" -y -q)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
  apt-get update -q
  apt-get install "${apt_opts[@]}" --no-install-recommends "${pkgs[@]}"
fi
echo "$want" > "$stamp"
