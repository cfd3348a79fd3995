#!/bin/bash
# build-image.sh -- build pvegpu's QEMU test host image: a minimal Debian 12 (bookworm)
# UEFI system with a real Debian kernel, GRUB, initramfs-tools, sshd and a few tools the
# host probe (src/facts/probe.sh) runs. vm.sh boots it under QEMU TCG with an emulated
# Intel IOMMU.
#
# BOOT selects the boot loader (default grub):
#   grub          OVMF -> GRUB (grub-mkimage) -> kernel; update-grub keeps grub.cfg
#   systemd-boot  OVMF -> systemd-boot -> kernel + initrd copied onto the ESP, as on a Proxmox VE
#                 ZFS/UEFI node: /etc/kernel/cmdline, and a TEST STAND-IN proxmox-boot-tool
#                 (tests/testhost/proxmox-boot-tool) whose refresh the initramfs and kernel
#                 hooks run. GRUB packages stay installed (as on PVE) but GRUB is not on the ESP.
#
# Output in $WORKDIR (default: <repo root>/.cache/testhost, git-ignored):
#   base.qcow2      the disk image (~750 MB allocated, 8 GiB virtual); BOOT=systemd-boot:
#                   base-systemd-boot.qcow2
#   id_ed25519      throwaway SSH key baked into the image, for root and for `debian`
#                   (a cloud-init style user with NOPASSWD sudo)
#   cache/          downloaded .debs (kept, speeds up a rebuild a little)
#
# Idempotent: does nothing when the image exists, unless FORCE=1.
# Needs root (debootstrap + chroot) but no loop devices, nbd, mounts or guestfish:
# the ext4 root is made with `mkfs.ext4 -d`, the ESP with mkfs.vfat + mtools, the GPT
# with sfdisk on a plain file.
# Host packages: debootstrap qemu-utils dosfstools mtools fdisk openssh-client
#   (to run the VM: qemu-system-x86 ovmf)
# Env: BOOT, WORKDIR, FORCE=1, MIRROR, SECURITY_MIRROR, ROOTSIZE_MIB, KEEP_ROOTFS=1,
#      ROOTFS_ONLY=1 (stop after step 2 with $WORKDIR/rootfs and no disk: chroot-guest.sh)
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORKDIR=${WORKDIR:-$REPO_ROOT/.cache/testhost}
FORCE=${FORCE:-0}
BOOT=${BOOT:-grub}
# the Debian mirror this machine's apt already uses (first and second URIs: of the deb822 file)
SOURCES=/etc/apt/sources.list.d/debian.sources
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' "$SOURCES" 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(awk '/^URIs:/ && /security/ {print $2; exit}' "$SOURCES" 2>/dev/null || true)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ROOTSIZE_MIB=${ROOTSIZE_MIB:-8192}   # sparse; room for a second kernel and Debian's NVIDIA driver (1.5 GB)
ESPSIZE_MIB=63
ROOTFS=$WORKDIR/rootfs
SUFFIX=""                                   # of the image and of every file the build writes
ROOT_UUID=${ROOT_UUID:-6a1c2a1e-8b0e-4c1e-9d3a-0d5e1f00c0de}
ESP_VOLID=${ESP_VOLID:-1234ABCD}            # vfat "UUID" becomes 1234-ABCD
PACKAGES=linux-image-amd64,systemd-sysv,udev,kmod,dbus,openssh-server,initramfs-tools,pciutils,iproute2,grub-efi-amd64,efibootmgr,procps,zstd,sudo
if [ "$BOOT" = systemd-boot ]; then
  SUFFIX=-systemd-boot
  ROOTFS=$WORKDIR/rootfs$SUFFIX
  ESPSIZE_MIB=511                           # kernels + initrds live on the ESP (PVE: 512 MiB)
  PACKAGES=$PACKAGES,systemd-boot,systemd-boot-efi
fi
IMAGE=base$SUFFIX.qcow2

log() { printf '[build-image %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

case "$WORKDIR" in *' '*) die "WORKDIR must not contain spaces: $WORKDIR" ;; esac
case "$BOOT" in grub|systemd-boot) ;; *) die "unknown BOOT '$BOOT' (grub, systemd-boot)" ;; esac
if [ "${ROOTFS_ONLY:-0}" = 1 ]; then
  [ "$BOOT" = grub ] || die "ROOTFS_ONLY=1 builds the grub flavour's root file system only"
  if [ -f "$ROOTFS/.pvegpu-rootfs-done" ] && [ "$FORCE" != 1 ]; then
    log "$ROOTFS exists; nothing to do (FORCE=1 rebuilds it)"
    exit 0
  fi
  rm -f "$ROOTFS/.pvegpu-rootfs-done"
