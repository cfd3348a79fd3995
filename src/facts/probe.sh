# pvegpu host probe: read-only; prints every fact pvegpu needs in one pass.
# Each section starts with a line "### pvegpu <name> [<argument>]" and ends with "### pvegpu exit <rc>".
# The parsers in src/facts/ read this text; a saved facts file is this text too.
# (LC_ALL, PATH and section() come first, from src/probe-prelude.sh)

# Each existing file as a `file` section: one stat and one awk for all of them (a fork per
# file cost four processes each, and a Proxmox host has a dozen of these files).
dump_files() { # path...
  n=$#
  for f in "$@"; do [ -e "$f" ] && set -- "$@" "$f"; done
  shift "$n"
  [ "$#" -gt 0 ] || return 0
  {
    for f in "$@"; do [ -L "$f" ] && echo "link $f $(readlink -f "$f")"; done
    stat -L -c 'stat %n mode=%a owner=%U:%G mtime=%Y' -- "$@"
  } | awk '
    $1 == "link" { link[$2] = $3; next }
    $1 == "stat" { n++; name[n] = $2; attrs[n] = $3 " " $4 " " $5 }
    END {
      for (i = 1; i <= n; i++) {
        f = name[i]
        printf "### pvegpu file %s %s%s\n", f, attrs[i], ((f in link) ? " link=" link[f] : "")
        # print adds the final newline a file may lack, so the trailer stays on its own line
        while ((getline line < f) > 0) print line
        close(f)
        print "### pvegpu exit 0"
      }
    }'
}

# One line per PCI function. A constant number of processes whatever the number of devices
# (one grep reads every attribute file, one find reads the links, awk joins them): a probe
# that forked per device cost a server with 60 functions most of a second.
# PVEGPU_SYSFS points it at a synthetic tree (bench/probe-processes.sh).
pci_devices() (
  # a subshell: the cd must not move the rest of the probe
  root=${PVEGPU_SYSFS:-/sys}/bus/pci/devices
  [ -d "$root" ] && cd "$root" || return 0
  {
    grep -H . ./*/class ./*/vendor ./*/device ./*/subsystem_vendor ./*/subsystem_device \
      ./*/boot_vga ./*/reset_method ./*/driver_override ./*/sriov_numvfs \
      ./*/iommu_group/name 2>/dev/null
    # each device's own entry (`.`), and the links inside it (the trailing slash makes find
    # enter each device's symlink)
    find . ./*/ -mindepth 1 -maxdepth 1 \
      \( -path './*/*' -type l \( -name driver -o -name iommu_group -o -name physfn \) \
         -printf 'link %p %l\n' \) \
      -o \( ! -path './*/*' -printf 'self %f %l\n' \)
  } | awk -v sys="${PVEGPU_SYSFS:-/sys}" '
    # in the order grep first names them: the glob'"'"'s, which is sorted (LC_ALL=C)
    function see(d) { if (!(d in seen)) { seen[d] = 1; order[++n] = d } }
    $1 == "link" { split($2, p, "/"); m = split($3, t, "/"); v[p[2], p[3]] = t[m]; next }
    $1 == "self" { d = $2; path = $3; sub(/^(\.\.\/)+/, sys "/", path); where[d] = path; see(d); next }
    {
      line = substr($0, 3); i = index(line, "/"); d = substr(line, 1, i - 1)
      rest = substr(line, i + 1); j = index(rest, ":")
      val = substr(rest, j + 1); gsub(/ /, ",", val); v[d, substr(rest, 1, j - 1)] = val; see(d)
    }
    END {
      for (k = 1; k <= n; k++) {
        d = order[k]
        printf "%s class=%s vendor=%s device=%s svendor=%s sdevice=%s boot_vga=%s reset_method=%s driver=%s override=%s iommu_group=%s group_name=%s numvfs=%s physfn=%s path=%s\n", \
          d, v[d, "class"], v[d, "vendor"], v[d, "device"], v[d, "subsystem_vendor"], v[d, "subsystem_device"], \
          v[d, "boot_vga"], v[d, "reset_method"], v[d, "driver"], v[d, "driver_override"], v[d, "iommu_group"], \
          v[d, "iommu_group/name"], v[d, "sriov_numvfs"], v[d, "physfn"], where[d]
      }
    }'
)

kernel_log() {
  pattern='DMAR|IOMMU|AMD-Vi|iommu|remapping|IVRS|vfio|ACS overrides'
  out=$(dmesg 2>/dev/null | grep -m 400 -E "$pattern")
  # the ring buffer rotates on long-running hosts; the journal keeps the boot's start
  case $out in
    *DMAR* | *AMD-Vi* | *iommu*) ;;
    *) out=$(journalctl -k -b 0 --no-pager -o short-monotonic 2>/dev/null | grep -m 400 -E "$pattern") ;;
  esac
  printf '%s\n' "$out"
}

kernels() {
  {
    for k in /lib/modules/*; do
      [ -d "$k" ] || continue
      if [ -e "/boot/vmlinuz-${k##*/}" ]; then echo "kernel ${k##*/} yes"; else echo "kernel ${k##*/} no"; fi
    done
    stat -c 'initrd %n %Y' /boot/initrd.img-* 2>/dev/null
  } | awk '
    $1 == "kernel" { n++; v[n] = $2; z[n] = $3; next }
    { t = $3; sub(/^.*\/initrd\.img-/, "", $2); mtime[$2] = t }
    END { for (i = 1; i <= n; i++) printf "%s vmlinuz=%s initrd=%s\n", v[i], z[i], ((v[i] in mtime) ? mtime[v[i]] : "none") }'
}

