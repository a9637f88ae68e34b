"""The fuzzing engines side by side: speed, coverage, minimizer, time to Q1.

    python benchmarks/engines.py [--quick]

Measured on this machine in one run, so the ratios (not the absolute
figures) are what to compare across machines:

- native engine: programs/s and model steps/s (programs of up to 64
  actions), and run_bytes on programs of exactly 64 actions called from
  Python (one Rust call per program: the ceiling for a Python driver);
- atheris: exec/s and libFuzzer's final ``cov:`` with the Rust core
  instrumented (SanitizerCoverage) and without (Python coverage only);
- hypothesis: state-machine steps/s;
- minimizer: seconds for reproducers of 200+ actions;
- time for each engine to find the seed's Q1 under p20 on all four types
  (I-L2 in memunmap_pages on a generic pgmap), over a few seeds.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import zdfuzz
from zdfuzz.corpus import Corpus, Signature

Q1 = Signature("I-L2", "memunmap_pages", "generic", "p20")
TYPES = ("private", "fsdax", "generic", "p2pdma")


def native_speed(seconds: float) -> tuple[float, float]:
    f = zdfuzz.NativeFuzzer("p20", seed=1, max_actions=64)
    t = time.monotonic()
    f.run(seconds=seconds)
    dt = time.monotonic() - t
    s = f.stats()
    return s["execs"] / dt, s["steps"] / dt


def run_bytes_64(seconds: float) -> float:
    m = zdfuzz.Machine(rules="e3")
    rng = random.Random(1)
    progs = []
    while len(progs) < 500:
        p = zdfuzz.Program.from_bytes(rng.randbytes(64 * 8), rules="e3")
        if len(p) >= 64:
            progs.append(p.select(list(range(64))).to_bytes())
    n, t = 0, time.monotonic()
    while time.monotonic() - t < seconds:
        for b in progs:
            m.run_bytes(b)
        n += len(progs)
    return n / (time.monotonic() - t)


def atheris_run(core: Path | None, runs: int) -> tuple[float, int]:
    from zdfuzz.drivers.sancov import check_atheris

    harness = Path(zdfuzz.__file__).parent / "drivers" / "atheris_harness.py"
    env = dict(os.environ, LD_PRELOAD=str(check_atheris()), ASAN_OPTIONS="detect_leaks=0",
               ZDFUZZ_HARNESS='{"rules": "p20", "types": ["private", "fsdax", "generic", "p2pdma"], "report": false}')
    env.pop("ZDFUZZ_SANCOV_CORE", None)
    if core is not None:
        env["ZDFUZZ_SANCOV_CORE"] = str(core)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    with tempfile.TemporaryDirectory() as q:
        t = time.monotonic()
        r = subprocess.run([str(harness), q, f"-runs={runs}", "-seed=1", "-detect_leaks=0", "-max_len=512",
                            "-len_control=0"], env=env, capture_output=True, text=True)
        dt = time.monotonic() - t
    cov = int(re.findall(r"cov: (\d+)", r.stderr)[-1])
    return runs / dt, cov


def hypothesis_speed(seconds: float) -> float:
    from zdfuzz.hypothesis import run_campaign

    steps = [0]
    with tempfile.TemporaryDirectory() as db:
        t = time.monotonic()
        run_campaign("p20", TYPES, seconds, 1, db, [Q1], lambda f, s: None,
                     lambda s: steps.__setitem__(0, int(s["steps"])))
        return steps[0] / (time.monotonic() - t)


def minimize_times(n: int) -> list[float]:
    out = []
    for seed in range(n):
        rng = random.Random(seed)
        while True:
            p = zdfuzz.Program.from_bytes(rng.randbytes(1600), rules="p20")
            if len(p) >= 200 and zdfuzz.Machine.for_program(p).run(p, trace=False).signature:
                break
        t = time.monotonic()
        zdfuzz.minimize(p)
        out.append(time.monotonic() - t)
    return out


def time_to_q1(engine: str, seed: int, limit: float) -> float | None:
    with tempfile.TemporaryDirectory() as d:
        from zdfuzz import campaign

        c = campaign.run(campaign.Config(engine=engine, seconds=limit, corpus=Path(d), seed=seed),
                         Console(file=open(os.devnull, "w")))
        for f in c.found:
            if f.signature == Q1:
                return f.seconds
        return None


def main() -> None:
    quick = "--quick" in sys.argv
    console = Console()
    seeds = range(1, 3 if quick else 6)
    rows: list[tuple[str, str, str]] = []

    ps, ss = native_speed(3)
    rows.append(("native engine (p20, 4 types, <=64 actions)", f"{ps:,.0f} programs/s, {ss / 1e6:.2f} M steps/s", "1.00"))
    rb = run_bytes_64(3)
    rows.append(("Machine.run_bytes from Python, 64 actions", f"{rb:,.0f} programs/s", f"{rb / ps:.2f}"))
    hs = hypothesis_speed(10)
    rows.append(("hypothesis state machine", f"{hs:,.0f} steps/s", f"{hs / ss:.4f} (of native steps/s)"))
    try:
        from zdfuzz.drivers.sancov import build_instrumented

        core = build_instrumented()
        ae, ac = atheris_run(core, 20000)
        pe, pc = atheris_run(None, 20000)
        rows.append(("atheris + Rust coverage, 20000 runs", f"{ae:,.0f} exec/s, cov {ac}", f"{ae / ps:.2f}"))
        rows.append(("atheris, Python coverage only", f"{pe:,.0f} exec/s, cov {pc}", f"cov x{ac / max(pc, 1):.0f}"))
    except Exception as e:  # noqa: BLE001 - a benchmark reports what it cannot measure
        rows.append(("atheris", f"not measured: {e}", "-"))
    mt = minimize_times(3 if quick else 10)
    rows.append(("minimize a 200+-action reproducer", f"median {statistics.median(mt) * 1000:.1f} ms, max {max(mt) * 1000:.1f} ms", "-"))
    for engine in ("native", "hypothesis", "atheris"):
        ts = [time_to_q1(engine, s, 60) for s in seeds]
        got = [t for t in ts if t is not None]
        rows.append((f"{engine}: time to Q1 (p20, 4 types, seeds {seeds.start}-{seeds.stop - 1})",
                     f"median {statistics.median(got):.1f}s, max {max(got):.1f}s, {len(got)}/{len(ts)} found in 60s"
                     if got else "not found in 60s", "-"))
    t = Table(title="zdfuzz engines")
    for col in ("what", "measured", "ratio to native"):
        t.add_column(col)
    for r in rows:
        t.add_row(*r)
    console.print(t)


if __name__ == "__main__":
    main()
