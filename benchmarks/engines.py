#!/usr/bin/env python3
"""The fuzzing engines side by side: speed, coverage, minimizer, time to Q1.

    python benchmarks/engines.py [--quick]

Measured on this machine in one run, so the ratios (not the absolute
figures) are what to compare across machines:

- native engine: programs/s and model steps/s (programs of up to 64
  actions), and run_bytes on programs of exactly 64 actions called from
  Python (one Rust call per program: the ceiling for a Python driver);
- atheris: exec/s and libFuzzer's final ``cov:`` on the zdfuzz harness with
  the Rust core instrumented (SanitizerCoverage) and without (Python
  coverage only), and on an empty target (``atheris_empty.py``) with the
  same settings: the ceiling for any atheris harness;
- hypothesis: state-machine steps/s;
- minimizer: seconds for reproducers of exactly 200 actions;
- time for each engine to find the seed's Q1 under p20 on all four types
  (I-L2 in memunmap_pages on a generic pgmap), over a few seeds.

Each measurement is a function returning a dict; ``benchmarks/run.py``
calls them. Rates are per CPU-second of the measured process ("per core"):
the development machine is shared, and CPU time is what another process
cannot take away (wall-clock rates are in the dicts too).
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import zdfuzz
from zdfuzz.corpus import Signature

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core_speed  # noqa: E402
import time_to_bug  # noqa: E402

Q1 = Signature("I-L2", "memunmap_pages", "generic", "p20")
TYPES = ("private", "fsdax", "generic", "p2pdma")
HERE = Path(__file__).resolve().parent
EMPTY_TARGET = HERE / "atheris_empty.py"


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


# -- native -----------------------------------------------------------------------


def native_speed(seconds: float, rules: str = "p20", max_actions: int = 64, seed: int = 1) -> dict[str, Any]:
    """The native engine as ``zdfuzz fuzz`` runs it (all four types, swarm,
    programs of up to ``max_actions`` actions), on one thread."""
    f = zdfuzz.NativeFuzzer(rules, seed=seed, max_actions=max_actions)
    c0, w0 = cpu_seconds(), time.perf_counter()
    f.run(seconds=seconds)
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    s = f.stats()
    return {
        "rules": rules,
        "types": list(TYPES),
        "max_actions": max_actions,
        "seed": seed,
        "execs": s["execs"],
        "steps": s["steps"],
        "wall_s": wall,
        "cpu_s": cpu,
        "programs_per_cpu_s": s["execs"] / cpu,
        "programs_per_wall_s": s["execs"] / wall,
        "steps_per_cpu_s": s["steps"] / cpu,
        "steps_per_program": s["steps"] / max(s["execs"], 1),
        "corpus": s["corpus"],
        "edges": s["edges"],
    }


def run_bytes_speed(seconds: float, actions: int = 64, rules: str = "e3") -> dict[str, Any]:
    """``Machine.run_bytes`` from Python on programs of exactly ``actions``
    actions: one Rust call per program, the ceiling for a Python driver."""
    programs = core_speed.exact_programs(actions, 500, rules)
    m = zdfuzz.Machine(rules=rules)
    n = steps = 0
    c0, w0 = cpu_seconds(), time.perf_counter()
    while time.perf_counter() - w0 < seconds:
        for b in programs:
            steps += m.run_bytes(b).steps
        n += len(programs)
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    return {
        "rules": rules,
        "actions": actions,
        "programs": n,
        "steps": steps,
        "wall_s": wall,
        "cpu_s": cpu,
        "programs_per_cpu_s": n / cpu,
        "steps_per_program": steps / n,
    }


# -- atheris ----------------------------------------------------------------------

ATHERIS_TARGETS = {
    "harness": "zdfuzz harness, Rust core instrumented (what `zdfuzz fuzz --engine atheris` runs)",
    "harness-python-cov": "zdfuzz harness, normal extension (no Rust coverage: libFuzzer sees Python only)",
    "empty": "near-empty Python TestOneInput (benchmarks/atheris_empty.py)",
}


def atheris_command(target: str, queue: str, seconds: int, core: Path | None) -> tuple[list[str], dict[str, str]]:
    """libFuzzer's command line and environment for ``target``: the settings
    ``zdfuzz fuzz --engine atheris`` uses (campaign.harness_command), with a
    time budget instead of known signatures. Every target gets them all,
    the same preload included, so only the code under test differs."""
    from zdfuzz.drivers.sancov import check_atheris

    script = EMPTY_TARGET if target == "empty" else Path(zdfuzz.__file__).parent / "drivers" / "atheris_harness.py"
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(check_atheris())
    env["ASAN_OPTIONS"] = "detect_leaks=0"
    # "report": false never raises: a run measures speed, it does not stop at
    # the first violation
    env["ZDFUZZ_HARNESS"] = json.dumps({"rules": "p20", "types": list(TYPES), "report": False})
    env.pop("ZDFUZZ_SANCOV_CORE", None)
    if target == "harness":
        assert core is not None
        env["ZDFUZZ_SANCOV_CORE"] = str(core)
    # the interpreter runs the script (not its shebang): same Python for all
    cmd = [
        sys.executable,
        str(script),
        queue,
        "-seed=1",
        "-detect_leaks=0",
        "-rss_limit_mb=4096",
        "-max_len=512",
        "-len_control=0",
        "-print_final_stats=1",
        f"-max_total_time={seconds}",
    ]
    return cmd, env


def atheris_once(target: str, seconds: int, core: Path | None) -> dict[str, Any]:
    """One libFuzzer run of ``seconds`` on an empty queue: executions,
    final coverage, wall and CPU seconds (startup included)."""
    with tempfile.TemporaryDirectory() as q:
        cmd, env = atheris_command(target, q, seconds, core)
        c0, w0 = cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace")
        wall, cpu = time.perf_counter() - w0, cpu_seconds(resource.RUSAGE_CHILDREN) - c0
    units = re.findall(r"stat::number_of_executed_units: (\d+)", r.stderr) or re.findall(r"Done (\d+) runs", r.stderr)
    if not units:
        tail = "\n".join(r.stderr.splitlines()[-15:])
        raise RuntimeError(f"libFuzzer on {target} printed no final stats (exit {r.returncode}):\n{tail}")
    cov = re.findall(r"cov: (\d+)", r.stderr)
    modules = re.findall(r"Loaded (\d+) modules\s+\((\d+) inline 8-bit counters\)", r.stderr)
    # the corpus at the end: the inputs libFuzzer mutates. Its mean size says
    # how long the programs a harness runs are (coverage feedback lets them grow)
    corp = re.findall(r"corp: (\d+)/(\d+)(b|Kb|Mb)", r.stderr)
    mean_input = None
    if corp:
        n, size, unit = corp[-1]
        mean_input = int(size) * {"b": 1, "Kb": 1 << 10, "Mb": 1 << 20}[unit] / max(int(n), 1)
    return {
        "execs": int(units[-1]),
        "cov": int(cov[-1]) if cov else 0,
        "wall_s": wall,
        "cpu_s": cpu,
        "counters": sum(int(c) for _m, c in modules),
        "corpus_mean_bytes": mean_input,
    }


def atheris_compare(seconds: int, rounds: int, targets: tuple[str, ...] = ("harness", "empty")) -> dict[str, Any]:
    """exec/s of each target, measured back to back and interleaved round
    by round. A run's fixed cost (Python start-up, imports, libFuzzer's
    initialisation) is taken out by difference: each round runs every target
    for 1 s and for 1 + ``seconds`` s, and the rate is (extra executions) /
    (extra CPU seconds). The median over rounds is reported."""
    from zdfuzz.drivers.sancov import build_instrumented

    core = build_instrumented() if "harness" in targets else None
    per: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    for _ in range(rounds):
        for t in targets:
            short = atheris_once(t, 1, core)
            long = atheris_once(t, 1 + seconds, core)
            extra = long["execs"] - short["execs"]
            extra_cpu, extra_wall = long["cpu_s"] - short["cpu_s"], long["wall_s"] - short["wall_s"]
            if extra > 0 and extra_cpu > 0 and extra_wall > 0:
                method = "difference"
                per_cpu, per_wall = extra / extra_cpu, extra / extra_wall
            else:
                # On a loaded machine the short run can cost as much as the
                # long one (the runs are bounded by wall time, not by
                # executions): the difference is noise, so fall back to the
                # long run's own rate, start-up included (an underestimate,
                # never a negative or infinite one).
                method = "whole run"
                per_cpu = long["execs"] / max(long["cpu_s"], 1e-3)
                per_wall = long["execs"] / max(long["wall_s"], 1e-3)
            per[t].append(
                {
                    "short": short,
                    "long": long,
                    "method": method,
                    "execs_per_cpu_s": per_cpu,
                    "execs_per_wall_s": per_wall,
                }
            )
    out: dict[str, Any] = {
        "seconds": seconds,
        "rounds": rounds,
        "settings": "-max_len=512 -len_control=0 -seed=1, rules p20, four types, preload asan_with_fuzzer.so",
    }
    for t, rs in per.items():
        out[t] = {
            "what": ATHERIS_TARGETS[t],
            "execs_per_cpu_s": statistics.median(r["execs_per_cpu_s"] for r in rs),
            "execs_per_wall_s": statistics.median(r["execs_per_wall_s"] for r in rs),
            "cov": max(r["long"]["cov"] for r in rs),
            "corpus_mean_bytes": statistics.median(r["long"]["corpus_mean_bytes"] or 0 for r in rs),
            "counters": rs[0]["long"]["counters"],
            "rounds": rs,
        }
    if "harness" in out and "empty" in out:
        out["ratio_harness_vs_empty"] = out["harness"]["execs_per_cpu_s"] / out["empty"]["execs_per_cpu_s"]
    return out


# -- hypothesis -------------------------------------------------------------------


def hypothesis_speed(seconds: float, seed: int = 1) -> dict[str, Any]:
    """State-machine steps/s in a campaign as ``zdfuzz fuzz --engine
    hypothesis`` runs it (p20, four types, Q1 known so rounds go on)."""
    from zdfuzz.hypothesis import run_campaign

    stats: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as db:
        c0, w0 = cpu_seconds(), time.perf_counter()
        run_campaign("p20", TYPES, seconds, seed, db, [Q1], lambda f, s: None, stats.update)
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    steps, examples = int(stats.get("steps", 0)), int(stats.get("execs", 0))
    return {
        "rules": "p20",
        "types": list(TYPES),
        "steps": steps,
        "examples": examples,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps_per_cpu_s": steps / cpu,
        "examples_per_cpu_s": examples / cpu,
    }


# -- minimizer --------------------------------------------------------------------


def reproducer(actions: int, seed: int, rules: str = "p20") -> zdfuzz.Program:
    """A random program of exactly ``actions`` actions that ends in a violation."""
    rng = random.Random(seed)
    while True:
        p = zdfuzz.Program.from_bytes(rng.randbytes(actions * 8), rules=rules)
        if len(p) < actions:
            continue
        p = p.select(list(range(actions)))
        if zdfuzz.Machine.for_program(p).run(p, trace=False).signature:
            return p


def minimize_times(n: int, actions: int = 200) -> dict[str, Any]:
    """Seconds ``zdfuzz.minimize`` takes on ``n`` reproducers of exactly
    ``actions`` actions (random p20 programs that break an invariant)."""
    runs = []
    for seed in range(n):
        p = reproducer(actions, seed)
        c0, w0 = cpu_seconds(), time.perf_counter()
        m = zdfuzz.minimize(p)
        runs.append(
            {
                "seed": seed,
                "cpu_s": cpu_seconds() - c0,
                "wall_s": time.perf_counter() - w0,
                "runs": m.runs,
                "actions_after": len(m.program),
            }
        )
    cpu = [r["cpu_s"] for r in runs]
    return {
        "actions": actions,
        "reproducers": n,
        "median_s": statistics.median(cpu),
        "max_s": max(cpu),
        "median_runs": statistics.median(r["runs"] for r in runs),
        "median_actions_after": statistics.median(r["actions_after"] for r in runs),
        "each": runs,
    }


# -- time to Q1 -------------------------------------------------------------------


def time_to_q1(engine: str, seed: int, limit: float) -> float | None:
    return time_to_bug.time_to_signature(engine, "p20", TYPES, Q1, seed, limit)


def main() -> None:
    quick = "--quick" in sys.argv
    console = Console()
    seeds = range(1, 3 if quick else 6)
    rows: list[tuple[str, str, str]] = []

    n = native_speed(1 if quick else 3)
    ps, ss = n["programs_per_cpu_s"], n["steps_per_cpu_s"]
    rows.append(
        ("native engine (p20, 4 types, <=64 actions)", f"{ps:,.0f} programs/s, {ss / 1e6:.2f} M steps/s", "1.00")
    )
    rb = run_bytes_speed(1 if quick else 3)["programs_per_cpu_s"]
    rows.append(("Machine.run_bytes from Python, 64 actions (e3)", f"{rb:,.0f} programs/s", f"{rb / ps:.2f}"))
    hs = hypothesis_speed(3 if quick else 10)["steps_per_cpu_s"]
    rows.append(("hypothesis state machine", f"{hs:,.0f} steps/s", f"{hs / ss:.4f} (of native steps/s)"))
    try:
        a = atheris_compare(1 if quick else 3, 1, ("harness", "harness-python-cov", "empty"))
        for t in ("harness", "harness-python-cov", "empty"):
            r = a[t]
            rows.append(
                (
                    f"atheris: {r['what']}",
                    f"{r['execs_per_cpu_s']:,.0f} exec/s, cov {r['cov']}",
                    f"{r['execs_per_cpu_s'] / ps:.2f}",
                )
            )
    except Exception as e:  # noqa: BLE001 - a benchmark reports what it cannot measure
        rows.append(("atheris", f"not measured: {e}", "-"))
    mt = minimize_times(3 if quick else 10)
    rows.append(
        (
            "minimize a 200-action reproducer",
            f"median {mt['median_s'] * 1000:.1f} ms, max {mt['max_s'] * 1000:.1f} ms",
            "-",
        )
    )
    for engine in ("native", "hypothesis", "atheris"):
        ts = [time_to_q1(engine, s, 60) for s in seeds]
        got = [x for x in ts if x is not None]
        rows.append(
            (
                f"{engine}: time to Q1 (p20, 4 types, seeds {seeds.start}-{seeds.stop - 1})",
                f"median {statistics.median(got):.1f}s, max {max(got):.1f}s, {len(got)}/{len(ts)} found in 60s"
                if got
                else "not found in 60s",
                "-",
            )
        )
    table = Table(title="zdfuzz engines (rates per CPU-second)")
    for col in ("what", "measured", "ratio to native"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