elif [ -f "$WORKDIR/$IMAGE" ] && [ "$FORCE" != 1 ]; then
  log "$WORKDIR/$IMAGE exists; nothing to do (FORCE=1 rebuilds it)"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot)"
for t in debootstrap mkfs.ext4 mkfs.vfat mmd mcopy sfdisk qemu-img ssh-keygen; do
  command -v "$t" >/dev/null || die "missing host tool: $t (apt-get install debootstrap qemu-utils dosfstools mtools fdisk openssh-client)"
done

mkdir -p "$WORKDIR/cache"
cd "$WORKDIR"
log "WORKDIR=$WORKDIR  BOOT=$BOOT  mirror=$MIRROR  security=$SECURITY_MIRROR"
[ "${ROOTFS_ONLY:-0}" = 1 ] || rm -f "$IMAGE" "$IMAGE.tmp"
t0=$(date +%s)

# ---- 1. debootstrap (downloads ~120 MB of .debs into $WORKDIR/cache once) ------------
if [ -x "$ROOTFS/usr/bin/systemctl" ] && [ "$FORCE" != 1 ]; then
  log "1/3 reusing existing rootfs $ROOTFS"
else
  log "1/3 debootstrap bookworm (about 100 s; first run downloads ~120 MB)"
  rm -rf "$ROOTFS"
  debootstrap --variant=minbase --cache-dir="$WORKDIR/cache" --include="$PACKAGES" \
    bookworm "$ROOTFS" "$MIRROR" > "$WORKDIR/debootstrap$SUFFIX.log" 2>&1 \
    || { tail -20 "$WORKDIR/debootstrap$SUFFIX.log" >&2; die "debootstrap failed (log: $WORKDIR/debootstrap$SUFFIX.log)"; }
fi
t1=$(date +%s)

