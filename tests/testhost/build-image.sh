#!/bin/bash
# build-image.sh -- build pvegpu's QEMU test host image: a minimal Debian 12 (bookworm)
# UEFI system with a real Debian kernel, GRUB, initramfs-tools, sshd and a few tools the
# host probe (src/facts/probe.sh) runs. vm.sh boots it under QEMU TCG with an emulated
# Intel IOMMU.
#
# Output in $WORKDIR (default: <repo root>/.cache/testhost, git-ignored):
#   base.qcow2      the disk image (~750 MB allocated, 3 GiB virtual)
#   id_ed25519      throwaway root SSH key baked into the image
#   cache/          downloaded .debs (kept, speeds up a rebuild a little)
#
# Idempotent: does nothing when base.qcow2 exists, unless FORCE=1.
# Needs root (debootstrap + chroot) but no loop devices, nbd, mounts or guestfish:
# the ext4 root is made with `mkfs.ext4 -d`, the ESP with mkfs.vfat + mtools, the GPT
# with sfdisk on a plain file.
# Host packages: debootstrap qemu-utils dosfstools mtools fdisk openssh-client
#   (to run the VM: qemu-system-x86 ovmf)
# Env: WORKDIR, FORCE=1, MIRROR, SECURITY_MIRROR, ROOTSIZE_MIB, KEEP_ROOTFS=1
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORKDIR=${WORKDIR:-$REPO_ROOT/.cache/testhost}
FORCE=${FORCE:-0}
# the Debian mirror this machine's apt already uses (first and second URIs: of the deb822 file)
SOURCES=/etc/apt/sources.list.d/debian.sources
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' "$SOURCES" 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(awk '/^URIs:/ && /security/ {print $2; exit}' "$SOURCES" 2>/dev/null || true)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ROOTSIZE_MIB=${ROOTSIZE_MIB:-3072}   # room for a second kernel package (~450 MB)
ESPSIZE_MIB=63
ROOTFS=$WORKDIR/rootfs
ROOT_UUID=${ROOT_UUID:-6a1c2a1e-8b0e-4c1e-9d3a-0d5e1f00c0de}
ESP_VOLID=${ESP_VOLID:-1234ABCD}            # vfat "UUID" becomes 1234-ABCD
PACKAGES=linux-image-amd64,systemd-sysv,udev,kmod,dbus,openssh-server,initramfs-tools,pciutils,iproute2,grub-efi-amd64,efibootmgr,procps,zstd

log() { printf '[build-image %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

case "$WORKDIR" in *' '*) die "WORKDIR must not contain spaces: $WORKDIR" ;; esac
if [ -f "$WORKDIR/base.qcow2" ] && [ "$FORCE" != 1 ]; then
  log "$WORKDIR/base.qcow2 exists; nothing to do (FORCE=1 rebuilds it)"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot)"
for t in debootstrap mkfs.ext4 mkfs.vfat mmd mcopy sfdisk qemu-img ssh-keygen; do
  command -v "$t" >/dev/null || die "missing host tool: $t (apt-get install debootstrap qemu-utils dosfstools mtools fdisk openssh-client)"
done

mkdir -p "$WORKDIR/cache"
cd "$WORKDIR"
log "WORKDIR=$WORKDIR  mirror=$MIRROR  security=$SECURITY_MIRROR"
rm -f base.qcow2 base.qcow2.tmp
t0=$(date +%s)

# ---- 1. debootstrap (downloads ~120 MB of .debs into $WORKDIR/cache once) ------------
if [ -x "$ROOTFS/usr/bin/systemctl" ] && [ "$FORCE" != 1 ]; then
  log "1/3 reusing existing rootfs $ROOTFS"
else
  log "1/3 debootstrap bookworm (about 100 s; first run downloads ~120 MB)"
  rm -rf "$ROOTFS"
  debootstrap --variant=minbase --cache-dir="$WORKDIR/cache" --include="$PACKAGES" \
    bookworm "$ROOTFS" "$MIRROR" > "$WORKDIR/debootstrap.log" 2>&1 \
    || { tail -20 "$WORKDIR/debootstrap.log" >&2; die "debootstrap failed (log: $WORKDIR/debootstrap.log)"; }
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
# the initrd built in the chroot is MODULES=most (~36 MB; `dep` cannot be computed in a
# chroot). Rebuilds inside the VM use `dep`: ~8 MB, and update-initramfs under TCG drops
# from ~15 min to ~1.5-2 min.
sed -i 's/^MODULES=.*/MODULES=dep/' "$ROOTFS/etc/initramfs-tools/initramfs.conf"
chroot "$ROOTFS" apt-get clean
t2=$(date +%s)

# ---- 3. filesystems and disk, no mounts ---------------------------------------------------
log "3/3 assembling the disk (GPT: ${ESPSIZE_MIB} MiB ESP + ${ROOTSIZE_MIB} MiB ext4)"
rm -f esp.img root.img disk.raw
mkfs.vfat -C -F 32 -i "$ESP_VOLID" -n ESP esp.img $((ESPSIZE_MIB * 1024)) >/dev/null
mmd -i esp.img ::/EFI ::/EFI/BOOT
mcopy -i esp.img "$WORKDIR/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mkfs.ext4 -q -F -L pveroot -U "$ROOT_UUID" -d "$ROOTFS" root.img "${ROOTSIZE_MIB}M" >/dev/null
truncate -s $((1 + ESPSIZE_MIB + ROOTSIZE_MIB + 1))M disk.raw
sfdisk -q disk.raw <<EOF
label: gpt
start=1MiB, size=${ESPSIZE_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=$((1 + ESPSIZE_MIB))MiB, size=${ROOTSIZE_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
EOF
dd if=esp.img  of=disk.raw bs=1M seek=1 conv=notrunc,sparse status=none
dd if=root.img of=disk.raw bs=1M seek=$((1 + ESPSIZE_MIB)) conv=notrunc,sparse status=none
rm -f esp.img root.img
qemu-img convert -f raw -O qcow2 disk.raw base.qcow2.tmp
rm -f disk.raw
mv base.qcow2.tmp base.qcow2
if [ "${KEEP_ROOTFS:-0}" != 1 ]; then rm -rf "$ROOTFS"; fi
t3=$(date +%s)
log "done: kernel $KVER; debootstrap $((t1-t0)) s, configure $((t2-t1)) s, disk $((t3-t2)) s, total $((t3-t0)) s"
qemu-img info base.qcow2 | grep -E 'virtual size|disk size' | sed 's/^/[build-image] /'
log "image: $WORKDIR/base.qcow2  key: $WORKDIR/id_ed25519"
