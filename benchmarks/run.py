#!/usr/bin/env python3
"""zdfuzz's benchmark suite: every measurement side by side, in one run.

    python benchmarks/run.py [--quick] [--skip NAME,...] [--results-dir DIR]
    python benchmarks/run.py --time-to-bug [--regressions DIR] [--cap 60] [--seeds 5]
                                           [--engines native,hypothesis,atheris]

Measures, one after another (never two at once: the machine has 2 cores and
is shared), and prints one table, saved as JSON with the machine's details in
``DIR/latest.json`` and ``DIR/<date>-<time>[-quick].json`` (default DIR
``benchmarks/results``):

==========  ================================================================
core        ``Machine.run_bytes`` vs the reference model
            (``zdfuzz_reference``) on the same byte programs of exactly 64
            and 1024 actions: actions/s, ns per action, the ratio
            (benchmarks/core_speed.py)
atheris     exec/s on the zdfuzz harness with the Rust core instrumented,
            on the harness with Python coverage only (default mode), and on
            an empty target, back to back with the same settings
            (benchmarks/engines.py)
hypothesis  state-machine steps/s in a campaign
native      native-engine programs/s (up to 64 actions) and steps/s
minimizer   ``zdfuzz.minimize`` on reproducers of exactly 200 actions
percpu_ref  get+put pairs/s: per-CPU slots vs one shared atomic, 1 and 2
            threads (benchmarks/percpu_ref.py)
explorer    distinct states/s/core on the standard configuration, beside
            the native engine's rate (benchmarks/explore.py)
==========  ================================================================

and checks the targets of benchmarks/README.md as PASS/MISS rows (a miss says by
how much; benchmarks/README.md says why). Rates are per CPU-second of the
measured process ("per core"). ``--quick`` takes about 30 s (a smoke test);
the default mode a few minutes.

``--time-to-bug``: see benchmarks/time_to_bug.py; saved as
``DIR/time-to-bug-latest.json`` and a dated copy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import zdfuzz

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import core_speed  # noqa: E402
import engines  # noqa: E402
import explore  # noqa: E402
import percpu_ref  # noqa: E402
import time_to_bug  # noqa: E402

BENCHMARKS = ("core", "atheris", "hypothesis", "native", "minimizer", "percpu_ref", "explorer", "explorer_por")

#: per mode: how long each measurement runs
MODES: dict[str, dict[str, Any]] = {
    "quick": dict(
        core_seconds=0.3,
        core_programs=20,
        atheris_seconds=1,
        atheris_rounds=1,
        atheris_targets=("harness", "empty"),
        hypothesis_seconds=2.0,
        native_seconds=1.0,
        minimize=2,
        percpu_pairs=200_000,
        percpu_rounds=3,
        explore_depth=4,
        por_depth=3,
        por_budget=2.0,
    ),
    "default": dict(
        core_seconds=3.0,
        core_programs=200,
        atheris_seconds=3,
        atheris_rounds=3,
        atheris_targets=("harness", "harness-python-cov", "empty"),
        hypothesis_seconds=10.0,
        native_seconds=5.0,
        minimize=10,
        percpu_pairs=2_000_000,
        percpu_rounds=5,
        explore_depth=6,
        por_depth=5,
        por_budget=60.0,
    ),
}

#: (key, what, target, unit): the performance targets of benchmarks/README.md
TARGETS = (
    ("core_vs_reference_64", "Rust core vs reference model, 64-action programs", 50.0, "x"),
    ("atheris_vs_empty", "atheris on the zdfuzz harness vs an empty target", 0.30, "share"),
    ("native_programs_per_s", "native engine, programs of 64 actions per second per core", 100_000.0, "/s"),
    (
        "explorer_states_per_s",
        "explorer, distinct states per second per core (standard configuration)",
        1_000_000.0,
        "/s",
    ),
)


# -- the machine ---------------------------------------------------------------------


def _cmd(*argv: str) -> str | None:
    try:
        r = subprocess.run(list(argv), capture_output=True, text=True, cwd=HERE.parent, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def machine_details() -> dict[str, Any]:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = _cmd("git", "rev-parse", "HEAD")
    dirty = _cmd("git", "status", "--porcelain", "--untracked-files=no")
    try:
        from importlib.metadata import version

        import atheris  # noqa: F401

        atheris_version: str | None = version("atheris")
    except ImportError:
        atheris_version = None
    from importlib.metadata import version as v

    return {
        "cpu_model": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "load_average_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "rustc": _cmd("rustc", "--version"),
        "zdfuzz": zdfuzz.__version__,
        "hypothesis": v("hypothesis"),
        "atheris": atheris_version,
        "git_commit": commit,
        "git_dirty": bool(dirty),
        "note": "the development machine is shared with other work (fuzz campaigns): compare the side-by-side "
        "ratios, and read the load averages",
    }


# -- running the benchmarks ------------------------------------------------------------


class NotMeasured(Exception):
    """What a benchmark needs and this machine lacks (atheris, cargo)."""


def measure_all(mode: str, skip: set[str], log: Callable[[str], None]) -> dict[str, Any]:
    p = MODES[mode]
    steps: dict[str, Callable[[], Any]] = {
        "core": lambda: [core_speed.compare(n, p["core_seconds"], count=p["core_programs"]) for n in (64, 1024)],
        "atheris": lambda: _atheris(p),
        "hypothesis": lambda: engines.hypothesis_speed(p["hypothesis_seconds"]),
        "native": lambda: engines.native_speed(p["native_seconds"]),
        "minimizer": lambda: engines.minimize_times(p["minimize"], 200),
        "percpu_ref": lambda: percpu_ref.run(p["percpu_pairs"], p["percpu_rounds"], [1, 2]),
        "explorer": lambda: explore.explore_row(p["explore_depth"], 1, True),
        "explorer_por": lambda: explore.por_compare(p["por_depth"], p["por_budget"]),
    }
    results: dict[str, Any] = {}
    for name in BENCHMARKS:
        if name in skip:
            results[name] = {"skipped": True}
            continue
        log(f"measuring {name} ...")
        t0 = time.monotonic()
        try:
            results[name] = {"result": steps[name]()}
        except NotMeasured as e:
            results[name] = {"not_measured": str(e)}
        except Exception as e:  # noqa: BLE001 - report it in the table and the exit status, run the rest
            results[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        results[name]["seconds"] = round(time.monotonic() - t0, 2)
    return results


def _atheris(p: dict[str, Any]) -> dict[str, Any]:
    from zdfuzz.drivers.sancov import SetupError

    try:
        return engines.atheris_compare(p["atheris_seconds"], p["atheris_rounds"], p["atheris_targets"])
    except SetupError as e:
        raise NotMeasured(str(e)) from e


def _get(results: dict[str, Any], name: str) -> Any:
    return results.get(name, {}).get("result")


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    core, ath, nat, exp = (_get(results, n) for n in ("core", "atheris", "native", "explorer"))
    measured: dict[str, float | None] = {
        "core_vs_reference_64": next((r["ratio"] for r in core if r["actions"] == 64), None) if core else None,
        "atheris_vs_empty": ath.get("ratio_harness_vs_empty") if ath else None,
        "native_programs_per_s": nat["programs_per_cpu_s"] if nat else None,
        "explorer_states_per_s": exp["states_per_cpu_s"] if exp else None,
    }
    out = []
    for key, what, target, unit in TARGETS:
        m = measured[key]
        row: dict[str, Any] = {"key": key, "what": what, "target": target, "unit": unit, "measured": m}
        if m is None:
            row.update(status="NOT MEASURED")
        else:
            row.update(status="PASS" if m >= target else "MISS", of_target=m / target)
            if m < target:
                row["shortfall"] = f"{m / target:.2f} of the target: {target / m:.1f}x short"
        out.append(row)
    return out


# -- the table -------------------------------------------------------------------------


def _rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e4:
        return f"{x / 1e3:.1f} k"
    return f"{x:,.0f}"


def _ns(x: float) -> str:
    return f"{x / 1000:.1f} µs" if x >= 10_000 else f"{x:.0f} ns"


def _secs(x: float) -> str:
    return f"{x:.2f} s" if x >= 1 else f"{x * 1000:.1f} ms" if x >= 0.01 else f"{x * 1e6:.0f} µs"


def _fmt_target(t: dict[str, Any]) -> str:
    if t["unit"] == "x":
        return f">= x{t['target']:g}"
    if t["unit"] == "share":
        return f">= {t['target']:.0%} of empty"
    return f">= {_rate(t['target'])}{t['unit']}"


def _status(t: dict[str, Any]) -> str:
    s = str(t["status"])
    if s == "PASS":
        return f"PASS ({t['of_target']:.1f}x the target)"
    if s == "MISS":
        return f"MISS ({t['of_target']:.2f} of the target)"
    return s


def rows(results: dict[str, Any], targets: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, measured, side by side, target, status) per line."""
    tg = {t["key"]: t for t in targets}
    out: list[tuple[str, str, str, str, str]] = []

    def t(key: str) -> tuple[str, str]:
        return _fmt_target(tg[key]), _status(tg[key])

    def unavailable(name: str, label: str, key: str | None = None) -> bool:
        r = results.get(name, {})
        why = (
            "skipped"
            if r.get("skipped")
            else f"not measured: {r['not_measured']}"
            if "not_measured" in r
            else f"ERROR: {r['error']}"
            if "error" in r
            else None
        )
        if why is None:
            return False
        out.append((label, why, "", *(t(key) if key else ("", ""))))
        return True

    core = _get(results, "core")
    if not unavailable("core", "core: Machine.run_bytes vs reference", "core_vs_reference_64"):
        for r in core:
            c, f = r["core"], r["reference"]
            target = t("core_vs_reference_64") if r["actions"] == 64 else ("", "")
            out.append(
                (
                    f"core: run_bytes, {r['actions']}-action programs ({r['rules']})",
                    f"{_rate(c['actions_per_cpu_s'])} actions/s, {_ns(c['ns_per_action'])}/action "
                    f"({c['steps_per_program']:.0f} steps/program with the drain)",
                    f"reference {_rate(f['actions_per_cpu_s'])} actions/s, {_ns(f['ns_per_action'])}/action: "
                    f"core x{r['ratio']:.0f}",
                    *target,
                )
            )
    ath = _get(results, "atheris")
    if not unavailable("atheris", "atheris", "atheris_vs_empty"):
        empty = ath["empty"]["execs_per_cpu_s"]
        for name, label in (
            ("harness", "atheris: zdfuzz harness, Rust core instrumented"),
            ("harness-python-cov", "atheris: zdfuzz harness, normal extension (no Rust coverage)"),
        ):
            if name not in ath:
                continue
            a = ath[name]
            target = t("atheris_vs_empty") if name == "harness" else ("", "")
            out.append(
                (
                    label,
                    f"{_rate(a['execs_per_cpu_s'])} exec/s, cov {a['cov']}, mean input {a['corpus_mean_bytes']:.0f} B",
                    f"empty target {_rate(empty)} exec/s (mean input {ath['empty']['corpus_mean_bytes']:.0f} B): "
                    f"{a['execs_per_cpu_s'] / empty:.1%} of it",
                    *target,
                )
            )
    nat = _get(results, "native")
    hyp = _get(results, "hypothesis")
    if not unavailable("hypothesis", "hypothesis state machine"):
        side = f"{hyp['steps_per_cpu_s'] / nat['steps_per_cpu_s']:.2%} of the native engine's steps/s" if nat else ""
        out.append(
            (
                "hypothesis state machine (p20, 4 types)",
                f"{_rate(hyp['steps_per_cpu_s'])} steps/s ({hyp['examples_per_cpu_s']:.0f} examples/s)",
                side,
                "",
                "",
            )
        )
    if not unavailable("native", "native engine", "native_programs_per_s"):
        side = f"{_rate(nat['steps_per_cpu_s'])} steps/s, {nat['steps_per_program']:.0f} steps/program (drain included)"
        bare = next((r["core"] for r in core if r["actions"] == 64), None) if core else None
        if bare:
            # the machine alone, without the engine's swarm and coverage: its ceiling
            side += f"; bare Machine.run_bytes (e3), exactly 64 actions: {_rate(bare['programs'] / bare['cpu_s'])} programs/s"
        out.append(
            (
                f"native engine (p20, 4 types, <= {nat['max_actions']} actions)",
                f"{_rate(nat['programs_per_cpu_s'])} programs/s",
                side,
                *t("native_programs_per_s"),
            )
        )
    mt = _get(results, "minimizer")
    if not unavailable("minimizer", "minimizer"):
        out.append(
            (
                f"minimize a {mt['actions']}-action reproducer (p20)",
                f"median {_secs(mt['median_s'])}, max {_secs(mt['max_s'])}",
                f"{mt['reproducers']} reproducers: median {mt['median_runs']:.0f} runs, "
                f"{mt['actions']} -> {mt['median_actions_after']:.0f} actions",
                "",
                "",
            )
        )
    pr = _get(results, "percpu_ref")
    if not unavailable("percpu_ref", "percpu_ref"):
        for r in pr:
            out.append(
                (
                    f"percpu_ref get+put, {r['threads']} thread(s)",
                    f"per-CPU {r['percpu_pairs_per_s'] / 1e6:.1f} M pairs/s",
                    f"shared atomic {r['shared_atomic_pairs_per_s'] / 1e6:.1f} M pairs/s: per-CPU "
                    f"x{r['ratio_percpu_vs_shared']:.1f}",
                    "",
                    "",
                )
            )
    exp = _get(results, "explorer")
    if not unavailable("explorer", "explorer", "explorer_states_per_s"):
        side = f"{_rate(exp['transitions_per_cpu_s'])} transitions/s"
        if nat:
            side += f"; native engine {_rate(nat['steps_per_cpu_s'])} steps/s, {_rate(nat['programs_per_cpu_s'])} programs/s"
        out.append(
            (
                f"explorer ({exp['rules']}, standard configuration, depth {exp['depth']}, {exp['states']:,} states)",
                f"{_rate(exp['states_per_cpu_s'])} states/s",
                side,
                *t("explorer_states_per_s"),
            )
        )
    por = _get(results, "explorer_por")
    if not unavailable("explorer_por", "explorer, partial-order reduction"):
        out.append(
            (
                f"explorer --por vs plain ({por['rules']}, standard, depth {por['depth']}, same states)",
                f"transitions x{por['transitions_ratio']:.3f}, CPU x{por['cpu_ratio']:.2f}",
                f"deepest depth in {por['budget_s']:g} s: {por['plain']['deepest_in_budget']} plain, "
                f"{por['por']['deepest_in_budget']} with --por ({por['depth_gained']:+d})",
                "",
                "",
            )
        )
    return out


