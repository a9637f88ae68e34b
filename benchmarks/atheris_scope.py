#!/usr/bin/env python3
"""What instrumenting only the model crate buys the atheris engine.

    python benchmarks/atheris_scope.py [--seconds S] [--rounds R]

Builds the extension twice with the same SanitizerCoverage flags: once the
way the atheris engine builds it (only the model crate, through the rustc
wrapper ``scripts/rustc-sancov.sh``; ``target/sancov``) and once with the
flags in RUSTFLAGS, which instruments every crate of the build (serde, toml,
pyo3: ``target/sancov-all``). Then runs the zdfuzz harness on each, and the
empty target, interleaved round by round, with the method and settings of
``benchmarks/engines.py`` (rate by difference of a 1 s and a 1 + S s run,
per CPU-second, median over rounds). Prints each rate, the ratios, the
counters each build gives libFuzzer and its final ``cov:``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import engines  # noqa: E402


def build_all_crates(root: Path) -> Path:
    """The extension with the coverage flags on every crate (RUSTFLAGS)."""
    from zdfuzz.drivers.sancov import SANCOV_RUSTFLAGS, host_triple

    triple = host_triple()
    env = dict(os.environ, RUSTFLAGS=" ".join(SANCOV_RUSTFLAGS), CARGO_TARGET_DIR=str(root / "target" / "sancov-all"))
    env.pop("RUSTC_WORKSPACE_WRAPPER", None)
    env.setdefault("PYO3_PYTHON", sys.executable)
    cmd = ["cargo", "build", "--quiet", "-p", "zdfuzz-python", "--lib", "--profile", "fuzz", "--target", triple]
    subprocess.run(cmd, cwd=root, env=env, check=True)
    return root / "target" / "sancov-all" / triple / "fuzz" / "lib_core.so"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    from zdfuzz.drivers.sancov import build_instrumented

    root = HERE.parent
    libs = {"model crate only": build_instrumented(root), "every crate": build_all_crates(root)}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in [*libs, "empty target"]}
    for r in range(a.rounds):
        for name in runs:
            target, lib = ("empty", None) if name == "empty target" else ("harness", libs[name])
            short = engines.atheris_once(target, 1, lib)
            long = engines.atheris_once(target, 1 + a.seconds, lib)
            rate = (long["execs"] - short["execs"]) / max(long["cpu_s"] - short["cpu_s"], 1e-3)
            runs[name].append({"rate": rate, "cov": long["cov"], "counters": long["counters"]})
            print(f"round {r}: {name}: {rate:,.0f} exec/s, cov {long['cov']}, counters {long['counters']}", flush=True)
    med = {k: statistics.median(x["rate"] for x in v) for k, v in runs.items()}
    empty = med["empty target"]
    for k, v in med.items():
        print(f"{k:18} {v:10,.0f} exec/s/core  {v / empty:6.1%} of the empty target")
    print(f"model crate only / every crate: x{med['model crate only'] / med['every crate']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
