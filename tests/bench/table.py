#!/usr/bin/env python3
"""Prints tests/bench/run.sh's results.tsv as one markdown table per N:
one row per operation, one column per tool (median ms, with the fastest
run in parentheses; peak RSS in MiB for the peak rows; blank where a tool
was not measured), then the N = 100 000 / N = 10 000 ratios of medians.

The median, not the mean: on a shared VM a few runs stall for the
hypervisor and drag the mean (hyperfine's JSON keeps both)."""
import sys
from collections import OrderedDict

OPS = ["init+import", "set", "get", "exec20", "export", "rekey",
       "mem:get", "mem:set", "mem:export", "mem:rekey", "mem:import"]
LABELS = {
    "init+import": "init + import all",
    "set": "set one path",
    "get": "get one path",
    "exec20": "exec, 20 references",
    "export": "export all",
    "rekey": "rekey all",
    "mem:get": "peak RSS, get (MiB)",
    "mem:set": "peak RSS, set (MiB)",
    "mem:export": "peak RSS, export (MiB)",
    "mem:rekey": "peak RSS, rekey (MiB)",
    "mem:import": "peak RSS, import (MiB)",
}


def time(value):
    median, fastest = value[2], value[3]
    if median >= 10:
        return "%.1f (%.1f)" % (median, fastest)
    return "%.2f (%.2f)" % (median, fastest)


data = OrderedDict()
for line in open(sys.argv[1]):
    n, tool, op, *numbers = line.rstrip("\n").split("\t")
    data.setdefault(int(n), OrderedDict()).setdefault(tool, {})[op] = [float(x) for x in numbers]

for n, tools in data.items():
    names = list(tools)
    print("\n### N = %d services (%d values)\n" % (n, 2 * n))
    print("| operation | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for op in OPS:
        cells = []
        for tool in names:
            value = tools[tool].get(op)
            if value is None:
                cells.append("")
            elif op.startswith("mem:"):
                cells.append("%d" % value[0])
            else:
                cells.append(time(value))
        if any(cells):
            print("| %s | %s |" % (LABELS[op], " | ".join(cells)))

if 10000 in data and 100000 in data:
    small, large = data[10000], data[100000]
    names = [tool for tool in large if tool in small]
    print("\n### N = 100 000 / N = 10 000 (medians)\n")
    print("| operation | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for op in OPS:
        if op.startswith("mem:"):
            continue
        cells = []
        for tool in names:
            a, b = small[tool].get(op), large[tool].get(op)
            cells.append("%.1fx" % (b[2] / a[2]) if a and b else "")
        if any(cells):
            print("| %s | %s |" % (LABELS[op], " | ".join(cells)))
