#!/usr/bin/env python3
"""Explorer speed: distinct states per second per core (target: 1,000,000, benchmarks/README.md).

    python benchmarks/explore.py [--depth D] [--exact-depth D] [--json FILE]

Standard configuration: rules e4, one pgmap of each of the four types, 4 pages
per pgmap, 2 CPUs, no system RAM or huge pages (ram=0, order=0; the other
shape fields at their defaults: 2 processes x 4 addresses, 2 files x 2 pages,
4 task slots). Every row is measured in this one run:

* the explorer with the symmetry reduction and without it (exact states, at a
  smaller depth: the exact state space is ~100x larger), on 1 thread and on
  every core;
* the machine itself: ``Machine.run_bytes`` on random byte programs (one call
  per program, drain included) — the speed a fuzzing engine gets from the
  same model, for scale.

"per core" divides by the CPU time the process used (user + system, all
threads), not by wall time, so other processes sharing the machine do not
distort it; wall-clock rates are shown too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

import zdfuzz

TARGET = 1_000_000
RULES = "e4"
STANDARD: dict[str, Any] = dict(
    types=["private", "fsdax", "generic", "p2pdma"], pgmaps=1, pages=4, cpus=2, ram=0, order=0
)
#: the standard configuration's one known violation, reached at depth 6: the
#: device-private eviction's rmap walk of an anon_vma a process exit freed
#: (docs/findings.md F5). The benchmark measures the search past it.
IGNORE = ["I-M10 migrate_device_range private"]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def explore_row(depth: int, threads: int, symmetry: bool) -> dict[str, Any]:
    c0, w0 = cpu_seconds(), time.perf_counter()
    r = zdfuzz.explore(
        RULES, shape=zdfuzz.Shape(**STANDARD), depth=depth, threads=threads, symmetry=symmetry, ignore=IGNORE
    )
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    assert r.complete and r.counterexample is None, r.summary()
    return {
        "rules": RULES,
        "reduction": "symmetry" if symmetry else "none (exact)",
        "depth": depth,
        "threads": r.threads,
        "states": r.states,
        "transitions": r.transitions,
        "wall_s": wall,
        "cpu_s": cpu,
        "states_per_cpu_s": r.states / cpu,
        "states_per_wall_s": r.states / wall,
        "transitions_per_cpu_s": r.transitions / cpu,
    }


def deepest_in(budget: float, symmetry: bool, por: bool) -> int:
    """The deepest depth completely explored in ``budget`` seconds (1 thread).
    Sleep sets cannot be combined with ignored signatures, so both searches
    stop at the known violation's depth (6), beyond what either completes in
    the budgets used here."""
    r = zdfuzz.explore(
        RULES, shape=zdfuzz.Shape(**STANDARD), depth=64, threads=1, symmetry=symmetry, por=por, max_seconds=budget
    )
    return int(r.depth_reached)


def por_compare(depth: int, budget: float) -> dict[str, Any]:
    """Partial-order reduction (sleep sets) against the plain search, side by
    side on one thread: the same states (checked), transitions and CPU time as
    ratios, and the deepest depth each completes in ``budget`` seconds."""
    out: dict[str, Any] = {"rules": RULES, "depth": depth, "budget_s": budget}
    for por in (False, True):
        c0 = cpu_seconds()
        r = zdfuzz.explore(RULES, shape=zdfuzz.Shape(**STANDARD), depth=depth, threads=1, por=por)
        cpu = cpu_seconds() - c0
        key = "por" if por else "plain"
        out[key] = {"states": r.states, "transitions": r.transitions, "slept": r.slept, "cpu_s": cpu}
        out[key]["deepest_in_budget"] = deepest_in(budget, True, por)
    assert out["por"]["states"] == out["plain"]["states"], "sleep sets never change the states"
    out["transitions_ratio"] = out["por"]["transitions"] / out["plain"]["transitions"]
    out["cpu_ratio"] = out["por"]["cpu_s"] / max(out["plain"]["cpu_s"], 1e-9)
    out["depth_gained"] = out["por"]["deepest_in_budget"] - out["plain"]["deepest_in_budget"]
    return out


def machine_row(seconds: float) -> dict[str, Any]:
    m = zdfuzz.Machine(rules=RULES, shape=zdfuzz.Shape(**STANDARD))
    rng = random.Random(8)
    programs = [bytes(rng.randrange(256) for _ in range(400)) for _ in range(500)]
    steps = runs = 0
    c0, w0 = cpu_seconds(), time.perf_counter()
    while time.perf_counter() - w0 < seconds:
        for p in programs:
            steps += m.run_bytes(p).steps
            runs += 1
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    return {
        "what": "Machine.run_bytes (random programs, drain included)",
        "threads": 1,
        "programs": runs,
        "actions": steps,
        "wall_s": wall,
        "cpu_s": cpu,
        "actions_per_cpu_s": steps / cpu,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=6, help="depth with the symmetry reduction (6: ~4.3M states, ~25 s)")
    ap.add_argument("--exact-depth", type=int, default=4, help="depth without it")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    for symmetry, depth in ((True, args.depth), (False, args.exact_depth)):
        for threads in sorted({1, cores}):
            rows.append(explore_row(depth, threads, symmetry))
    machine = machine_row(3.0)

    console = Console(width=max(Console().width, 120))
    table = Table(title=f"explorer, e4, standard shape ({cores} cores; per core = per CPU-second used)")
    for col in (
        "reduction",
        "depth",
        "threads",
        "states",
        "transitions",
        "wall s",
        "states/s/core",
        "vs target",
        "states/s (wall)",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["reduction"],
            str(r["depth"]),
            str(r["threads"]),
            f"{r['states']:,}",
            f"{r['transitions']:,}",
            f"{r['wall_s']:.2f}",
            f"{r['states_per_cpu_s']:,.0f}",
            f"{r['states_per_cpu_s'] / TARGET:.2f}x",
            f"{r['states_per_wall_s']:,.0f}",
        )
    console.print(table)
    console.print(
        f"machine alone: {machine['actions_per_cpu_s']:,.0f} actions/s/core in run_bytes "
        f"({machine['programs']:,} programs); the explorer does "
        f"{rows[0]['transitions_per_cpu_s']:,.0f} transitions/s/core "
        f"({rows[0]['transitions'] / rows[0]['states']:.1f} per distinct state)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"platform": platform.platform(), "cores": cores, "explore": rows, "machine": machine}, f, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
