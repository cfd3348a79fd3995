#!/bin/bash
# chroot-guest.sh start|ssh|stop -- the test image's Debian 12 root file system run natively
# in a chroot, with its own sshd on a loopback port: a guest for the steps that are real
# work for the CPU (Debian's NVIDIA driver built by DKMS for every kernel), which under the
# QEMU test host's TCG emulation take hours (README, "The guest phase: what is proven where").
#
#   chroot-guest.sh start     overlay a fresh copy of the root file system, start its sshd
#   chroot-guest.sh ssh CMD   ssh root@127.0.0.1 -p $PORT with the throwaway key
#   chroot-guest.sh stop      stop everything running in it, unmount, remove $RUN
#
# Env:
#   WORKDIR  root file system and key (default <repo root>/.cache/chroot-guest; made on first
#            start by `ROOTFS_ONLY=1 build-image.sh`, the QEMU image's own steps 1 and 2)
#   RUN      this guest's state: overlay upper dir and mount point (default $WORKDIR/run)
#   PORT     loopback SSH port (default 2253)
#
# What is real: Debian's apt, dpkg, DKMS, gcc and kernel headers, sshd and sudo, the
# kernels installed in the file system. What stands in, and why:
#   - the running kernel: /usr/local/bin/uname answers `uname -r` with the newest kernel
#     installed at start, since a chroot runs this machine's kernel, which Debian has no
#     headers for. Everything else (`uname -m`, /proc) is this machine's.
#   - no systemd: pvegpu's steps take their no-systemd path (setsid), services are not
#     started (policy-rc.d), and nothing can reboot it.
#   - no boot loader or block device: /boot/grub/grub.cfg is removed (update-grub needs the
#     device under /; a kernel package's hook skips GRUB without it), and the initramfs is
#     built with MODULES=most, as the image build does in its chroot.
# Needs root (chroot, mounts) and a kernel with overlayfs.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORKDIR=${WORKDIR:-$REPO_ROOT/.cache/chroot-guest}
RUN=${RUN:-$WORKDIR/run}
PORT=${PORT:-2253}
# resolved: the kernel reports mounts and process roots by their real paths
WORKDIR=$(realpath -m "$WORKDIR"); RUN=$(realpath -m "$RUN")
ROOT=$RUN/root
SSH_OPTS=(-i "$WORKDIR/id_ed25519" -p "$PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes)

die() { echo "chroot-guest.sh: $*" >&2; exit 1; }

# refuse to remove $RUN while anything is still mounted under it (/dev is a bind mount)
no_mounts() {
  if awk -v r="$RUN/" 'index($2 "/", r) == 1 {found=1} END {exit !found}' /proc/self/mounts; then
    die "still mounted under $RUN: $(awk -v r="$RUN/" 'index($2 "/", r) == 1 {print $2}' /proc/self/mounts | tr '\n' ' ')"
  fi
}

# every process whose root is this guest's
inside() {
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    [ "$r" = "$ROOT" ] && echo "${p#/proc/}"
  done
  return 0
}

case "${1:-}" in
start)
  [ "$(id -u)" = 0 ] || die "must run as root (chroot and mounts)"
  case "$WORKDIR" in *' '*) die "WORKDIR must not contain spaces" ;; esac
  if mountpoint -q "$ROOT" 2>/dev/null; then die "a guest is already running from $RUN (chroot-guest.sh stop first)"; fi
  if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then die "127.0.0.1:$PORT is in use (set PORT)"; fi
  WORKDIR=$WORKDIR ROOTFS_ONLY=1 bash "$REPO_ROOT/tests/testhost/build-image.sh" >&2
  no_mounts
  rm -rf "$RUN"; mkdir -p "$RUN/upper" "$RUN/work" "$ROOT"
  mount -t overlay overlay -o "lowerdir=$WORKDIR/rootfs,upperdir=$RUN/upper,workdir=$RUN/work" "$ROOT" \
    || die "cannot mount an overlay on $ROOT (does this kernel have overlayfs?)"
  mount -t proc proc "$ROOT/proc"
  mount -t sysfs -o ro sysfs "$ROOT/sys"
  mount --bind /dev "$ROOT/dev"
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOT/dev/pts"
  mount -t tmpfs tmpfs "$ROOT/run"
  kver=$(ls "$ROOT/lib/modules" | sort -V | tail -1)
  echo "$kver" > "$ROOT/etc/pvegpu-test-running-kernel"
  cat > "$ROOT/usr/local/bin/uname" <<'EOF'
#!/bin/sh
# TEST STAND-IN (pvegpu tests/testhost/chroot-guest.sh): this chroot runs the build machine's
# kernel; `uname -r` names the Debian kernel it stands in for. Anything else is the real uname.
if [ "$*" = "-r" ]; then cat /etc/pvegpu-test-running-kernel; else exec /usr/bin/uname "$@"; fi
EOF
  chmod 755 "$ROOT/usr/local/bin/uname"
  printf '#!/bin/sh\n# TEST STAND-IN (chroot-guest.sh): no init system, start no services\nexit 101\n' \
    > "$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  rm -f "$ROOT/boot/grub/grub.cfg"
  # the image's MODULES=dep needs the block device under /, which a chroot has not
  sed -i 's/^MODULES=.*/MODULES=most/' "$ROOT/etc/initramfs-tools/initramfs.conf"
  mkdir -p "$ROOT/run/sshd"
  ls "$ROOT"/etc/ssh/ssh_host_*_key >/dev/null 2>&1 || chroot "$ROOT" ssh-keygen -A >/dev/null
  # its own UTS namespace, so it has the test image's host name (sudo resolves it)
  unshare --uts sh -c 'hostname pvetest && exec chroot "$1" /usr/sbin/sshd -p "$2" -o ListenAddress=127.0.0.1 -E /var/log/pvegpu-test-sshd.log' \
    sh "$ROOT" "$PORT"
  for _ in $(seq 1 50); do
    timeout 10 ssh "${SSH_OPTS[@]}" root@127.0.0.1 true 2>/dev/null && break
    sleep 0.2
  done
  timeout 10 ssh "${SSH_OPTS[@]}" root@127.0.0.1 true || die "sshd in $ROOT does not answer (see $ROOT/var/log/pvegpu-test-sshd.log)"
  echo "chroot-guest.sh: started on 127.0.0.1:$PORT, running kernel stands in as $kver (state in $RUN)" ;;
ssh) shift; exec ssh "${SSH_OPTS[@]}" root@127.0.0.1 "$@" ;;
stop)
  [ -d "$RUN" ] || exit 0
  for sig in TERM KILL; do
    pids=$(inside)
    [ -n "$pids" ] || break
    kill -"$sig" $pids 2>/dev/null || true
    for _ in $(seq 1 20); do [ -n "$(inside)" ] || break; sleep 0.25; done
  done
  [ -z "$(inside)" ] || die "processes still running in $ROOT: $(inside | tr '\n' ' ')"
  for m in dev/pts dev run sys proc ""; do
    if mountpoint -q "$ROOT/$m"; then umount "$ROOT/$m" || umount -l "$ROOT/$m"; fi
  done
  no_mounts
  rm -rf "$RUN" ;;
*) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
