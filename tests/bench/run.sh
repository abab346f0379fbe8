#!/usr/bin/env bash
# Whole-process benchmark: runvault and its peers side by side on the same
# generated data (N services `SERVICE_i: {USERNAME, PASSWORD}`, 2N values),
# with hyperfine (Debian) and /usr/bin/time for peak memory.
#
#   tests/bench/run.sh [N ...]        default: 10 1000 10000 100000
#
# Environment: BENCH_DIR (scratch, default /tmp/runvault-bench; holds the
# data, the JSON of every hyperfine run and results.tsv), CARGO_TARGET_DIR,
# LINK (`static`, the default: the build the admin guide installs and jobs
# run; or `dynamic`; see build.sh), BEFORE_RV (an earlier runvault binary
# measured beside this one).
# Peers are measured when installed: age and ansible-vault
# (`apt-get install age ansible-core`), rops (`cargo install rops-cli`).
# Prints one markdown table per N (mean ms ± stddev, peak RSS in MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
NS=("$@")
((${#NS[@]})) || NS=(10 1000 10000 100000)
WORK=${BENCH_DIR:-/tmp/runvault-bench}
# The layout file `init` records as root (docs/admin-guide.md) stays in the
# benchmark's directory, never the host's /etc/runvault.
export RUNVAULT_CONFIG=$WORK/runvault.toml
mkdir -p "$WORK"
RESULTS=$WORK/results.tsv
: >"$RESULTS"

source tests/bench/build.sh
# Both runvault builds run from their own copies, cold (build.sh: stage_runvault).
mkdir -p "$WORK/bin"
stage_runvault "$(build_runvault "${LINK:-static}")" "$WORK/bin/runvault"
RV=$WORK/bin/runvault
if [[ -n ${BEFORE_RV:-} ]]; then
  stage_runvault "$BEFORE_RV" "$WORK/bin/before"
  BEFORE_RV=$WORK/bin/before
fi
HAS_REKEY=0
"$RV" rekey --help >/dev/null 2>&1 && HAS_REKEY=1

# hf TOOL N OP RUNS-ARGS... -- COMMAND: one hyperfine measurement, recorded.
hf() {
  local tool=$1 n=$2 op=$3
  shift 3
  local args=()
  while [[ $1 != -- ]]; do args+=("$1"); shift; done
  shift
  local json=$WORK/json/$tool.$n.$op.json
  mkdir -p "$WORK/json"
  hyperfine --style none "${args[@]}" --export-json "$json" "$@" >/dev/null 2>>"$WORK/hyperfine.log"
  jq -r --arg t "$tool" --arg n "$n" --arg o "$op" \
    '.results[0] | [$n, $t, $o, (.mean*1000), ((.stddev // 0)*1000), (.median*1000), (.min*1000)] | @tsv' "$json" >>"$RESULTS"
  printf '  %-22s %-8s %8.2f ms\n' "$tool" "$op" "$(tail -1 "$RESULTS" | cut -f4)" >&2
}

# mem TOOL N OP COMMAND...: peak resident memory of one run, recorded.
mem() {
  local tool=$1 n=$2 op=$3
  shift 3
  local kib
  kib=$(/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1)
  printf '%s\t%s\tmem:%s\t%s\t0\t0\t0\n' "$n" "$tool" "$op" "$((kib / 1024))" >>"$RESULTS"
}

runs_for() { # hyperfine run counts by size and cost
  local n=$1 slow=${2:-0}
  if ((slow)); then echo "--warmup 1 --runs 3"
  elif ((n >= 100000)); then echo "--warmup 1 --runs 5"
  elif ((n >= 10000)); then echo "--warmup 2 --runs 15"
  else echo "--warmup 5 --min-runs 40"; fi
}

for N in "${NS[@]}"; do
  echo "== N=$N" >&2
  D=$WORK/n$N
  rm -rf "$D" && mkdir -p "$D"
  python3 tests/bench/gen.py plain "$N" "$D/services.yml"
  printf 'new-password-value' >"$D/value.txt"
  GET=SERVICE_$((N / 2)).PASSWORD
  REFS=()
  for i in $(seq 0 19); do REFS+=("SERVICE_$((i * N / 20))"); done
  read -r -a FAST <<<"$(runs_for "$N")"
  read -r -a SLOW <<<"$(runs_for "$N" 1)"

  # --- runvault, key file (HKDF) and passphrase (Argon2id, defaults) ------
  "$RV" keygen "$D/key" 2>/dev/null
  printf 'correct horse battery staple\n' >"$D/pass" && chmod 600 "$D/pass"
  for mode in key pass; do
    if [[ $mode = key ]]; then
      secret=(--key-file "$D/key") tool="runvault (key file)" runs=("${FAST[@]}")
    else
      secret=(--passphrase-file "$D/pass") tool="runvault (passphrase)" runs=(--warmup 1 --runs 5)
    fi
    V="$D/vault-$mode"
    RVX=("$RV" --dir "$V" "${secret[@]}")
    FRESH=("$RV" --dir "$D/fresh" "${secret[@]}")
    "${RVX[@]}" init 2>/dev/null && "${RVX[@]}" import "$D/services.yml" 2>/dev/null
    hf "$tool" "$N" init+import "${runs[@]}" --prepare "rm -rf $D/fresh" -- \
      "${FRESH[*]} init && ${FRESH[*]} import $D/services.yml"
    hf "$tool" "$N" set "${runs[@]}" -N -- "${RVX[*]} set $GET --from-file $D/value.txt"
    hf "$tool" "$N" get "${runs[@]}" -N -- "${RVX[*]} get $GET"
    for i in "${!REFS[@]}"; do export "BENCH_REF_$i=DATAOPS_VAULT(${REFS[$i]}.PASSWORD)"; done
    hf "$tool" "$N" exec20 "${runs[@]}" -N -- "${RVX[*]} exec -- /bin/true"
    for i in "${!REFS[@]}"; do unset "BENCH_REF_$i"; done
    hf "$tool" "$N" export "${runs[@]}" -N -- "${RVX[*]} export"
    if ((HAS_REKEY)); then
      hf "$tool" "$N" rekey "${runs[@]}" -N -- "${RVX[*]} rekey"
    fi
    if [[ $mode = key ]]; then
      mem "$tool" "$N" get "${RVX[@]}" get "$GET"
      mem "$tool" "$N" set "${RVX[@]}" set "$GET" --from-file "$D/value.txt"
      mem "$tool" "$N" export "${RVX[@]}" export
      mem "$tool" "$N" rekey "${RVX[@]}" rekey
      rm -rf "$D/fresh" && "${FRESH[@]}" init 2>/dev/null
      mem "$tool" "$N" import "${FRESH[@]}" import "$D/services.yml"
    fi
  done

  # --- an earlier runvault build on the same vault (BEFORE_RV=path) --------
  if [[ -n ${BEFORE_RV:-} ]]; then
    B=("$BEFORE_RV" --dir "$D/vault-before" --key-file "$D/key")
    BF=("$BEFORE_RV" --dir "$D/fresh-before" --key-file "$D/key")
    "${B[@]}" init 2>/dev/null && "${B[@]}" import "$D/services.yml" 2>/dev/null
    hf "runvault before (key file)" "$N" init+import "${FAST[@]}" --prepare "rm -rf $D/fresh-before" -- \
      "${BF[*]} init && ${BF[*]} import $D/services.yml"
    hf "runvault before (key file)" "$N" set "${FAST[@]}" -N -- "${B[*]} set $GET --from-file $D/value.txt"
    hf "runvault before (key file)" "$N" get "${FAST[@]}" -N -- "${B[*]} get $GET"
    for i in "${!REFS[@]}"; do export "BENCH_REF_$i=DATAOPS_VAULT(${REFS[$i]}.PASSWORD)"; done
    hf "runvault before (key file)" "$N" exec20 "${FAST[@]}" -N -- "${B[*]} exec -- /bin/true"
    for i in "${!REFS[@]}"; do unset "BENCH_REF_$i"; done
    hf "runvault before (key file)" "$N" export "${FAST[@]}" -N -- "${B[*]} export"
    hf "runvault before (key file)" "$N" rekey "${FAST[@]}" -N -- "${B[*]} rekey"
    mem "runvault before (key file)" "$N" get "${B[@]}" get "$GET"
    mem "runvault before (key file)" "$N" export "${B[@]}" export
    mem "runvault before (key file)" "$N" rekey "${B[@]}" rekey
    rm -rf "$D/fresh-before" && "${BF[@]}" init 2>/dev/null
    mem "runvault before (key file)" "$N" import "${BF[@]}" import "$D/services.yml"
  fi

  # awk helpers over the plaintext YAML (what a shell user would write)
  # No early exit: the decrypting tool must read (and authenticate) it all.
  AWK_GET='$0==s":"{f=1;next} f&&$1=="PASSWORD:"{print $2; f=0}'
  AWK_SET='$0==s":"{f=1} f&&$1=="PASSWORD:"{print "  PASSWORD: " v; f=0; next} {print}'
  AWK_20='BEGIN{n=split(list,a," "); for(i=1;i<=n;i++) w[a[i]":"]=1} ($0 in w){f=1;next} f&&$1=="PASSWORD:"{print $2; f=0}'
  S=SERVICE_$((N / 2))

  # --- age: whole file, X25519 key file (no KDF), ChaCha20-Poly1305 -------
  if command -v age >/dev/null; then
    age-keygen -o "$D/age.key" 2>/dev/null
    age-keygen -o "$D/age2.key" 2>/dev/null
    R=$(age-keygen -y "$D/age.key") R2=$(age-keygen -y "$D/age2.key")
    A="age -d -i $D/age.key $D/s.age"
    age -e -r "$R" -o "$D/s.age" "$D/services.yml"
    hf "age (key file)" "$N" init+import "${FAST[@]}" -N -- "age -e -r $R -o $D/s2.age $D/services.yml"
    hf "age (key file)" "$N" set "${FAST[@]}" -- \
      "$A | awk -v s=$S -v v=new '$AWK_SET' | age -e -r $R -o $D/s.age.tmp && mv $D/s.age.tmp $D/s.age"
    hf "age (key file)" "$N" get "${FAST[@]}" -- "$A | awk -v s=$S '$AWK_GET'"
    hf "age (key file)" "$N" exec20 "${FAST[@]}" -- "$A | awk -v list='${REFS[*]}' '$AWK_20'"
    hf "age (key file)" "$N" export "${FAST[@]}" -N -- "$A"
    hf "age (key file)" "$N" rekey "${FAST[@]}" -- "$A | age -e -r $R2 -o $D/s3.age"
    mem "age (key file)" "$N" export age -d -i "$D/age.key" "$D/s.age"
  fi

  # --- ansible-vault: whole file and encrypt_string (PBKDF2 10k, AES-CTR) -
  if command -v ansible-vault >/dev/null; then
    echo pw1 >"$D/avpw" && echo pw2 >"$D/avpw2"
    AV="ansible-vault"
    P="--vault-password-file $D/avpw"
    $AV encrypt $P --output "$D/s.av" "$D/services.yml" 2>/dev/null
    DEC="$AV decrypt $P --output - $D/s.av"
    tool="ansible-vault (file)"
    hf "$tool" "$N" init+import "${SLOW[@]}" --prepare "rm -f $D/s2.av" -N -- "$AV encrypt $P --output $D/s2.av $D/services.yml"
    hf "$tool" "$N" set "${SLOW[@]}" -- \
      "$DEC | awk -v s=$S -v v=new '$AWK_SET' > $D/av.tmp && $AV encrypt $P --output $D/s.av.new $D/av.tmp && mv $D/s.av.new $D/s.av; rm -f $D/av.tmp"
    hf "$tool" "$N" get "${SLOW[@]}" -- "$DEC | awk -v s=$S '$AWK_GET'"
    hf "$tool" "$N" exec20 "${SLOW[@]}" -- "$DEC | awk -v list='${REFS[*]}' '$AWK_20'"
    hf "$tool" "$N" export "${SLOW[@]}" -N -- "$DEC"
    hf "$tool" "$N" rekey "${SLOW[@]}" --prepare "cp $D/s.av $D/rk.av" -N -- \
      "$AV rekey $P --new-vault-password-file $D/avpw2 $D/rk.av"
    mem "$tool" "$N" export $AV decrypt $P --output - "$D/s.av"

    tool="ansible-vault (encrypt_string)"
    /usr/bin/python3 tests/bench/gen.py ansible "$N" "$D/avpw" "$D/es.yml"
    blob() { # the !vault block of SERVICE.PASSWORD, as a vault file
      printf "awk -v s=%s: '\$0==s{f=1;next} f&&\$1==\"PASSWORD:\"{p=1;next} p&&/^    /{sub(/^    /,\"\");print;next} p{exit}' %s" "$1" "$D/es.yml"
    }
    hf "$tool" "$N" get "${SLOW[@]}" -- "$(blob "$S") | $AV decrypt $P --output - -"
    hf "$tool" "$N" set "${SLOW[@]}" -N -- "$AV encrypt_string $P --name PASSWORD new-password-value"
    loop=""
    for ref in "${REFS[@]}"; do loop+="$(blob "$ref") | $AV decrypt $P --output - - >/dev/null; "; done
    hf "$tool" "$N" exec20 --warmup 0 --runs 3 -- "$loop"
    if ((N <= 1000)); then
      # argparse pairs names and values in order: all names, then all values
      names=$(for i in $(seq 1 $((2 * N))); do printf ' -n K%s' "$i"; done)
      values=$(seq -s ' ' 1 $((2 * N)))
      hf "$tool" "$N" init+import --warmup 0 --runs 1 -N -- "$AV encrypt_string $P$names $values"
    fi
  fi

  # --- rops: SOPS-like, per-value AES-256-GCM, age X25519 key (no KDF) ----
  # rops reads a file argument only when stdin is a terminal: feed stdin.
  if command -v rops >/dev/null && [[ -f $D/age.key ]]; then
    export ROPS_AGE
    ROPS_AGE=$(grep '^AGE-SECRET-KEY' "$D/age.key")
    rops encrypt --age "$R" -f yaml <"$D/services.yml" >"$D/r.enc.yaml"
    tool="rops (age key)"
    RD="rops decrypt -f yaml < $D/r.enc.yaml"
    hf "$tool" "$N" init+import "${SLOW[@]}" -- "rops encrypt --age $R -f yaml < $D/services.yml > $D/r3.enc.yaml"
    hf "$tool" "$N" get "${SLOW[@]}" -- "$RD | awk -v s=$S '$AWK_GET'"
    hf "$tool" "$N" set "${SLOW[@]}" -- \
      "$RD | awk -v s=$S -v v=new '$AWK_SET' | rops encrypt --age $R -f yaml > $D/r.enc.new && mv $D/r.enc.new $D/r2.enc.yaml"
    hf "$tool" "$N" exec20 "${SLOW[@]}" -- "$RD | awk -v list='${REFS[*]}' '$AWK_20'"
    hf "$tool" "$N" export "${SLOW[@]}" -- "$RD"
    mem "$tool" "$N" export sh -c "rops decrypt -f yaml < $D/r.enc.yaml"
  fi
done

python3 tests/bench/table.py "$RESULTS"
