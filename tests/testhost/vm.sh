#!/bin/bash
# vm.sh start|wait|ssh|reboot|stop -- one throwaway pvegpu test host (image from
# build-image.sh) under QEMU TCG: q35 + emulated Intel IOMMU (intel-iommu, intremap=on),
# UEFI (OVMF in pflash), a fresh qcow2 overlay of base.qcow2 per `start`.
#
#   vm.sh start           boot a fresh VM in the background (returns at once)
#   vm.sh wait [SECS]     wait until root SSH answers (default 600 s)
#   vm.sh ssh [CMD...]    ssh root@127.0.0.1 -p $PORT with the throwaway key
#   vm.sh reboot [SECS]   detached guest reboot, wait for a new boot_id (default 600 s)
#   vm.sh stop            stop QEMU and its supervisor loop
#
# Env:
#   WORKDIR   image/key cache (default <repo root>/.cache/testhost)
#   LAYOUT    emulated passthrough candidates, fixed at `start`:
#     default       edu (1234:11e8, no host driver) + e1000 (8086:100e, claimed by e1000),
#                   each on pcie.0 in an IOMMU group of its own
#     shared-group  pcie-pci-bridge on pcie.0 with an e1000 (8086:100e) and an rtl8139
#                   (10ec:8139, claimed by 8139cp) behind it: a conventional PCI bus, so
#                   bridge + both devices share one IOMMU group
#     twin          two edu devices (1234:11e8, identical ids), each in its own group
#   BOOT      which image `start` boots (default grub): grub -> base.qcow2, systemd-boot ->
#             base-systemd-boot.qcow2 (systemd-boot + a stand-in proxmox-boot-tool, see
#             build-image.sh); OVMF finds no NVRAM entry and runs \EFI\BOOT\BOOTX64.EFI
#   PORT      loopback SSH port (default 2222); hostfwd binds 127.0.0.1 only
#   SMP=2 MEM=1024 (UEFI: keep <= ~1 GiB, GRUB says "initrd is too big" at 2 GiB)
#   RUN       per-VM state folder (default $WORKDIR/run): overlay, OVMF vars, serial logs
#
# Guest reboots: QEMU runs with -no-reboot under a supervisor loop that starts it again on
# the same overlay and vars, so each reboot is a clean cold start (letting QEMU reset the
# machine hung OVMF once for >10 min under TCG). Serial log of boot N: $RUN/serial.log.N.
# Every ssh uses ServerAliveInterval: a session open across a reboot is not closed by
# slirp and would otherwise hang for ~15 min.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORKDIR=${WORKDIR:-$REPO_ROOT/.cache/testhost}
RUN=${RUN:-$WORKDIR/run}
BOOT=${BOOT:-grub}
case "$BOOT" in
  grub)         BASE=${BASE:-$WORKDIR/base.qcow2} ;;
  systemd-boot) BASE=${BASE:-$WORKDIR/base-systemd-boot.qcow2} ;;
  *) echo "vm.sh: unknown BOOT '$BOOT' (grub, systemd-boot)" >&2; exit 1 ;;
esac
PORT=${PORT:-2222}
SMP=${SMP:-2}
MEM=${MEM:-1024}
ACCEL=${ACCEL:-tcg}
CPU=${CPU:-qemu64,vendor=GenuineIntel}   # Intel, to match the emulated VT-d (DMAR) IOMMU
LAYOUT=${LAYOUT:-default}
# a running VM keeps the port and layout it was started with
if [ "${1:-}" != start ] && [ -f "$RUN/port" ]; then PORT=$(cat "$RUN/port"); fi
SSH_OPTS=(-i "$WORKDIR/id_ed25519" -p "$PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes
          -o ServerAliveInterval=2 -o ServerAliveCountMax=3)

die() { echo "vm.sh: $*" >&2; exit 1; }

layout_devices() {
  case "$LAYOUT" in
    default)      echo -device edu,id=edu0 -device e1000,id=spare0 ;;
    shared-group) echo -device pcie-pci-bridge,id=br1,bus=pcie.0 \
                       -device e1000,id=spare0,bus=br1,addr=0x1 \
                       -device rtl8139,id=spare1,bus=br1,addr=0x2 ;;
    twin)         echo -device edu,id=edu0 -device edu,id=edu1 ;;
    *) die "unknown LAYOUT '$LAYOUT' (default, shared-group, twin)" ;;
  esac
}

qemu_cmd() {
  # intel-iommu must come before the PCI devices. The SSH NIC is virtio-net (1af4:1000),
  # which no layout's vfio-pci ids match. NICs without a netdev make QEMU warn
  # "nic ... has no peer": harmless.
  local devs; devs=$(layout_devices)
  local cmd=(qemu-system-x86_64
    -machine q35,accel="$ACCEL",kernel-irqchip=split -cpu "$CPU" -smp "$SMP" -m "$MEM"
    -device intel-iommu,intremap=on,caching-mode=on
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
    -drive if=pflash,format=raw,file="$RUN/OVMF_VARS.fd"
    -drive if=virtio,format=qcow2,file="$RUN/disk.qcow2"
    -netdev user,id=n0,hostfwd=tcp:127.0.0.1:"$PORT"-:22 -device virtio-net-pci,netdev=n0
    $devs
    -display none -serial file:"$RUN/serial.log"
    -monitor unix:"$RUN/monitor.sock",server,nowait -no-reboot)
  printf '%q ' "${cmd[@]}"
}