def render(doc: dict[str, Any], console: Console) -> None:
    m = doc["machine"]
    table = Table(
        title=f"zdfuzz benchmarks ({doc['mode']} mode; rates per CPU-second = per core)",
        caption=f"{m['cpu_model']}, {m['cores']} cores, load {m['load_average_start'][0]:.2f} -> "
        f"{m['load_average_end'][0]:.2f} (shared machine); Python {m['python']}, {m['rustc']}, "
        f"commit {(m['git_commit'] or '?')[:10]}{' (dirty)' if m['git_dirty'] else ''}",
    )
    for col in ("benchmark", "measured", "side by side", "target", "status"):
        table.add_column(col)
    for r in doc["rows"]:
        style = {"PASS": "green", "MISS": "red"}.get(r[4][:4], "")
        table.add_row(*r[:4], f"[{style}]{r[4]}[/{style}]" if style else r[4])
    console.print(table)
    for t in doc["targets"]:
        if t["status"] == "MISS":
            console.print(
                f"[red]MISS[/red] {t['what']}: {t['shortfall']} (benchmarks/README.md says why)", highlight=False
            )


def save(doc: dict[str, Any], results_dir: Path, stem: str, quick: bool) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, default=str) + "\n"
    name = time.strftime("%Y-%m-%d-%H%M%S", time.localtime(doc["started_at"]))
    dated = results_dir / f"{stem + '-' if stem else ''}{name}{'-quick' if quick else ''}.json"
    latest = results_dir / f"{stem + '-' if stem else ''}latest.json"
    for p in (dated, latest):
        p.write_text(text)
    return [latest, dated]


