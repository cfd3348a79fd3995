#!/usr/bin/env bash
# Benchmark: `pvegpu plan` wall time against a bare `ssh host true`, with a fixed added
# latency on loopback. Starts its own sshd on 127.0.0.1 (throwaway keys) and a delaying TCP
# proxy in front of it (bench/delay_proxy.py), then times both commands at several delays.
# If gathering facts took more than one round trip, plan's lead over `ssh true` would grow
# with the delay; it stays flat. It also times the host probe alone over the same ssh, as it
# was at PROBE_BEFORE (default 2a41a26: 32 processes; 37460d3 read files, kernels and
# interfaces one process group each and Proxmox's tools in turn) and now. With
# BEFORE=path/to/an/older/pvegpu, that binary's plan is timed in the same runs.
# Usage: [BEFORE=...] [PROBE_BEFORE=rev] bash bench/plan_vs_ssh.sh [runs] [delays in ms...]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}; shift || true
DELAYS=("${@:-0 25 50}")
read -r -a DELAYS <<< "${DELAYS[*]}"
source bench/loopback_sshd.sh
{ cat src/probe-prelude.sh; git show "${PROBE_BEFORE:-2a41a26}:src/facts/probe.sh"; } > "$T/probe-before.sh"
cat src/probe-prelude.sh src/facts/probe.sh > "$T/probe-now.sh"
printf '%-10s %-14s %-16s %-14s %-18s %-18s %s\n' "delay" "ssh true (s)" "pvegpu plan (s)" "plan / ssh" "probe before (s)" "probe now (s)" "${BEFORE:+plan before (s)  before / ssh}"
for d in "${DELAYS[@]}"; do
  P=$(port); python3 bench/delay_proxy.py "$P" "$SSHD_PORT" "$d" & PROXY=$!; sleep 0.3
  echo "[127.0.0.1]:$P $(cat "$T/hostkey.pub")" > "$T/known_hosts"
  cat > "$T/ssh_config" <<CFG
Host node
  HostName 127.0.0.1
  Port $P
  User ${BENCH_USER:-$(id -un)}
  IdentityFile $T/id
  IdentitiesOnly yes
  UserKnownHostsFile $T/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
CFG
  printf '[nodes.node]\nssh = "node"\nssh_config = "%s/ssh_config"\n' "$T" > "$T/inv.toml"
  s_total=0; p_total=0; pb_total=0; pn_total=0; b_total=0
  for _ in $(seq "$RUNS"); do
    a=$(now); ssh -F "$T/ssh_config" node true; b=$(now)
    # this machine has no IOMMU, so the plan ends in a refusal (exit 1): the facts were gathered
    "$BIN" -q -i "$T/inv.toml" plan --node node > /dev/null 2>&1 || true; c=$(now)
    ssh -F "$T/ssh_config" node sh -s < "$T/probe-before.sh" > /dev/null 2>&1; e=$(now)
    ssh -F "$T/ssh_config" node sh -s < "$T/probe-now.sh" > /dev/null 2>&1; f=$(now)
    if [ -n "${BEFORE:-}" ]; then
      "$BEFORE" -q -i "$T/inv.toml" plan --node node > /dev/null 2>&1 || true
      b_total=$(echo "$b_total + $(now) - $f" | bc)
    fi
    s_total=$(echo "$s_total + $b - $a" | bc); p_total=$(echo "$p_total + $c - $b" | bc)
    pb_total=$(echo "$pb_total + $e - $c" | bc); pn_total=$(echo "$pn_total + $f - $e" | bc)
  done
  s=$(echo "scale=3; $s_total / $RUNS" | bc); p=$(echo "scale=3; $p_total / $RUNS" | bc)
  pb=$(echo "scale=3; $pb_total / $RUNS" | bc); pn=$(echo "scale=3; $pn_total / $RUNS" | bc)
  before=
  if [ -n "${BEFORE:-}" ]; then
    pbf=$(echo "scale=3; $b_total / $RUNS" | bc); before="$pbf  $(echo "scale=2; $pbf / $s" | bc)"
  fi
  printf '%-10s %-14s %-16s %-14s %-18s %-18s %s\n' "${d} ms" "$s" "$p" "$(echo "scale=2; $p / $s" | bc)" "$pb" "$pn" "$before"
  kill $PROXY; wait $PROXY 2>/dev/null || true
done