running() { [ -f "$RUN/supervisor.pid" ] && kill -0 "$(cat "$RUN/supervisor.pid")" 2>/dev/null; }
boot_id() { timeout 20 ssh "${SSH_OPTS[@]}" root@127.0.0.1 cat /proc/sys/kernel/random/boot_id 2>/dev/null; }

case "${1:-}" in
start)
  [ -f "$BASE" ] || die "no image at $BASE; run BOOT=$BOOT tests/testhost/build-image.sh first"
  ! running || die "a VM is already running from $RUN (vm.sh stop first)"
  layout_devices >/dev/null
  if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then die "127.0.0.1:$PORT is in use (another VM? set PORT)"; fi
  case "$WORKDIR" in *' '*) die "WORKDIR must not contain spaces" ;; esac
  rm -rf "$RUN"; mkdir -p "$RUN"
  qemu-img create -q -f qcow2 -F qcow2 -b "$BASE" "$RUN/disk.qcow2"
  cp /usr/share/OVMF/OVMF_VARS_4M.fd "$RUN/OVMF_VARS.fd"
  echo "$PORT" > "$RUN/port"; echo "$LAYOUT" > "$RUN/layout"; echo "$BOOT" > "$RUN/boot"
  { echo '#!/bin/bash'; echo "exec $(qemu_cmd)"; } > "$RUN/qemu.sh"
  # supervisor: qemu exits with status 0 on guest reboot (-no-reboot) and is started again
  # on the same disk; serial.log is opened anew each time (older boots go to serial.log.N).
  # A failing qemu (status != 0, e.g. port taken) ends the loop instead of respinning.
  nohup bash -c '
    n=0
    while [ ! -e "$0/stop" ]; do
      [ -e "$0/serial.log" ] && mv "$0/serial.log" "$0/serial.log.$n" && n=$((n+1))
      bash "$0/qemu.sh" & echo $! > "$0/qemu.pid"
      rc=0; wait $! || rc=$?
      [ -e "$0/stop" ] && break
      if [ "$rc" != 0 ]; then echo "$(date +%T) qemu failed (rc=$rc), supervisor ends"; break; fi
      echo "$(date +%T) qemu exited (guest reboot), starting it again"
    done
    rm -f "$0/qemu.pid"' "$RUN" > "$RUN/supervisor.log" 2>&1 < /dev/null &
  echo $! > "$RUN/supervisor.pid"
  echo "vm.sh: started BOOT=$BOOT LAYOUT=$LAYOUT on 127.0.0.1:$PORT (state in $RUN)" ;;
wait)   # wait until sshd answers
  t0=$(date +%s); deadline=$(( t0 + ${2:-600} ))
  until timeout 20 ssh "${SSH_OPTS[@]}" root@127.0.0.1 true 2>/dev/null; do
    running || die "VM is not running (see $RUN/supervisor.log, $RUN/serial.log)"
    [ "$(date +%s)" -lt "$deadline" ] || die "ssh not ready after ${2:-600} s (see $RUN/serial.log)"
    sleep 2
  done
  echo "vm.sh: ssh ready after $(( $(date +%s) - t0 )) s" >&2 ;;
ssh) shift; exec ssh "${SSH_OPTS[@]}" root@127.0.0.1 "$@" ;;
reboot) # detached reboot (the ssh session cannot hang on it); "back" = new boot_id
  old=$(boot_id) || die "cannot read boot_id (is the VM up?)"
  t0=$(date +%s); deadline=$(( t0 + ${2:-600} ))
  timeout 30 ssh "${SSH_OPTS[@]}" root@127.0.0.1 'systemd-run --quiet --on-active=1 systemctl reboot'
  until new=$(boot_id) && [ -n "$new" ] && [ "$new" != "$old" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "no new boot_id after ${2:-600} s"
    sleep 2
  done
  echo "vm.sh: rebooted, new boot_id after $(( $(date +%s) - t0 )) s" >&2 ;;
stop)
  [ -d "$RUN" ] || exit 0
  touch "$RUN/stop"
  qpid=$(cat "$RUN/qemu.pid" 2>/dev/null || true)
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null || true
  # wait until both qemu and the supervisor are gone (the port is free again)
  for _ in $(seq 1 40); do
    alive=0
    [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null && alive=1
    running && alive=1
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  [ "$alive" = 0 ] || { [ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null; echo "vm.sh: qemu $qpid killed" >&2; }
  rm -f "$RUN/port" ;;
*) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