# -- time to bug -----------------------------------------------------------------------


def time_to_bug_main(args: argparse.Namespace, console: Console) -> int:
    root = Path(args.regressions)
    engines_ = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines_ if e not in time_to_bug.ENGINES]
    if bad:
        console.print(f"unknown engine(s) {', '.join(bad)}; engines: {', '.join(time_to_bug.ENGINES)}")
        return 2
    seeds = list(range(1, args.seeds + 1))
    regs, skipped = time_to_bug.discover(root)
    doc: dict[str, Any] = {
        "kind": "time-to-bug",
        "started_at": time.time(),
        "machine": machine_details(),
        "regressions_dir": str(root),
        "cap_s": args.cap,
        "seeds": seeds,
        "engines": engines_,
        "skipped": skipped,
    }
    for s in skipped:
        console.print(f"[yellow]skipped[/yellow] {s}", highlight=False)
    if not regs:
        console.print(
            f"no reproducers under {root}/<preset>/*.zdf: nothing to measure (the regression corpus is "
            "filled by `zdfuzz regressions find`; point --regressions at another directory)",
            highlight=False,
        )
        results: list[dict[str, Any]] = []
    else:
        worst = len(regs) * len(engines_) * len(seeds) * args.cap
        console.print(
            f"{len(regs)} reproducer(s) x {len(engines_)} engine(s) x {len(seeds)} seed(s), at most "
            f"{args.cap:g}s each (worst case {worst / 60:.1f} min; a run stops at its first detection)",
            highlight=False,
        )
        results = time_to_bug.measure(
            regs, engines_, seeds, args.cap, lambda s: console.print(f"  {s}", highlight=False)
        )
    doc["machine"]["load_average_end"] = list(os.getloadavg())
    doc["finished_at"] = time.time()
    doc["results"] = results
    table = Table(
        title=f"time to bug: median seconds to the first detection over {len(seeds)} seed(s), cap {args.cap:g}s",
        caption="n/N: seeds that found it; the engines run the default shape of the reproducer's types",
    )
    for col in ("reproducer", "signature", "types", "beyond default shape", *engines_):
        table.add_column(col)
    for r in results:
        sig = r["signature"]
        shape = ", ".join(f"{k}={v}" for k, v in r["beyond_default_shape"].items()) or "-"
        if not r["replays"]:
            shape += " (does not replay to its signature!)"
        cells = []
        for e in engines_:
            x = r["engines"][e]
            cells.append(
                x["result"] if x["result"].startswith("error") else f"{x['result']} ({x['found']}/{len(x['seeds'])})"
            )
        table.add_row(
            r["reproducer"],
            f"{sig['invariant']} {sig['kind']} {sig['device']} {sig['rules']}",
            ",".join(r["types"]),
            shape,
            *cells,
        )
    console.print(table)
    paths = save(doc, Path(args.results_dir), "time-to-bug", False)
    console.print(f"saved {paths[0]} and {paths[1]}", highlight=False)
    return 0