initramfs_of() { # kernel version: what its image holds of pvegpu's concern
  v=$1
  echo "### pvegpu initramfs $v mtime=$(stat -c %Y "/boot/initrd.img-$v")"
  grep -E '(^|/)vfio' "/lib/modules/$v/modules.builtin" 2>/dev/null | sed 's/^/builtin /'
  lsinitramfs "/boot/initrd.img-$v" 2>&1 | grep -E 'vfio|etc/modprobe.d/|^conf/modules$|pvegpu'
  echo "### pvegpu exit 0"
}

root_disks() {
  # raw: a source with a space in it stays one word; no globbing, as a btrfs source such as
  # /dev/sda2[/@] is a pattern
  set -f; set -- $(findmnt -rno SOURCE,FSTYPE /); set +f
  src=${1:-}; fstype=${2:-}
  echo "root source=$src fstype=$fstype"
  devs=$src
  if [ "$fstype" = zfs ]; then
    devs=$(zpool list -vHP "${src%%/*}" 2>/dev/null | awk '$1 ~ /^\/dev\// {print $1}')
  fi
  for d in $devs; do
    for p in $(lsblk -nsro NAME "$d" 2>/dev/null); do
      [ -e "/sys/class/block/$p/device" ] && echo "disk $p $(cd -P "/sys/class/block/$p/device" && pwd -P)"
    done
  done
}

# One line per network interface, from a constant number of processes: the PCI address is
# in the interface's own sysfs path, so no per-interface readlink (a node with a few dozen
# guests has over a hundred tap and firewall-bridge interfaces). One awk prefixes the
# addresses and routes and joins the links, so no sed or sort runs.
net_devices() (
  echo "ssh_connection=$SSH_CONNECTION"
  {
    echo '#addr'; ip -o addr show 2>/dev/null
    echo '#route'; ip route show default 2>/dev/null
    if cd "${PVEGPU_SYSFS:-/sys}/class/net" 2>/dev/null; then
      echo '#links'
      # each interface's own entry, its bridge ports and its lower devices (bonds, VLANs)
      find . ./*/brif/ ./*/ -mindepth 1 -maxdepth 1 \
        \( -path './*/brif/*' -printf 'lower %p\n' \) \
        -o \( -path './*/lower_*' -printf 'lower %p\n' \) \
        -o \( ! -path './*/*' -printf 'iface %f %l\n' \) 2>/dev/null
    fi
  } | awk -v sys="${PVEGPU_SYSFS:-/sys}" '
    /^#(addr|route|links)$/ { part = substr($0, 2); next }
    part == "addr" || part == "route" { print part " " $0; next }
    $1 == "iface" {
      i = $2; p = $3; seen[i] = 1; dev[i] = ""
      if (p != "" && p !~ /\/virtual\//) {
        sub(/^(\.\.\/)+/, sys "/", p); tail = "/net/" i
        if (substr(p, length(p) - length(tail) + 1) == tail) p = substr(p, 1, length(p) - length(tail))
        dev[i] = p
      }
      next
    }
    $1 == "lower" {
      n = split($2, q, "/"); l = q[n]; sub(/^lower_/, "", l)
      lower[q[2]] = lower[q[2]] (lower[q[2]] == "" ? "" : ",") l
    }
    END {
      # sorted by name, as sort(1) would in the C locale (a few hundred names at most)
      n = 0
      for (i in seen) {
        for (k = n; k > 0 && name[k] > i; k--) name[k + 1] = name[k]
        name[k + 1] = i; n++
      }
      for (k = 1; k <= n; k++) printf "iface %s device=%s lower=%s\n", name[k], dev[name[k]], lower[name[k]]
    }'
)

