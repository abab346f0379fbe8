#!/usr/bin/env python3
"""Prints tests/bench/run.sh's results.tsv as one markdown table per N:
one row per operation, one column per tool (mean ms ± stddev; peak RSS in
MiB for the mem: rows; blank where a tool was not measured)."""
import sys
from collections import OrderedDict

OPS = ["init+import", "set", "get", "exec20", "export", "rekey", "mem:get", "mem:set", "mem:export"]
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
}

data = OrderedDict()
for line in open(sys.argv[1]):
    n, tool, op, mean, sd = line.rstrip("\n").split("\t")
    data.setdefault(int(n), OrderedDict()).setdefault(tool, {})[op] = (float(mean), float(sd))

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
                cells.append("%.1f ± %.1f" % value if value[0] >= 10 else "%.2f ± %.2f" % value)
        if any(cells):
            print("| %s | %s |" % (LABELS[op], " | ".join(cells)))
