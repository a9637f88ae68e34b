#!/usr/bin/env python3
"""Ray backend scaling on this machine: the sharded explorer and a native
campaign at 1 and 2 workers (needs the ``zdfuzz[ray]`` extra).

    python benchmarks/ray_scaling.py [--depth D] [--seconds S]

The explorer rows check that the counts equal the single-process explorer's;
the campaign rows count programs run per second of wall time over all
workers. Not part of ``run.py``: it needs Ray and at least two free cores.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

import zdfuzz
from zdfuzz import campaign, ray_backend

STANDARD = dict(types=["private", "fsdax", "generic", "p2pdma"], pgmaps=1, pages=4, cpus=2, ram=0, order=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    ray = ray_backend.connect("local", num_cpus=2)
    shape = zdfuzz.Shape(**STANDARD)
    t0 = time.perf_counter()
    one = zdfuzz.explore("e4", shape=shape, depth=args.depth, threads=1)
    print(f"native explorer, 1 thread: {one.states:,} states, {time.perf_counter() - t0:.2f} s wall")
    base = None
    for workers in (1, 2):
        r = ray_backend.explore("e4", shape, args.depth, workers=workers)
        assert (r.states, r.transitions) == (one.states, one.transitions)
        base = base or r.seconds
        print(
            f"ray explorer, {workers} worker(s): same counts, {r.seconds:.2f} s wall, speed-up x{base / r.seconds:.2f}"
        )
    rate1 = None
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as d:
            cfg = campaign.Config(rules="p20", seconds=args.seconds, jobs=workers, corpus=Path(d), seed=1, ray="local")
            c = campaign.run(cfg, Console(file=io.StringIO()))
            execs = sum(s.get("campaign_execs", 0) for k, s in c.stats.items() if k.startswith("ray-"))
            rate = execs / c.elapsed()
            rate1 = rate1 or rate
            print(f"ray campaign, {workers} worker(s): {rate:,.0f} programs/s (wall), x{rate / rate1:.2f}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
