#!/usr/bin/env bash
# The fleet figures (issue 21, docs/benchmarks.md "Many hosts"): `get`
# through a recipient slot (an age X25519 identity) beside `get` through a
# key file on the same vault, and `receive` of a shipped vault beside
# `verify` of the same vault, at each N; the runs of every command are
# interleaved over ROUNDS rounds, as in targets.sh.
#
#   tests/bench/fleet.sh [N ...]          default: 1000 10000
#
# Environment: BENCH_DIR (scratch, default /tmp/runvault-fleet), ROUNDS
# (default 5), RUNS per command and round (default 5), RV (a binary to
# measure instead of a fresh static build), CARGO_TARGET_DIR.
#
# `receive` is measured as a host meets it after a rotation: the host has
# generation G installed (and its high-water mark), the staging directory
# holds G + 1 with the same salt; hyperfine's --prepare puts the host's
# directory and state back to G before each run (not timed).
set -euo pipefail
cd "$(dirname "$0")/../.."
NS=("$@")
((${#NS[@]})) || NS=(1000 10000)
WORK=${BENCH_DIR:-/tmp/runvault-fleet}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-5}
rm -rf "$WORK" && mkdir -p "$WORK/json" "$WORK/bin"
export RUNVAULT_CONFIG=$WORK/runvault.toml

source tests/bench/build.sh
stage_runvault "${RV:-$(build_runvault static)}" "$WORK/bin/runvault"
RV=$WORK/bin/runvault
printf 'new-password-value' >"$WORK/value.txt"

for n in "${NS[@]}"; do
  d=$WORK/n$n
  mkdir -p "$d"
  python3 tests/bench/gen.py plain "$n" "$d/services.yml"
  "$RV" keygen "$d/key" 2>/dev/null
  recipient=$("$RV" keygen --identity "$d/host.key" 2>/dev/null)
  admin="$RV --state-dir $d/admin-state --dir $d/source --key-file $d/key"
  $admin init 2>/dev/null
  $admin import "$d/services.yml" 2>/dev/null
  $admin key add recipient "$recipient" >/dev/null 2>&1
  # The host at generation G, then the source moves to G + 1.
  mkdir -p "$d/staging"
  cp "$d/source/vault.yml" "$d/source/vault.salt" "$d/staging/"
  # Installed where the runs install (the mark names the directory), then
  # kept as the base each run starts from.
  "$RV" --state-dir "$d/host-state" --dir "$d/host" --identity "$d/host.key" receive "$d/staging" >/dev/null 2>&1
  cp -a "$d/host" "$d/base" && cp -a "$d/host-state" "$d/base-state"
  $admin set SERVICE_1.PASSWORD --from-file "$WORK/value.txt" 2>/dev/null
  cp "$d/source/vault.yml" "$d/source/vault.salt" "$d/staging/"
done

commands() {
  local n=$1 d=$WORK/n$1
  local line=$'%s\x1f%s\x1f%s\n'
  local src="$RV --state-dir $d/admin-state --dir $d/source"
  printf "$line" get-keyfile "" "$src --key-file $d/key get SERVICE_$((n / 2)).PASSWORD"
  printf "$line" get-identity "" "$src --identity $d/host.key get SERVICE_$((n / 2)).PASSWORD"
  printf "$line" verify-identity "" "$src --identity $d/host.key verify"
  printf "$line" receive \
    "sh -c 'rm -rf $d/host $d/host-state && cp -a $d/base $d/host && cp -a $d/base-state $d/host-state'" \
    "$RV --state-dir $d/host-state --dir $d/host --identity $d/host.key receive $d/staging"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  for n in "${NS[@]}"; do
    while IFS=$'\x1f' read -r name prepare command; do
      args=(--style none -N --runs "$RUNS" --export-json "$WORK/json/$n.$name.$round.json")
      [[ -n $prepare ]] && args+=(--prepare "$prepare")
      hyperfine "${args[@]}" "$command" >/dev/null 2>>"$WORK/hyperfine.log"
    done < <(commands "$n")
  done
done

python3 - "$WORK/json" <<'EOF'
import glob, json, os, statistics, sys
times = {}
for path in glob.glob(os.path.join(sys.argv[1], "*.json")):
    n, name, _round, _ = os.path.basename(path).split(".")
    result = json.load(open(path))["results"][0]
    times.setdefault((int(n), name), []).extend(t * 1000 for t in result["times"])
names = ["get-keyfile", "get-identity", "verify-identity", "receive"]
print("| N | " + " | ".join(names) + " |")
print("|---:|" + "---:|" * len(names))
for n in sorted({n for (n, _) in times}):
    cells = ["%.2f (%.2f)" % (statistics.median(times[(n, m)]), min(times[(n, m)])) for m in names]
    print("| %d | %s |" % (n, " | ".join(cells)))
for n in sorted({n for (n, _) in times}):
    med = {m: statistics.median(times[(n, m)]) for m in names}
    print("N = %d: identity - key file = %+.2f ms; receive / verify = %.2fx"
          % (n, med["get-identity"] - med["get-keyfile"], med["receive"] / med["verify-identity"]))
EOF
