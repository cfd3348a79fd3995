#!/usr/bin/env bash
# pvegpu's main job against a local lab: a QEMU VM with a real Debian kernel and an emulated
# Intel IOMMU stands in for a Proxmox VE node (tests/testhost/README.md says what is a
# stand-in). Installs the host packages it needs, builds the VM image once (cached in
# .cache/testhost), boots it, and runs what a user runs: discover, plan, apply, plan again.
# Then the VM phase: the lab node is no Proxmox VE node, so the fake Proxmox VE API of the
# tests (examples/fake_pve.rs), seeded with the lab node's PCI devices, stands in for its
# API; plan, apply (mappings, the VM created and started) and plan again.
# Usage: bash scripts/lab.sh [--keep]   (needs root or sudo for apt-get and debootstrap)
#   --keep  leave the lab node and the fake API running at the end, and say how to try
#           verify, rollback and --json against them, and how to stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
case "${1:-}" in
  --keep) KEEP=1 ;;
  "") ;;
  *) echo "usage: bash scripts/lab.sh [--keep]" >&2; exit 64 ;;
esac
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export PORT=${PORT:-2250} LAYOUT=default
LAB_STARTED=$(date +%s)
part() { echo "==> $1 ($(( $(date +%s) - $2 )) s)"; }
t=$(date +%s)
echo "==> installing the packages the lab needs (QEMU, OVMF, debootstrap, OpenSSH)"
bash scripts/install-testhost-deps.sh
part "packages ready" "$t"
t=$(date +%s)
if [ -f .cache/testhost/base.qcow2 ]; then
  echo "==> the lab node's image is cached in .cache/testhost"
else
  echo "==> building the lab node's image: Debian 12 with its kernel, once (a few minutes)"
  $SUDO bash tests/testhost/build-image.sh
  part "image built" "$t"
fi
t=$(date +%s)
echo "==> building pvegpu and the fake Proxmox VE API (release, with LTO: about 6 minutes on 2 cores)"
cargo build --release --quiet --bin pvegpu --example fake_pve
part "built" "$t"
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$TARGET/release/pvegpu
LAB=$PWD/.cache/lab; mkdir -p "$LAB"; export RUN=$LAB/run
FAKE_PID=""
cleanup() {
  status=$?
  if [ "$KEEP" = 1 ] && [ "$status" = 0 ]; then
    return
  fi
  [ -z "$FAKE_PID" ] || kill "$FAKE_PID" 2>/dev/null || true
  bash tests/testhost/vm.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
t=$(date +%s)
echo "==> booting the lab node (QEMU, no KVM: about a minute)"
bash tests/testhost/vm.sh start && bash tests/testhost/vm.sh wait 900
part "lab node up" "$t"
# under emulation a key exchange can outlast ssh-keyscan's default 5 s: ask with time, and again
for _ in 1 2 3 4 5; do
  ssh-keyscan -T 30 -t ed25519 -p "$PORT" 127.0.0.1 2>/dev/null > "$LAB/known_hosts" || true
  grep -q ssh-ed25519 "$LAB/known_hosts" && break
done
grep -q ssh-ed25519 "$LAB/known_hosts" || { echo "lab: no SSH host key from the lab node" >&2; exit 1; }
cat > "$LAB/ssh_config" <<CFG
Host lab
  HostName 127.0.0.1
  Port $PORT
  User root
  IdentityFile $PWD/.cache/testhost/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $LAB/known_hosts
  StrictHostKeyChecking yes
  ServerAliveInterval 2
  ServerAliveCountMax 3
CFG
cat > "$LAB/lab.toml" <<INV
# The lab node: the QEMU test host. Its 'GPU' is QEMU's edu device plus a spare e1000.
[nodes.lab]
ssh = "lab"
ssh_config = "ssh_config"

[[nodes.lab.gpus]]
address = "0000:00:03.0"
id = "1234:11e8"

[[nodes.lab.gpus]]
address = "0000:00:04.0"
id = "8086:100e"
INV
run() {
  local t rc=0
  t=$(date +%s)
  echo; echo "\$ pvegpu $*"
  "$BIN" -i "$LAB/lab.toml" "$@" || rc=$?
  echo "    (exit $rc, $(( $(date +%s) - t )) s)"
  return "$rc"
}
run discover --node lab
run plan --node lab || true
run apply --node lab --yes
run plan --node lab

echo
echo "==> the VM phase, against the fake Proxmox VE API (the lab node is no Proxmox node)"
"$BIN" -i "$LAB/lab.toml" discover --node lab --save "$LAB/lab.facts" >/dev/null
rm -rf "$LAB/fake-pve"
"$TARGET/release/examples/fake_pve" --facts "$LAB/lab.facts" --out "$LAB/fake-pve" \
  > "$LAB/fake-pve.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 100); do [ -f "$LAB/fake-pve/fake-pve.env" ] && break; sleep 0.1; done
[ -f "$LAB/fake-pve/fake-pve.env" ] || { cat "$LAB/fake-pve.log"; exit 1; }
. "$LAB/fake-pve/fake-pve.env"
head -n 1 "$LAB/fake-pve.log"
cat >> "$LAB/lab.toml" <<INV

# The VM phase. The API is the fake Proxmox VE (examples/fake_pve.rs) with the lab node's
# PCI devices; on a real node: its URL, \`pvegpu fingerprint --node NAME\`, and a token.
[nodes.lab.api]
url = "$FAKE_PVE_URL"
fingerprint = "$FAKE_PVE_FINGERPRINT"
node = "$FAKE_PVE_NODE"
token = "$FAKE_PVE_TOKEN"
token_secret_file = "$FAKE_PVE_TOKEN_SECRET_FILE"

[nodes.lab.vm]
vmid = 201
name = "lab-gpu"
firmware = "ovmf"
memory_mib = 8192
cores = 4
reach_timeout = 60

[nodes.lab.vm.disk]
storage = "local-lvm"
size_gb = 32
image = "$FAKE_PVE_IMAGE"

[nodes.lab.vm.cloud_init]
user = "debian"
ssh_key_file = "$PWD/.cache/testhost/id_ed25519.pub"
ip = "10.0.2.50/24"
gateway = "10.0.2.2"
INV
run plan --node lab || true
run apply --node lab --yes
run plan --node lab
echo
echo "(the fake's request log: $LAB/fake-pve.log)"
part "lab done" "$LAB_STARTED"
if [ "$KEEP" = 1 ]; then
  cat <<KEPT

The lab node (QEMU, port $PORT) and the fake Proxmox VE API (pid $FAKE_PID) are still running
(--keep). Try:
  $BIN -i $LAB/lab.toml verify --node lab
      (the host and VM layers pass; the guest layer fails as not checked: no VM really boots)
  $BIN -i $LAB/lab.toml --json plan --node lab
  $BIN -i $LAB/lab.toml --json discover --node lab
  $BIN -i $LAB/lab.toml rollback --node lab --reboot --yes
Stop them:
  kill $FAKE_PID; RUN=$RUN PORT=$PORT bash tests/testhost/vm.sh stop
KEPT
fi
