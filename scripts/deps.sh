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
  qemu-system-arm qemu-efi-aarch64         # arm64 (AAVMF) and armv7 boot tests, Raspberry Pi models
  u-boot-qemu                              # U-Boot for qemu's virt machines (armv7, arm64)
  u-boot-tools                             # mkimage: compiles the A/B boot script
  xorriso gdisk                            # the hybrid ISO (make iso), read back with sgdisk
)

# The arm targets' Debian packages (kernels, busybox, systemd-boot, U-Boot)
# are fetched with apt-get download pkg:arch=version: apt must know those
# architectures.
foreign=(arm64 armhf)

stamp="$top/.cache/deps.stamp"
want=$(printf '%s\n' "${pkgs[@]}" "${foreign[@]}" | sort | sha256sum | cut -c1-16)
# dpkg's output is read whole before grep -q looks at it: piped, grep
# exits at the first match and dpkg, still writing, can die of SIGPIPE,
# which pipefail turns into "not there" (seen under load: a needless
# apt-get update in the middle of the test suite, which then failed on a
# mirror that was syncing).
have_foreign() {
  local have
  have=$(dpkg --print-foreign-architectures)
  for a in "${foreign[@]}"; do grep -qx "$a" <<<"$have" || return 1; done
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && have_foreign && [ -f /etc/apt/sources.list.d/kestrel-raspi-firmware.sources ] && dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o "Dir::Cache::Archives=$cache/archives" -y -q)
# The Raspberry Pi firmware (raspi-firmware, fetched by the builder for
# images/rpi*.yaml) is in Debian's non-free-firmware component.
fw_sources=/etc/apt/sources.list.d/kestrel-raspi-firmware.sources
if ! have_foreign || [ ! -f "$fw_sources" ]; then
  for a in "${foreign[@]}"; do dpkg --add-architecture "$a"; done
  [ -f "$fw_sources" ] || cat > "$fw_sources" <<'EOF'
# Added by Kestrel's scripts/deps.sh: Debian's raspi-firmware (component
# non-free-firmware) for the Raspberry Pi SD images.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -q
fi
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
  apt-get update -q
  apt-get install "${apt_opts[@]}" --no-install-recommends "${pkgs[@]}"
fi
echo "$want" > "$stamp"
