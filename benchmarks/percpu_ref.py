#!/usr/bin/env python3
"""get+put throughput: percpu_ref per-CPU slots vs one shared atomic counter.

    python benchmarks/percpu_ref.py [--pairs N] [--rounds R]

Both variants (and the ref in atomic mode, i.e. a killed pgmap's users) run
in the same process, interleaved round by round; the table reports medians and
the ratio per-CPU / shared atomic. Expected at 2 threads: >= 5x — the reason
the kernel made pgmap->ref a percpu_ref.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from rich.console import Console
from rich.table import Table

from zdfuzz import _core


def run(pairs: int, rounds: int, threads: list[int]) -> list[dict[str, float]]:
    rows = []
    for t in threads:
        (pc, pc_ns), (sh, sh_ns), (am, am_ns) = _core.bench_percpu_ref(t, pairs, rounds)
        rows.append(
            {
                "threads": t,
                "percpu_pairs_per_s": pc,
                "percpu_ns_per_pair": pc_ns,
                "shared_atomic_pairs_per_s": sh,
                "shared_atomic_ns_per_pair": sh_ns,
                "atomic_mode_pairs_per_s": am,
                "ratio_percpu_vs_shared": pc / sh,
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2_000_000, help="get+put pairs per thread per round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median reported)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    rows = run(args.pairs, args.rounds, [1, 2])
    table = Table(title=f"percpu_ref get+put ({args.pairs:,} pairs/thread, median of {args.rounds})")
    for col in (
        "threads",
        "per-CPU Mpairs/s",
        "shared atomic Mpairs/s",
        "atomic-mode ref Mpairs/s",
        "per-CPU / shared",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["threads"]),
            f"{r['percpu_pairs_per_s'] / 1e6:.1f}",
            f"{r['shared_atomic_pairs_per_s'] / 1e6:.1f}",
            f"{r['atomic_mode_pairs_per_s'] / 1e6:.1f}",
            f"{r['ratio_percpu_vs_shared']:.1f}x",
        )
    Console().print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": {
                        "cpus": os.cpu_count(),
                        "platform": platform.platform(),
                        "python": sys.version.split()[0],
                    },
                    "results": rows,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
