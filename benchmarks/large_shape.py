#!/usr/bin/env python3
"""The byte decoder on large shapes: one ``Machine.run_bytes`` of 4 KiB of
random bytes under e3, on the default shape, 4 pgmaps x 1024 pages, and the
largest shape ``Shape`` accepts (every field at its maximum), side by side.

    python benchmarks/large_shape.py [--inputs 5] [--seed 1]

The decoder tries at most ``DECODE_PROBES`` (4096) operand combinations per
kind for one action (rust/core/src/program/bytes.rs); before that bound one
input on the largest shape took ~30 s. Prints ms per input, actions per
input, microseconds per action and the ratio to the default shape.
"""

from __future__ import annotations

import argparse
import random
import time

from rich.console import Console
from rich.table import Table

import zdfuzz

SHAPES = {
    "default (4 types, 1 pgmap x 4 pages)": {},
    "4 pgmaps x 1024 pages": dict(pgmaps=4, pages=1024),
    "largest (every field at its maximum)": dict(
        pgmaps=4, pages=1024, cpus=8, procs=4, addrs=1024, files=4, file_pages=8, tasks=8, ram=1024, order=9
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    inputs = [bytes(rng.randrange(256) for _ in range(4096)) for _ in range(a.inputs)]
    t = Table(title=f"run_bytes, 4 KiB of random bytes, e3, {a.inputs} inputs per shape")
    for col in ("shape", "ms / input", "actions / input", "us / action", "x default (per action)"):
        t.add_column(col, justify="right")
    base = None
    for name, fields in SHAPES.items():
        m = zdfuzz.Machine(rules="e3", shape=zdfuzz.Shape(**fields))
        steps, t0 = 0, time.process_time()
        for data in inputs:
            steps += m.run_bytes(data).steps
        dt = time.process_time() - t0
        per_action = dt / max(steps, 1)
        base = base or per_action
        t.add_row(
            name,
            f"{dt * 1000 / len(inputs):.1f}",
            f"{steps / len(inputs):.0f}",
            f"{per_action * 1e6:.1f}",
            f"{per_action / base:.0f}x",
        )
    Console().print(t)


if __name__ == "__main__":
    main()
