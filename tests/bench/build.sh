# Builds the runvault binary a benchmark measures; sourced by targets.sh and
# run.sh (from the repository root).
#
#   build_runvault static    the glibc static-pie build that docs/jobs.md and
#                            docs/admin-guide.md install on hosts and mount
#                            into jobs (`--target` keeps RUSTFLAGS off build
#                            scripts and proc macros; its own target
#                            directory, shared with tests/jobs_static.rs)
#   build_runvault dynamic   `cargo build --release`, as the README quick start
#
# Prints the binary's absolute path. CARGO_TARGET_DIR is honoured.

BENCH_TRIPLE=x86_64-unknown-linux-gnu

build_runvault() {
  local target=${CARGO_TARGET_DIR:-target}
  [[ $target = /* ]] || target=$PWD/$target
  case $1 in
    static)
      RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR=$target/static \
        cargo build --release --quiet --bin runvault --target "$BENCH_TRIPLE" >&2
      echo "$target/static/$BENCH_TRIPLE/release/runvault"
      ;;
    dynamic)
      CARGO_TARGET_DIR=$target cargo build --release --quiet --bin runvault >&2
      echo "$target/release/runvault"
      ;;
    *)
      echo "build_runvault: static or dynamic, not '$1'" >&2
      return 2
      ;;
  esac
}