# -- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few seconds per item (smoke test)")
    ap.add_argument("--skip", default="", help=f"comma-separated benchmarks to leave out: {', '.join(BENCHMARKS)}")
    ap.add_argument("--results-dir", default=str(HERE / "results"), help="where the JSON goes")
    ap.add_argument("--time-to-bug", action="store_true", help="the time-to-bug table instead")
    ap.add_argument("--regressions", default=str(HERE.parent / "corpus" / "regressions"))
    ap.add_argument("--cap", type=float, default=60.0, help="seconds per run (time to bug)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 1..N per engine and reproducer (time to bug)")
    ap.add_argument("--engines", default=",".join(time_to_bug.ENGINES), help="(time to bug)")
    args = ap.parse_args(argv)
    console = Console(width=max(Console().width, 160))
    if args.time_to_bug:
        return time_to_bug_main(args, console)

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(BENCHMARKS)
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; benchmarks: {', '.join(BENCHMARKS)}")
    mode = "quick" if args.quick else "default"
    doc: dict[str, Any] = {
        "kind": "benchmarks",
        "mode": mode,
        "settings": MODES[mode],
        "started_at": time.time(),
        "machine": machine_details(),
    }
    results = measure_all(mode, skip, lambda s: console.print(s, style="dim", highlight=False))
    doc["machine"]["load_average_end"] = list(os.getloadavg())
    doc["finished_at"] = time.time()
    doc["results"] = results
    doc["targets"] = check_targets(results)
    doc["rows"] = rows(results, doc["targets"])
    render(doc, console)
    paths = save(doc, Path(args.results_dir), "", mode == "quick")
    console.print(f"saved {paths[0]} and {paths[1]}", highlight=False)
    errors = [n for n, r in results.items() if "error" in r]
    for n in errors:
        console.print(f"[red]{n} failed[/red]:\n{results[n]['traceback']}", highlight=False)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
