# Sourced by the benchmarks: a release build in $BIN, a scratch folder $T (removed at exit,
# with the background jobs), throwaway keys, a `pveversion` stand-in so the probe takes this
# machine for a Proxmox VE node, and an sshd on 127.0.0.1:$SSHD_PORT. Lines in
# $SSHD_EXTRA are added to its configuration.
cargo build --release --quiet
BIN=$PWD/target/release/pvegpu
T=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
ssh-keygen -q -t ed25519 -N '' -f "$T/hostkey"; ssh-keygen -q -t ed25519 -N '' -f "$T/id"
cp "$T/id.pub" "$T/authorized_keys"; mkdir -p "$T/bin" /run/sshd
# BENCH_USER: log in as that user instead (its shell start-up rather than this one's); it must
# be able to read the keys and the pveversion stand-in
if [ -n "${BENCH_USER:-}" ]; then chmod 755 "$T" "$T/bin"; chmod 644 "$T/authorized_keys"; fi
printf '#!/bin/sh\necho "pve-manager/9.1.1/0 (running kernel: $(uname -r))"\n' > "$T/bin/pveversion"; chmod 755 "$T/bin/pveversion"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SSHD_PORT=$(port)
cat > "$T/sshd_config" <<CFG
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $T/hostkey
PidFile $T/sshd.pid
AuthorizedKeysFile $T/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
${SSHD_EXTRA:-}
SetEnv PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$T/bin
CFG
/usr/sbin/sshd -D -f "$T/sshd_config" & sleep 0.5
now() { date +%s.%N; }
