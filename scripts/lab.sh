#!/usr/bin/env bash
# pvegpu's main job against a local lab: a QEMU VM with a real Debian kernel and an emulated
# Intel IOMMU stands in for a Proxmox VE node (tests/testhost/README.md says what is a
# stand-in). Installs the host packages it needs, builds the VM image once (cached in
# .cache/testhost), boots it, and runs what a user runs: discover, plan, apply, plan again.
# Usage: bash scripts/lab.sh        (needs root or sudo for apt-get and debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export PORT=${PORT:-2250} LAYOUT=default
bash scripts/install-testhost-deps.sh
[ -f .cache/testhost/base.qcow2 ] || $SUDO bash tests/testhost/build-image.sh
cargo build --release --quiet
BIN=$PWD/target/release/pvegpu
LAB=$PWD/.cache/lab; mkdir -p "$LAB"; export RUN=$LAB/run
trap 'bash tests/testhost/vm.sh stop >/dev/null 2>&1 || true' EXIT
echo "==> booting the lab node (QEMU, no KVM: about a minute)"
bash tests/testhost/vm.sh start && bash tests/testhost/vm.sh wait 900
ssh-keyscan -p "$PORT" 127.0.0.1 2>/dev/null > "$LAB/known_hosts"
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
run() { echo; echo "\$ pvegpu $*"; "$BIN" -i "$LAB/lab.toml" "$@"; }
run discover --node lab
run plan --node lab || true
run apply --node lab --yes
run plan --node lab
