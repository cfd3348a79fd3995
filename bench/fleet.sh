#!/usr/bin/env bash
# Benchmark: a fleet. `pvegpu plan` for N nodes against N parallel bare `ssh node-i true` to the
# same hosts, side by side in one run, at several added delays; then `plan` for a large fleet
# with `--parallelism P`, its wall time and peak memory (GNU time's maximum resident set).
# Every node is this machine, reached through its own sshd on 127.0.0.1 (throwaway keys,
# MaxStartups raised so the fleet is not throttled) behind a delaying TCP proxy
# (bench/delay_proxy.py); each node's name is its own ssh_config Host. On a real fleet each
# node runs its probe on its own CPUs; here all of them share this machine's, so the probes'
# own work counts against plan and not against `ssh true`.
# With BEFORE=path/to/an/older/pvegpu, that binary's `plan` (all nodes at once, as pvegpu planned
# before --parallelism) is timed in the same runs.
# Usage: bash bench/fleet.sh [runs] [nodes] [big fleet] [parallelism] [delays in ms...]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; NODES=${2:-20}; BIG=${3:-200}; PAR=${4:-20}; shift 4 || shift $#
DELAYS=("${@:-0 50}")
read -r -a DELAYS <<< "${DELAYS[*]}"
SSHD_EXTRA=$'MaxStartups 1000:30:2000\nMaxSessions 1000'
source bench/loopback_sshd.sh

# an ssh_config with one Host per node, all at the proxy's port, and an inventory of them
fleet() {
  local n=$1 p=$2
  echo "[127.0.0.1]:$p $(cat "$T/hostkey.pub")" > "$T/known_hosts"
  : > "$T/ssh_config"; : > "$T/inv-$n.toml"
  for i in $(seq -w 1 "$n"); do
    cat >> "$T/ssh_config" <<CFG
Host node-$i
  HostName 127.0.0.1
  Port $p
  User ${BENCH_USER:-$(id -un)}
  IdentityFile $T/id
  IdentitiesOnly yes
  UserKnownHostsFile $T/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
CFG
    printf '[nodes.node-%s]\nssh = "node-%s"\nssh_config = "%s/ssh_config"\n' "$i" "$i" "$T" >> "$T/inv-$n.toml"
  done
}

# every node planned from its gathered facts (the nodes list no GPUs, so each has nothing to do)
planned() {
  python3 - "$T/plan.json" "$1" <<'PY'
import json, sys
nodes = json.load(open(sys.argv[1]))["nodes"]
bad = [n["node"] for n in nodes if n["state"] != "nothing_to_do"]
if len(nodes) != int(sys.argv[2]) or bad:
    sys.exit(f"planned {len(nodes)} of {sys.argv[2]} nodes; not planned: {bad}")
print(len(nodes))
PY
}

# N parallel ssh sessions, each running `true` or, with a file, that script on its stdin
ssh_all() {
  local n=$1 script=${2:-} pids=()
  for i in $(seq -w 1 "$n"); do
    if [ -n "$script" ]; then
      ssh -F "$T/ssh_config" "node-$i" sh -s < "$script" > /dev/null 2>&1 & pids+=($!)
    else
      ssh -F "$T/ssh_config" "node-$i" true & pids+=($!)
    fi
  done
  wait "${pids[@]}"
}
cat src/probe-prelude.sh src/facts/probe.sh > "$T/probe.sh"

echo "$NODES nodes, --parallelism $NODES, $RUNS runs each (mean):"
printf '%-10s %-20s %-20s %-16s %-11s %-16s %-10s\n' "delay" "$NODES x ssh true (s)" "$NODES x ssh probe (s)" "pvegpu plan (s)" "plan / ssh" "${BEFORE:+plan before (s)}" "${BEFORE:+before / ssh}"
for d in "${DELAYS[@]}"; do
  P=$(port); python3 bench/delay_proxy.py "$P" "$SSHD_PORT" "$d" & PROXY=$!; sleep 0.3
  fleet "$NODES" "$P"
  s_total=0; p_total=0; b_total=0; r_total=0
  for _ in $(seq "$RUNS"); do
    g=$(now); ssh_all "$NODES" "$T/probe.sh"; h=$(now); r_total=$(echo "$r_total + $h - $g" | bc)
    a=$(now); ssh_all "$NODES"; b=$(now)
    "$BIN" -q -i "$T/inv-$NODES.toml" --json plan --phase host --parallelism "$NODES" > "$T/plan.json" 2>&1 || true; c=$(now)
    planned "$NODES" > /dev/null
    s_total=$(echo "$s_total + $b - $a" | bc); p_total=$(echo "$p_total + $c - $b" | bc)
    if [ -n "${BEFORE:-}" ]; then
      e=$(now); "$BEFORE" -q -i "$T/inv-$NODES.toml" plan --phase host > "$T/before.txt" 2>&1; f=$(now)
      [ "$(grep -c '^No changes.' "$T/before.txt")" = "$NODES" ] || { cat "$T/before.txt"; exit 1; }
      b_total=$(echo "$b_total + $f - $e" | bc)
    fi
  done
  s=$(echo "scale=3; $s_total / $RUNS" | bc); p=$(echo "scale=3; $p_total / $RUNS" | bc)
  before=""; before_ratio=""
  if [ -n "${BEFORE:-}" ]; then
    before=$(echo "scale=3; $b_total / $RUNS" | bc); before_ratio=$(echo "scale=2; $before / $s" | bc)
  fi
  r=$(echo "scale=3; $r_total / $RUNS" | bc)
  printf '%-10s %-20s %-20s %-16s %-11s %-16s %-10s\n' "${d} ms" "$s" "$r" "$p" "$(echo "scale=2; $p / $s" | bc)" "$before" "$before_ratio"
  kill $PROXY; wait $PROXY 2>/dev/null || true
done

echo
echo "$BIG nodes, --parallelism $PAR, no added delay:"
P=$(port); python3 bench/delay_proxy.py "$P" "$SSHD_PORT" 0 & PROXY=$!; sleep 0.3
fleet "$BIG" "$P"
for par in "$PAR" "$BIG"; do
  /usr/bin/time -f "%e %M" -o "$T/time.txt" "$BIN" -q -i "$T/inv-$BIG.toml" --json plan --phase host --parallelism "$par" > "$T/plan.json" 2>/dev/null || true
  planned=$(planned "$BIG")
  read -r secs rss < "$T/time.txt"
  printf '  --parallelism %-4s %s of %s nodes planned in %s s, peak RSS %s MiB\n' "$par" "$planned" "$BIG" "$secs" "$(echo "scale=1; $rss / 1024" | bc)"
done
kill $PROXY; wait $PROXY 2>/dev/null || true