# Small files and listings are read by the shell itself: a process each cost more than the
# reading (the probe's time is mostly process starts).
read_file() { # path: its lines, as cat prints them
  while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done < "$1"
}

list_dir() { # path: its entries, as ls prints them
  [ -d "$1" ] || { echo "ls: cannot access '$1': No such file or directory"; return 2; }
  for e in "$1"/*; do
    if [ -e "$e" ] || [ -L "$e" ]; then echo "${e##*/}"; fi
  done
}

firmware() {
  if [ -d /sys/firmware/efi ]; then echo uefi; else echo bios; fi
  for t in /sys/firmware/acpi/tables/*; do [ -e "$t" ] && printf '%s ' "${t##*/}"; done
  echo
}

ir_chips() {
  grep -c "IR-" /proc/interrupts || true
}

lxc_nvidia() {
  set -- /etc/pve/lxc/*.conf
  [ -e "$1" ] || return 0
  grep -H -E "nvidia|c 195:" "$@" 2>/dev/null
  true
}

cpu() { # the first vendor_id and model name lines, as grep -m2 prints them
  n=0
  while IFS= read -r l; do
    case $l in
      vendor_id* | "model name"*) printf '%s\n' "$l"; n=$((n + 1)); [ "$n" -lt 2 ] || break ;;
    esac
  done < /proc/cpuinfo
}

# The slow commands (Proxmox's Perl tools, nvidia-smi, lsinitramfs, the journal) start first and
# run side by side while the rest is read; each writes its section to a file of its own, and
# the files are printed at the end in their order. Without a temporary folder they run in turn.
later_dir=$(mktemp -d 2>/dev/null) || later_dir=
if [ -n "$later_dir" ]; then
  trap 'rm -rf "$later_dir"' EXIT
  trap 'rm -rf "$later_dir"; exit 1' HUP INT TERM PIPE
fi
later() { # order command...
  o=$1; shift
  if [ -n "$later_dir" ]; then "$@" > "$later_dir/$o" 2>&1 & else "$@"; fi
}

echo "### pvegpu facts 1"
later 01 section pveversion -- pveversion
later 02 section proxmox-boot-tool-status -- proxmox-boot-tool status
later 03 section proxmox-boot-tool-kernels -- proxmox-boot-tool kernel list
later 04 section kernel-log -- kernel_log
later 05 section guests -- qm list
later 06 section containers -- pct list
later 07 section ha -- ha-manager status
later 08 section cluster -- pvecm status
later 09 section nvidia-smi -- nvidia-smi
later 10 section lspci -- lspci -nnk -D
for k in /lib/modules/*; do
  [ -e "/boot/initrd.img-${k##*/}" ] && later "11-${k##*/}" initramfs_of "${k##*/}"
done
section hostname -- read_file /proc/sys/kernel/hostname
section os-release -- read_file /etc/os-release
section cpu -- cpu
section uname -- read_file /proc/sys/kernel/osrelease
section proc-cmdline -- read_file /proc/cmdline
section boot-id -- read_file /proc/sys/kernel/random/boot_id
section firmware -- firmware
section efibootmgr -- efibootmgr -v
section kernels -- kernels
dump_files /etc/kernel/cmdline /etc/default/grub /etc/default/grub.d/*.cfg /etc/modules \
  /etc/modules-load.d/*.conf /etc/modprobe.d/*.conf /etc/initramfs-tools/modules \
  /usr/local/lib/pvegpu/* /etc/initramfs-tools/hooks/pvegpu-vfio /var/lib/pvegpu/cmdline-added
section pci-devices -- pci_devices
section iommu-class -- list_dir /sys/class/iommu
section interrupts-ir -- ir_chips
section proc-modules -- read_file /proc/modules
section root-disks -- root_disks
section net-devices -- net_devices
section lxc-nvidia -- lxc_nvidia
wait
if [ -n "$later_dir" ]; then cat "$later_dir"/*; fi
