#!/usr/bin/env bash
# Benchmark: processes the host probe's PCI walk starts, for a synthetic sysfs tree of N
# devices, before (the walk at commit 6866ae7, which forked per device) and now. Needs strace;
# counts execve and fork/clone calls. Usage: bash bench/probe_processes.sh [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-6 60}")
read -r -a SIZES <<< "${SIZES[*]}"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

tree() { # root count: devices under devices/pci0000:00, linked from bus/pci/devices
  local root=$1 n=$2 i addr dev
  mkdir -p "$root/bus/pci/devices" "$root/bus/pci/drivers/vfio-pci" "$root/kernel/iommu_groups"
  for ((i = 0; i < n; i++)); do
    addr=$(printf '0000:%02x:00.0' "$((i + 1))")
    dev="$root/devices/pci0000:00/$addr"
    mkdir -p "$dev" "$root/kernel/iommu_groups/$i"
    printf '0x030000\n' > "$dev/class"; printf '0x10de\n' > "$dev/vendor"; printf '0x1b80\n' > "$dev/device"
    printf '0x1043\n' > "$dev/subsystem_vendor"; printf '0x8599\n' > "$dev/subsystem_device"
    printf '0\n' > "$dev/boot_vga"; printf 'flr bus\n' > "$dev/reset_method"; printf '(null)\n' > "$dev/driver_override"
    ln -s "../../../bus/pci/drivers/vfio-pci" "$dev/driver"
    ln -s "../../../kernel/iommu_groups/$i" "$dev/iommu_group"
    ln -s "../../../devices/pci0000:00/$addr" "$root/bus/pci/devices/$addr"
  done
}

count() { # function, probe source, sysfs root, label -> processes the function starts
  local fn=$1 src=$2 root=$3
  sed -n "/^$fn() [({]/,/^[})]\$/p" "$src" \
    | sed "s|/sys/bus/pci/devices|$root/bus/pci/devices|; s|/sys/class/net|$root/class/net|" > "$T/fn.sh"
  PVEGPU_SYSFS=$root strace -f -qq -e trace=execve,fork,vfork,clone,clone3 -o "$T/trace" \
    bash -c ". $T/fn.sh; $fn > $T/raw"
  # the network walk also prints the node's addresses and routes: only its interfaces compare
  grep -v '^addr \|^route \|^ssh_connection=' "$T/raw" | sort > "$T/out.$4"
  echo "$(grep -cE 'execve|clone|fork' "$T/trace") processes, $(wc -l < "$T/out.$4") lines"
}

git show 6866ae7:src/facts/probe.sh > "$T/before.sh"
printf '| devices | before (6866ae7) | now |\n|---|---|---|\n'
for n in "${SIZES[@]}"; do
  rm -rf "$T/sys"; tree "$T/sys" "$n"
  printf '| %s | %s | %s |\n' "$n" "$(count pci_devices "$T/before.sh" "$T/sys" before)" "$(count pci_devices src/facts/probe.sh "$T/sys" now)"
  # the same lines either way (less the SR-IOV fields added since): only the cost changed
  sed 's/ group_name=//; s/ numvfs= physfn=//' "$T/out.now" | diff "$T/out.before" - >&2
done

# The same for the network walk: a node with N interfaces (half PCI NICs, half the tap
# interfaces its guests add), before (37460d3, a readlink and five more per interface) and now.
net_tree() { # root count
  local root=$1 n=$2 i addr path
  mkdir -p "$root/class/net"
  for ((i = 0; i < n; i++)); do
    if ((i % 2 == 0)); then
      addr=$(printf '0000:%02x:00.0' "$((i / 2 + 1))")
      path="devices/pci0000:00/$addr/net/eth$i"
      mkdir -p "$root/$path"; ln -s "../../../$addr" "$root/$path/device"
      mkdir -p "$root/devices/pci0000:00/$addr"
      ln -s "../../$path" "$root/class/net/eth$i"
    else
      path="devices/virtual/net/tap${i}i0"; mkdir -p "$root/$path"
      ln -s "../../$path" "$root/class/net/tap${i}i0"
    fi
  done
}

git show 37460d3:src/facts/probe.sh > "$T/net-before.sh"
printf '\n| interfaces | before (37460d3) | now |\n|---|---|---|\n'
for n in "${SIZES[@]}"; do
  rm -rf "$T/sys"; net_tree "$T/sys" "$n"
  printf '| %s | %s | %s |\n' "$n" "$(count net_devices "$T/net-before.sh" "$T/sys" before)" "$(count net_devices src/facts/probe.sh "$T/sys" now)"
  diff "$T/out.before" "$T/out.now" >&2
done
