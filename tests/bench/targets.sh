#!/usr/bin/env bash
# runvault against its performance targets (docs/benchmarks.md), with the
# runs of every workload and size interleaved: this VM's speed drifts from
# minute to minute, so workloads measured one after the other (run.sh)
# can differ by a third for nothing; here each round runs every command a
# few times, and the medians over all rounds are compared.
#
#   tests/bench/targets.sh [N ...]        default: 10 10000 100000
#
# Environment: BENCH_DIR (scratch, default /tmp/runvault-targets),
# ROUNDS (default 8), RUNS per command and round (default 3),
# CARGO_TARGET_DIR, LINK (the fresh builds measured: `static`, the binary
# the admin guide installs and jobs run, `dynamic`, the quick start's
# `cargo build --release`, or `both`, the default; see build.sh),
# RV (a binary to measure instead of fresh builds), BEFORE_RV (an earlier
# binary, measured in the same rounds). Prints the table of medians
# (fastest run), the N = 100 000 / N = 10 000 ratios and the machine's
# floor, measured in the same rounds: starting a process (`/bin/true`) and
# one durable replace of a small file in the benchmark's directory
# (floor.py), so that a writer's time can be read against the disk it met.
set -euo pipefail
cd "$(dirname "$0")/../.."
NS=("$@")
((${#NS[@]})) || NS=(10 10000 100000)
WORK=${BENCH_DIR:-/tmp/runvault-targets}
ROUNDS=${ROUNDS:-8}
RUNS=${RUNS:-3}
rm -rf "$WORK" && mkdir -p "$WORK/json" "$WORK/floor"
# The layout file `init` records as root (docs/admin-guide.md) stays in the
# benchmark's directory, never the host's /etc/runvault.
export RUNVAULT_CONFIG=$WORK/runvault.toml

source tests/bench/build.sh
BUILDS=()
if [[ -n ${RV:-} ]]; then
  BUILDS+=("new=$RV")
else
  case ${LINK:-both} in
    both) BUILDS+=("static=$(build_runvault static)" "dynamic=$(build_runvault dynamic)") ;;
    *) BUILDS+=("${LINK}=$(build_runvault "$LINK")") ;;
  esac
fi
[[ -n ${BEFORE_RV:-} ]] && BUILDS+=("before=$BEFORE_RV")
# Every build runs from its own copy, cold (build.sh: stage_runvault).
mkdir -p "$WORK/bin"
for i in "${!BUILDS[@]}"; do
  name=${BUILDS[i]%%=*}
  stage_runvault "${BUILDS[i]#*=}" "$WORK/bin/$name"
  BUILDS[i]=$name=$WORK/bin/$name
done
RV=${BUILDS[0]#*=}
printf 'new-password-value' >"$WORK/value.txt"

# The commands of one size and build, as NAME, PREPARE, COMMAND lines
# separated by the unit separator (a tab would collapse empty fields).
commands() {
  local n=$1 build=$2 bin=$3
  local d=$WORK/n$n key=$WORK/n$n/key
  local v="$d/vault-$build" f="$d/fresh-$build"
  local rv="$bin --dir $v --key-file $key" fresh="$bin --dir $f --key-file $key"
  local line=$'%s\x1f%s\x1f%s\n'
  ((n == 10)) && printf "$line" init "rm -rf $f" "$fresh init"
  printf "$line" init+import "rm -rf $f" "sh -c '$fresh init 2>/dev/null && $fresh import $d/services.yml'"
  printf "$line" set "" "$rv set SERVICE_$((n / 2)).PASSWORD --from-file $WORK/value.txt"
  printf "$line" get "" "$rv get SERVICE_$((n / 2)).PASSWORD"
  printf "$line" exec20 "" "$rv exec -- /bin/true"
  printf "$line" export "" "$rv export"
  printf "$line" rekey "" "$rv rekey"
}

for n in "${NS[@]}"; do
  d=$WORK/n$n
  mkdir -p "$d"
  python3 tests/bench/gen.py plain "$n" "$d/services.yml"
  "$RV" keygen "$d/key" 2>/dev/null
  for build in "${BUILDS[@]}"; do
    bin=${build#*=}
    "$bin" --dir "$d/vault-${build%%=*}" --key-file "$d/key" init 2>/dev/null
    "$bin" --dir "$d/vault-${build%%=*}" --key-file "$d/key" import "$d/services.yml" 2>/dev/null
  done
done

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  hyperfine --style none -N --runs "$RUNS" --export-json "$WORK/floor/start.$round.json" \
    /bin/true >/dev/null 2>>"$WORK/hyperfine.log"
  python3 tests/bench/floor.py "$WORK/floor/dir" "$RUNS" "$WORK/floor/replace.$round.json"
  for n in "${NS[@]}"; do
    # exec resolves 20 references spread over the file.
    for i in $(seq 0 19); do export "BENCH_REF_$i=DATAOPS_VAULT(SERVICE_$((i * n / 20)).PASSWORD)"; done
    for build in "${BUILDS[@]}"; do
      while IFS=$'\x1f' read -r name prepare command; do
        args=(--style none --runs "$RUNS" --export-json "$WORK/json/$n.${build%%=*}.$name.$round.json")
        [[ -n $prepare ]] && args+=(--prepare "$prepare")
        # -N (no shell, no shell-start correction) but for the one that needs sh.
        [[ $command = sh\ * ]] || args+=(-N)
        hyperfine "${args[@]}" "$command" >/dev/null 2>>"$WORK/hyperfine.log"
      done < <(commands "$n" "${build%%=*}" "${build#*=}")
    done
  done
done

python3 - "$WORK/json" "$WORK/floor" <<'EOF'
import glob, json, os, statistics, sys
times = {}
for path in glob.glob(os.path.join(sys.argv[1], "*.json")):
    n, build, name, _round, _ = os.path.basename(path).split(".")
    result = json.load(open(path))["results"][0]
    times.setdefault((int(n), build, name), []).extend(t * 1000 for t in result["times"])
names = ["init", "init+import", "set", "get", "exec20", "export", "rekey"]
order = ["new", "static", "dynamic", "before"]
builds = sorted({b for (_, b, _) in times}, key=order.index)
sizes = sorted({n for (n, _, _) in times})
cell = lambda ts: "%.2f (%.2f)" % (statistics.median(ts), min(ts)) if ts else ""
print("| N | operation | " + " | ".join("%s: median (fastest), ms" % b for b in builds) + " | runs |")
print("|---:|---|" + "---:|" * len(builds) + "---:|")
for n in sizes:
    for name in names:
        row = [times.get((n, b, name), []) for b in builds]
        if any(row):
            print("| %d | %s | %s | %d |" % (n, name, " | ".join(cell(ts) for ts in row), len(row[0])))
if 10000 in sizes and 100000 in sizes:
    print("\n| operation | " + " | ".join("%s: 100 000 / 10 000" % b for b in builds) + " |")
    print("|---|" + "---:|" * len(builds))
    for name in names[1:]:
        ratios = []
        for b in builds:
            small, large = times.get((10000, b, name)), times.get((100000, b, name))
            ratios.append("%.1fx" % (statistics.median(large) / statistics.median(small)) if small and large else "")
        print("| %s | %s |" % (name, " | ".join(ratios)))
floor = {}
for path in glob.glob(os.path.join(sys.argv[2], "*.json")):
    name = os.path.basename(path).split(".")[0]
    floor.setdefault(name, []).extend(t * 1000 for t in json.load(open(path))["results"][0]["times"])
print("\n| the machine's floor, same rounds | median (fastest), ms | runs |")
print("|---|---:|---:|")
labels = {"start": "process start (`/bin/true`)", "replace": "durable replace of 1 KiB (floor.py, in-process)"}
for name in ["start", "replace"]:
    if floor.get(name):
        print("| %s | %s | %d |" % (labels[name], cell(floor[name]), len(floor[name])))
EOF
