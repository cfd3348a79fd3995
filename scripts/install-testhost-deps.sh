#!/usr/bin/env bash
# Debian packages the QEMU test host needs (image build and VM): installs only what is missing.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

missing() {
  local pair
  for pair in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils debootstrap:debootstrap \
              mkfs.vfat:dosfstools mcopy:mtools sfdisk:fdisk ssh:openssh-client ssh-keyscan:openssh-client bc:bc; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "${pair%%:*}" >/dev/null 2>&1 \
      || echo "${pair#*:}"
  done
  [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || echo ovmf
}

# Two passes: installing one package can remove another that was there before (seen on CI: a
# backported qemu-utils removed by Debian's qemu-system-x86, taking qemu-img with it), so what
# is missing is read again after the first pass.
updated=0
for pass in 1 2; do
  need=$(missing | sort -u)
  [ -z "$need" ] && exit 0
  [ "$updated" = 1 ] || { $SUDO apt-get update -qq; updated=1; }
  # one package at a time: a conflict in one must not block the others
  for p in $need; do
    $SUDO apt-get install -y -qq "$p" >/dev/null \
      || $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null \
      || { echo "install-testhost-deps: apt-get could not install $p (see its message above)" >&2; exit 1; }
  done
done
need=$(missing | sort -u)
if [ -n "$need" ]; then
  echo "install-testhost-deps: still missing after two passes: $need (apt-get install $need)" >&2
  exit 1
fi
