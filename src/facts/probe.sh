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

# One line per PCI function. A constant number of processes whatever the number of devices
# (one grep reads every attribute file, two finds read the links, awk joins them): a probe
# that forked per device cost a server with 60 functions most of a second.
# PVEGPU_SYSFS points it at a synthetic tree (bench/probe-processes.sh).
pci_devices() (
  # a subshell: the cd must not move the rest of the probe
  root=${PVEGPU_SYSFS:-/sys}/bus/pci/devices
  [ -d "$root" ] && cd "$root" || return 0
  {
    grep -H . ./*/class ./*/vendor ./*/device ./*/subsystem_vendor ./*/subsystem_device \
      ./*/boot_vga ./*/reset_method ./*/driver_override ./*/sriov_numvfs 2>/dev/null
    # the trailing slash makes find enter each device's symlink
    find ./*/ -mindepth 1 -maxdepth 1 -type l \( -name driver -o -name iommu_group -o -name physfn \) \
      -printf 'link %p %l\n'
    find . -mindepth 1 -maxdepth 1 -printf 'self %f %l\n'
  } | awk -v sys="${PVEGPU_SYSFS:-/sys}" '
    $1 == "link" { n = split($2, p, "/"); m = split($3, t, "/"); v[p[2], p[3]] = t[m]; next }
    $1 == "self" { d = $2; path = $3; sub(/^(\.\.\/)+/, sys "/", path); where[d] = path; seen[d] = 1; next }
    {
      line = substr($0, 3); i = index(line, "/"); d = substr(line, 1, i - 1)
      rest = substr(line, i + 1); j = index(rest, ":")
      val = substr(rest, j + 1); gsub(/ /, ",", val); v[d, substr(rest, 1, j - 1)] = val; seen[d] = 1
    }
    END {
      for (d in seen)
        printf "%s class=%s vendor=%s device=%s svendor=%s sdevice=%s boot_vga=%s reset_method=%s driver=%s override=%s iommu_group=%s numvfs=%s physfn=%s path=%s\n", \
          d, v[d, "class"], v[d, "vendor"], v[d, "device"], v[d, "subsystem_vendor"], v[d, "subsystem_device"], \
          v[d, "boot_vga"], v[d, "reset_method"], v[d, "driver"], v[d, "driver_override"], v[d, "iommu_group"], \
          v[d, "sriov_numvfs"], v[d, "physfn"], where[d]
    }' | sort
)

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
