# pvegpu host probe: read-only; prints every fact pvegpu needs in one pass.
# Each section starts with a line "### pvegpu <name> [<argument>]" and ends with "### pvegpu exit <rc>".
# The parsers in src/facts/ read this text; a saved facts file is this text too.
# (LC_ALL, PATH and section() come first, from src/probe-prelude.sh)

dump_file() { # path
  if [ -e "$1" ]; then
    link=; [ -L "$1" ] && link=" link=$(readlink -f "$1")"
    echo "### pvegpu file $1 $(stat -L -c 'mode=%a owner=%U:%G mtime=%Y' "$1")$link"
    cat "$1"
    # a file without a final newline must not swallow the trailer
    [ -n "$(tail -c1 "$1")" ] && echo
    echo "### pvegpu exit 0"
  fi
}

pci_devices() {
  for d in /sys/bus/pci/devices/*; do
    [ -e "$d" ] || continue
    drv=; [ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
    grp=; [ -e "$d/iommu_group" ] && grp=$(basename "$(readlink "$d/iommu_group")")
    pf=; [ -e "$d/physfn" ] && pf=$(basename "$(readlink "$d/physfn")")
    printf '%s class=%s vendor=%s device=%s svendor=%s sdevice=%s boot_vga=%s reset_method=%s driver=%s override=%s iommu_group=%s numvfs=%s physfn=%s path=%s\n' \
      "${d##*/}" "$(cat "$d/class")" "$(cat "$d/vendor")" "$(cat "$d/device")" \
      "$(cat "$d/subsystem_vendor" 2>/dev/null)" "$(cat "$d/subsystem_device" 2>/dev/null)" \
      "$(cat "$d/boot_vga" 2>/dev/null)" "$(cat "$d/reset_method" 2>/dev/null | tr ' ' ',')" \
      "$drv" "$(cat "$d/driver_override" 2>/dev/null)" "$grp" \
      "$(cat "$d/sriov_numvfs" 2>/dev/null)" "$pf" "$(readlink -f "$d")"
  done
}

kernel_log() {
  pattern='DMAR|IOMMU|AMD-Vi|iommu|remapping|IVRS|vfio|ACS overrides'
  out=$(dmesg 2>/dev/null | grep -E "$pattern")
  # the ring buffer rotates on long-running hosts; the journal keeps the boot's start
  if ! printf '%s' "$out" | grep -qE 'DMAR|AMD-Vi|iommu'; then
    out=$(journalctl -k -b 0 --no-pager -o short-monotonic 2>/dev/null | grep -E "$pattern")
  fi
  printf '%s\n' "$out" | head -n 400
}

kernels() {
  for k in /lib/modules/*; do
    [ -d "$k" ] || continue
    v=${k##*/}
    printf '%s vmlinuz=%s initrd=%s\n' "$v" \
      "$( [ -e "/boot/vmlinuz-$v" ] && echo yes || echo no)" \
      "$( [ -e "/boot/initrd.img-$v" ] && stat -c %Y "/boot/initrd.img-$v" || echo none)"
  done
}

initramfs_contents() {
  for k in /lib/modules/*; do
    v=${k##*/}
    [ -e "/boot/initrd.img-$v" ] || continue
    echo "### pvegpu initramfs $v mtime=$(stat -c %Y "/boot/initrd.img-$v")"
    grep -E '(^|/)vfio' "$k/modules.builtin" 2>/dev/null | sed 's/^/builtin /'
    lsinitramfs "/boot/initrd.img-$v" 2>&1 | grep -E 'vfio|etc/modprobe.d/|^conf/modules$|pvegpu'
    echo "### pvegpu exit 0"
  done
}

root_disks() {
  src=$(findmnt -no SOURCE /); fstype=$(findmnt -no FSTYPE /)
  echo "root source=$src fstype=$fstype"
  devs=$src
  if [ "$fstype" = zfs ]; then
    devs=$(zpool list -vHP "${src%%/*}" 2>/dev/null | awk '$1 ~ /^\/dev\// {print $1}')
  fi
  for d in $devs; do
    for p in $(lsblk -nsro NAME "$d" 2>/dev/null); do
      [ -e "/sys/class/block/$p/device" ] && echo "disk $p $(readlink -f "/sys/class/block/$p/device")"
    done
  done
}

net_devices() {
  echo "ssh_connection=$SSH_CONNECTION"
  ip -o addr show 2>/dev/null | sed 's/^/addr /'
  ip route show default 2>/dev/null | sed 's/^/route /'
  for n in /sys/class/net/*; do
    i=${n##*/}
    lower=$( (ls "$n/brif" 2>/dev/null; ls -d "$n"/lower_* 2>/dev/null | sed 's/.*lower_//') | tr '\n' ',' | sed 's/,$//')
    echo "iface $i device=$(readlink -e "$n/device" 2>/dev/null) lower=$lower"
  done
}

echo "### pvegpu facts 1"
section hostname -- hostname
section pveversion -- pveversion
section os-release -- cat /etc/os-release
section cpu -- grep -m2 -E '^(vendor_id|model name)' /proc/cpuinfo
section uname -- uname -r
section proc-cmdline -- cat /proc/cmdline
section boot-id -- cat /proc/sys/kernel/random/boot_id
section firmware -- sh -c 'if [ -d /sys/firmware/efi ]; then echo uefi; else echo bios; fi; ls /sys/firmware/acpi/tables 2>/dev/null | tr "\n" " "; echo'
section proxmox-boot-tool-status -- proxmox-boot-tool status
section proxmox-boot-tool-kernels -- proxmox-boot-tool kernel list
section efibootmgr -- efibootmgr -v
section kernels -- kernels
for f in /etc/kernel/cmdline /etc/default/grub /etc/default/grub.d/*.cfg /etc/modules \
         /etc/modules-load.d/*.conf /etc/modprobe.d/*.conf /etc/initramfs-tools/modules \
         /usr/local/lib/pvegpu/* /etc/initramfs-tools/hooks/pvegpu-vfio /var/lib/pvegpu/cmdline-added; do
  dump_file "$f"
done
section lspci -- lspci -nnk -D
section pci-devices -- pci_devices
section kernel-log -- kernel_log
section iommu-class -- ls /sys/class/iommu
section interrupts-ir -- sh -c 'grep -c "IR-" /proc/interrupts || true'
section proc-modules -- cat /proc/modules
section root-disks -- root_disks
section net-devices -- net_devices
section guests -- qm list
section nvidia-smi -- nvidia-smi
section lxc-nvidia -- sh -c 'grep -H -E "nvidia|c 195:" /etc/pve/lxc/*.conf 2>/dev/null; true'
section containers -- pct list
section ha -- ha-manager status
section cluster -- pvecm status
initramfs_contents
