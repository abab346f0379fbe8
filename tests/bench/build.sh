# Builds the runvault binary a benchmark measures; sourced by targets.sh and
# run.sh (from the repository root).
#
#   build_runvault static    the glibc static-pie build that docs/jobs.md and
#                            docs/admin-guide.md install on hosts and mount
#                            into jobs (`--target` keeps RUSTFLAGS off build
#                            scripts and proc macros; its own target
#                            directory, shared with tests/engine/jobs_static.rs)
#   build_runvault dynamic   `cargo build --release`, as the README quick start
#
# Prints the binary's absolute path. CARGO_TARGET_DIR is honoured.
#
#   stage_runvault SRC DEST  copies a binary to where a benchmark runs it and
#                            drops the copy from the page cache, so that
#                            every build measured starts as an installed
#                            binary does after a reboot: read from disk by
#                            its first exec. How the binary's pages got into
#                            the page cache changes its start by up to
#                            0.5 ms on this machine (a file just written by
#                            `cp` is cached in large folios: `get` at N = 10
#                            takes 157 page faults; read back from disk 190,
#                            and the linker's output 179), which is more
#                            than most changes a before/after compares.

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

stage_runvault() {
  install -m 0755 "$1" "$2"
  python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)  # only clean pages leave the page cache
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$2"
}