# ---- 2. configure the guest -------------------------------------------------------------
log "2/3 configuring the guest"
KVER=$(ls "$ROOTFS/lib/modules" | sort -V | tail -1)
echo pvetest > "$ROOTFS/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 pvetest\n' > "$ROOTFS/etc/hosts"
mkdir -p "$ROOTFS/boot/efi"
cat > "$ROOTFS/etc/fstab" <<EOF
UUID=$ROOT_UUID / ext4 errors=remount-ro 0 1
UUID=${ESP_VOLID:0:4}-${ESP_VOLID:4:4} /boot/efi vfat umask=0077,nofail 0 2
EOF
# apt: same mirror as this machine, with updates and security (a second kernel ABI lives there)
rm -f "$ROOTFS/etc/apt/sources.list"
cat > "$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# network: DHCP on the virtio NIC only (user-mode net gives 10.0.2.15); the emulated
# passthrough candidates (e1000, rtl8139) stay unconfigured
mkdir -p "$ROOTFS/etc/systemd/network"
cat > "$ROOTFS/etc/systemd/network/10-virtio.network" <<'EOF'
[Match]
Driver=virtio_net
[Network]
DHCP=ipv4
EOF
chroot "$ROOTFS" systemctl enable systemd-networkd.service >/dev/null 2>&1
chroot "$ROOTFS" systemctl mask systemd-networkd-wait-online.service \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1
# ssh: key-only root login with a throwaway key
[ -f "$WORKDIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C pvegpu-testhost -f "$WORKDIR/id_ed25519"
install -d -m 700 "$ROOTFS/root/.ssh"
install -m 600 "$WORKDIR/id_ed25519.pub" "$ROOTFS/root/.ssh/authorized_keys"
echo 'root:pvetest' | chroot "$ROOTFS" chpasswd       # serial-console debugging only
# a cloud-init style login for the guest-phase tests: same key, root only through NOPASSWD sudo
chroot "$ROOTFS" useradd -m -s /bin/bash debian
install -d -m 700 "$ROOTFS/home/debian/.ssh"
install -m 600 "$WORKDIR/id_ed25519.pub" "$ROOTFS/home/debian/.ssh/authorized_keys"
chroot "$ROOTFS" chown -R debian:debian /home/debian/.ssh
echo 'debian ALL=(ALL) NOPASSWD:ALL' > "$ROOTFS/etc/sudoers.d/90-cloud-init-users"
chmod 440 "$ROOTFS/etc/sudoers.d/90-cloud-init-users"
# test stand-in for Proxmox's pveversion (the real one is in pve-manager, not installable here)
cat > "$ROOTFS/usr/bin/pveversion" <<'EOF'
#!/bin/sh
# TEST STAND-IN, not Proxmox VE: installed by pvegpu's tests/testhost/build-image.sh.
# The real pveversion belongs to the pve-manager package, which cannot be installed on
# this plain Debian 12 test host; this prints a line in the real format so that pvegpu's
# host probe sees a "Proxmox VE" node. The version and hash are made up.
echo "pve-manager/9.1.1/0000000000000000 (running kernel: $(uname -r))"
EOF
chmod 755 "$ROOTFS/usr/bin/pveversion"
if [ "$BOOT" = grub ]; then
# grub defaults as on a stock Debian/PVE host; pvegpu adds /etc/default/grub.d/pvegpu.cfg
sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=0/' \
       -e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"/' "$ROOTFS/etc/default/grub"
grep -q '^GRUB_TERMINAL=' "$ROOTFS/etc/default/grub" || echo 'GRUB_TERMINAL="console serial"' >> "$ROOTFS/etc/default/grub"
# what grub-install would have put under /boot/grub: the module directory
mkdir -p "$ROOTFS/boot/grub/x86_64-efi"
cp "$ROOTFS"/usr/lib/grub/x86_64-efi/*.mod "$ROOTFS"/usr/lib/grub/x86_64-efi/*.lst "$ROOTFS/boot/grub/x86_64-efi/"
# first grub.cfg, hand-written (grub-mkconfig needs grub-probe on a real block device, so
# it cannot run in the chroot); the first `update-grub` in the VM replaces it
cat > "$ROOTFS/boot/grub/grub.cfg" <<EOF
set default=0
set timeout=0
menuentry 'Debian GNU/Linux (initial)' {
  insmod part_gpt
  insmod ext2
  search --no-floppy --fs-uuid --set=root $ROOT_UUID
  linux /boot/vmlinuz-$KVER root=UUID=$ROOT_UUID ro console=ttyS0,115200n8 quiet
  initrd /boot/initrd.img-$KVER
}
EOF
# the EFI binary: same early config as Debian's /boot/efi/EFI/debian/grub.cfg stub
cat > "$ROOTFS/tmp/early.cfg" <<EOF
search.fs_uuid $ROOT_UUID root
set prefix=(\$root)'/boot/grub'
configfile \$prefix/grub.cfg
EOF
chroot "$ROOTFS" grub-mkimage -O x86_64-efi -o /tmp/BOOTX64.EFI -p /boot/grub -c /tmp/early.cfg \
  part_gpt part_msdos ext2 fat search search_fs_uuid configfile normal linux gzio echo test \
  all_video efi_gop serial terminal
mv "$ROOTFS/tmp/BOOTX64.EFI" "$WORKDIR/BOOTX64.EFI"; rm -f "$ROOTFS/tmp/early.cfg"
else
# systemd-boot managed by proxmox-boot-tool, as on a Proxmox VE ZFS/UEFI node. The kernel
# command line lives in /etc/kernel/cmdline (no GRUB_CMDLINE_LINUX, no grub.cfg).
echo "root=UUID=$ROOT_UUID ro console=ttyS0,115200n8 quiet" > "$ROOTFS/etc/kernel/cmdline"
echo "${ESP_VOLID:0:4}-${ESP_VOLID:4:4}" > "$ROOTFS/etc/kernel/proxmox-boot-uuids"
install -m 755 "$REPO_ROOT/tests/testhost/proxmox-boot-tool" "$ROOTFS/usr/sbin/proxmox-boot-tool"
# the hooks of Proxmox's proxmox-kernel-helper: update-initramfs refreshes the ESP (unless a
# kernel package's hook runs it: zz-proxmox-boot refreshes once after all hooks), and so do
# kernel package installs and removals
mkdir -p "$ROOTFS/etc/initramfs/post-update.d" "$ROOTFS/etc/kernel/postrm.d"
cat > "$ROOTFS/etc/initramfs/post-update.d/proxmox-boot-sync" <<'EOS'
#!/bin/sh
# TEST STAND-IN hook (pvegpu tests/testhost/build-image.sh), as in Proxmox's proxmox-kernel-helper
set -e
if [ -z "$INITRAMFS_TOOLS_KERNEL_HOOK" ]; then
	/usr/sbin/proxmox-boot-tool refresh --hook 'zz-proxmox-boot'
fi
EOS
for d in postinst.d postrm.d; do
  cat > "$ROOTFS/etc/kernel/$d/zz-proxmox-boot" <<'EOS'
#!/bin/sh
# TEST STAND-IN hook (pvegpu tests/testhost/build-image.sh): kernel package installed or
# removed -> copy the kernels onto the ESP, as Proxmox's zz-proxmox-boot does
PBT_HOOK=$0 exec /usr/sbin/proxmox-boot-tool refresh --hook zz-proxmox-boot
EOS
done
chmod 755 "$ROOTFS/etc/initramfs/post-update.d/proxmox-boot-sync" "$ROOTFS"/etc/kernel/post*.d/zz-proxmox-boot
# the ESP's content, staged in a folder: systemd-boot where bootctl installs it and on the
# removable-media path that OVMF falls back to (there is no NVRAM entry), then what the
# stand-in's first refresh writes (kernel, initrd, loader entry, loader.conf; it also disables
# the systemd-boot package's own kernel hooks, as the real tool does)
STAGE=$ROOTFS/tmp/esp
rm -rf "$STAGE"; mkdir -p "$STAGE/EFI/BOOT" "$STAGE/EFI/systemd"
cp "$ROOTFS/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$STAGE/EFI/BOOT/BOOTX64.EFI"
cp "$ROOTFS/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$STAGE/EFI/systemd/systemd-bootx64.efi"
chroot "$ROOTFS" env PBT_ESP=/tmp/esp /usr/sbin/proxmox-boot-tool refresh 2>&1 | sed 's/^/[build-image]   /'
fi
# the initrd built in the chroot is MODULES=most (~36 MB; `dep` cannot be computed in a
# chroot). Rebuilds inside the VM use `dep`: ~8 MB, and update-initramfs under TCG drops
# from ~15 min to ~1.5-2 min.
sed -i 's/^MODULES=.*/MODULES=dep/' "$ROOTFS/etc/initramfs-tools/initramfs.conf"
chroot "$ROOTFS" apt-get clean
t2=$(date +%s)
if [ "${ROOTFS_ONLY:-0}" = 1 ]; then
  touch "$ROOTFS/.pvegpu-rootfs-done"
  log "done: root file system $ROOTFS (kernel $KVER); debootstrap $((t1-t0)) s, configure $((t2-t1)) s"
  exit 0
fi

# ---- 3. filesystems and disk, no mounts ---------------------------------------------------
log "3/3 assembling the disk (GPT: ${ESPSIZE_MIB} MiB ESP + ${ROOTSIZE_MIB} MiB ext4)"
# Both file systems are written straight into the partitions of one sparse raw disk, and the
# root tree is gone before the qcow2 copy: at its peak the build holds the tree and the raw
# disk, or the raw disk and the image (about 1.5 GB), never a second copy of a partition.
# CI machines can be short of disk.
RAW=disk$SUFFIX.raw
ESP_OFF_MIB=1 ROOT_OFF_MIB=$((1 + ESPSIZE_MIB))
rm -f "$RAW" "esp$SUFFIX.img" "root$SUFFIX.img"   # the .img: left by an older, failed build
truncate -s $((1 + ESPSIZE_MIB + ROOTSIZE_MIB + 1))M "$RAW"
sfdisk -q "$RAW" <<EOF
label: gpt
start=${ESP_OFF_MIB}MiB, size=${ESPSIZE_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=${ROOT_OFF_MIB}MiB, size=${ROOTSIZE_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
EOF
# -s 1: on the whole file mkfs.vfat picks 4 KiB clusters, too few for FAT32, and mtools then
# cannot read the FAT. It also warns that the file is bigger than the partition: expected here.
mkfs.vfat --offset=$((ESP_OFF_MIB * 2048)) -F 32 -s 1 -i "$ESP_VOLID" -n ESP "$RAW" $((ESPSIZE_MIB * 1024)) 2>&1 >/dev/null \
  | { grep -v '^Warning: block count mismatch' >&2 || true; }
ESP="$RAW@@$((ESP_OFF_MIB * 1024 * 1024))"
if [ "$BOOT" = grub ]; then
  mmd -i "$ESP" ::/EFI ::/EFI/BOOT
  mcopy -i "$ESP" "$WORKDIR/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
else
  mcopy -s -m -i "$ESP" "$STAGE/EFI" "$STAGE/loader" ::/
  rm -rf "$STAGE"
  mdir -/ -b -i "$ESP" ::/ | sed 's/^/[build-image]   ESP /'
fi
# nodiscard: discarding a file punches holes, and none may reach the ESP in front of it
mkfs.ext4 -q -F -L pveroot -U "$ROOT_UUID" -E offset=$((ROOT_OFF_MIB * 1024 * 1024)),nodiscard \
  -d "$ROOTFS" "$RAW" "${ROOTSIZE_MIB}M" >/dev/null
if [ "${KEEP_ROOTFS:-0}" != 1 ]; then rm -rf "$ROOTFS"; fi
qemu-img convert -f raw -O qcow2 "$RAW" "$IMAGE.tmp"
rm -f "$RAW"
mv "$IMAGE.tmp" "$IMAGE"
t3=$(date +%s)
log "done: kernel $KVER; debootstrap $((t1-t0)) s, configure $((t2-t1)) s, disk $((t3-t2)) s, total $((t3-t0)) s"
qemu-img info "$IMAGE" | grep -E 'virtual size|disk size' | sed 's/^/[build-image] /'
log "image: $WORKDIR/$IMAGE  key: $WORKDIR/id_ed25519"
