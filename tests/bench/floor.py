#!/usr/bin/env python3
"""The machine's floor for a durable writer, timed in-process (no process
start): what the disk and the kernel charge for the commit that every
runvault writer makes, so that a writer's time can be read against the
disk it ran on. Used by tests/bench/targets.sh in each round.

  floor.py DIR RUNS OUT.json

Each run replaces DIR/target the way src/core/fs.rs does: create a
temp file beside it (O_EXCL, mode 0600), write 1 KiB, fsync it, rename it
over the target, fsync the directory. OUT.json has hyperfine's shape
({"results": [{"times": [seconds, ...]}]}), so targets.sh reads it as any
other cell.
"""
import json
import os
import sys
import time


def durable_replace(directory, payload):
    temp = os.path.join(directory, ".target.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, os.path.join(directory, "target"))
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def main():
    directory, runs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(directory, exist_ok=True)
    payload = os.urandom(1024)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        durable_replace(directory, payload)
        times.append(time.perf_counter() - start)
    with open(out, "w") as f:
        json.dump({"results": [{"times": times}]}, f)


if __name__ == "__main__":
    main()
