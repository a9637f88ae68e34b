#!/usr/bin/env python3
"""What durability costs a campaign: execs/s of the native engine with
every corpus entry made durable at once (two fsyncs each: the way campaigns
wrote their corpus before checkpoints) and with entries written in batches
at checkpoints (``zdfuzz.corpus.CHECKPOINT_SECONDS``), on this machine's
disk and on a simulated slow disk (each fsync takes ``--slow-ms`` longer, as
on a busy disk or a network filesystem). Findings are durable at once in
both modes.

    python benchmarks/durability.py [--seconds 10] [--slow-ms 10] [--rules p20]

Prints one row per (disk, mode): execs, execs/s, fsyncs, seconds spent in
fsync, and the batched/per-entry ratio for each disk. The four campaigns run
one after another with the same seed, each on a fresh corpus.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zdfuzz import campaign, corpus
from zdfuzz.term import SafeConsole


def measure(seconds: float, slow_ms: float, batched: bool, rules: str, seed: int) -> dict[str, Any]:
    real_fsync = os.fsync
    count = [0, 0.0]

    def fsync(fd: int) -> None:
        t0 = time.perf_counter()
        real_fsync(fd)
        if slow_ms:
            time.sleep(slow_ms / 1000)
        count[0] += 1
        count[1] += time.perf_counter() - t0

    saved = corpus.CHECKPOINT_SECONDS
    os.fsync = fsync  # type: ignore[assignment]
    corpus.CHECKPOINT_SECONDS = saved if batched else 0.0
    try:
        with tempfile.TemporaryDirectory(prefix="zdfuzz-durability-", dir=os.environ.get("TMPDIR")) as d:
            cfg = campaign.Config(rules=rules, seconds=seconds, corpus=Path(d) / "c", seed=seed)
            quiet = SafeConsole(file=open(os.devnull, "w"))  # noqa: SIM115
            c = campaign.run(cfg, quiet)
            execs = sum(s.get("execs", 0) for s in c.stats.values())
            elapsed = c.elapsed()
    finally:
        os.fsync = real_fsync
        corpus.CHECKPOINT_SECONDS = saved
    return {"execs": execs, "seconds": elapsed, "rate": execs / elapsed, "fsyncs": count[0], "fsync_s": count[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--slow-ms", type=float, default=10.0, help="extra milliseconds per fsync on the slow disk")
    ap.add_argument("--rules", default="p20")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t = Table(title=f"native campaign, {a.seconds:g}s each, rules {a.rules}: corpus durability")
    for col in ("disk", "corpus entries", "execs", "execs/s", "fsyncs", "s in fsync", "batched / per-entry"):
        t.add_column(col, justify="right")
    for disk, slow in (("this disk", 0.0), (f"slow (+{a.slow_ms:g} ms/fsync)", a.slow_ms)):
        per = measure(a.seconds, slow, False, a.rules, a.seed)
        bat = measure(a.seconds, slow, True, a.rules, a.seed)
        for mode, r in (("durable each", per), (f"batched ({corpus.CHECKPOINT_SECONDS:g} s)", bat)):
            ratio = f"{bat['rate'] / per['rate']:.2f}x" if r is bat and per["rate"] else ""
            t.add_row(
                disk, mode, f"{int(r['execs']):,}", f"{r['rate']:,.0f}", str(r["fsyncs"]), f"{r['fsync_s']:.2f}", ratio
            )
    Console().print(t)


if __name__ == "__main__":
    main()
