#!/usr/bin/env bash
# Debian packages the QEMU test host needs (image build and VM): installs only what is missing.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
for pair in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils debootstrap:debootstrap \
            mkfs.vfat:dosfstools mcopy:mtools sfdisk:fdisk ssh:openssh-client ssh-keyscan:openssh-client bc:bc; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # one package at a time: a conflict in one must not block the others
  for p in $(printf '%s\n' "${need[@]}" | sort -u); do
    $SUDO apt-get install -y -qq "$p" >/dev/null \
      || $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null \
      || { echo "install-testhost-deps: apt-get could not install $p (see its message above)" >&2; exit 1; }
  done
fi
