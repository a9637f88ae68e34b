"""Exhaustive bounded exploration: ``zdfuzz.explore`` and ``zdfuzz explore`` (docs/model.md §10)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import zdfuzz
from zdfuzz import Machine, Program
from zdfuzz.cli import main

# the seed's Q1 on the smallest machine that can show it
Q1_SHAPE: dict[str, Any] = dict(types=["generic"], pages=1, cpus=2, procs=1, addrs=1, tasks=1)
SMALL: dict[str, Any] = dict(pages=2, cpus=2, procs=1, addrs=2, files=1, file_pages=2, tasks=2, ram=0, order=0)


def test_p20_q1_shortest_counterexample() -> None:
    r = zdfuzz.explore("p20", depth=12, shape=Q1_SHAPE)
    assert r.stop == "violation" and r.complete
    p = r.counterexample
    assert isinstance(p, Program)
    # 10 = memremap + fault + GUP + memunmap and its 5 steps + one grace
    # period (derived in rust/core/tests/explore.rs)
    assert len(p) == 10
    assert r.depth_reached == 10
    assert r.violation is not None and r.violation.invariant == "I-L2"
    assert r.verdict is not None and not r.verdict.ok
    assert isinstance(r.states, int) and r.states > 10
    assert r.transitions >= r.states - 1
    assert r.seconds >= 0.0
    # the reproducer replays through its .zdf text
    again = Program.parse(p.to_text())
    v = Machine.for_program(again).run(again)
    assert v.violation is not None and v.violation.invariant == "I-L2"
    assert "I-L2" in r.summary() and "10 actions" in str(r)


def test_e4_clean_at_small_bounds_and_monotone_levels() -> None:
    r = zdfuzz.explore("e4", depth=4, shape=SMALL)
    assert r.counterexample is None and r.violation is None and r.verdict is None
    assert (r.stop, r.complete, r.depth_reached, r.depth_limit) == ("depth", True, 4, 4)
    assert r.summary().startswith("no violation reachable within depth 4")
    assert r.coverage["mode"] == "exact" and r.coverage["collision_bound"] < 1e-9
    assert [lvl[0] for lvl in r.levels] == [0, 1, 2, 3, 4]
    states = [lvl[2] for lvl in r.levels]
    transitions = [lvl[3] for lvl in r.levels]
    assert states == sorted(states) and len(set(states)) == len(states)
    assert transitions == sorted(transitions)
    assert (states[-1], transitions[-1]) == (r.states, r.transitions)
    shallower = zdfuzz.explore("e4", depth=3, shape=SMALL)
    assert shallower.levels == r.levels[:4]


def test_numbers_do_not_depend_on_threads() -> None:
    one = zdfuzz.explore("e3", depth=4, threads=1, shape=SMALL)
    two = zdfuzz.explore("e3", depth=4, threads=2, shape=SMALL)
    assert one.levels == two.levels
    assert (one.threads, two.threads) == (1, 2)


def test_symmetry_reduction_can_be_turned_off() -> None:
    reduced = zdfuzz.explore("e4", depth=3, shape=SMALL)
    exact = zdfuzz.explore("e4", depth=3, symmetry=False, shape=SMALL)
    assert (reduced.reduction, exact.reduction) == ("symmetry", "none")
    assert exact.states > reduced.states


def test_bitstate_mode_is_labelled_not_a_proof() -> None:
    r = zdfuzz.explore("e4", depth=4, bitstate="512", shape=SMALL)
    assert r.coverage["mode"] == "bitstate"
    assert r.coverage["hashes"] >= 1 and 0.0 < r.coverage["fill"] <= 1.0
    assert "NOT a proof" in r.summary()


def test_limits_and_progress() -> None:
    r = zdfuzz.explore("e4", depth=6, max_seconds=0.0, shape=SMALL)
    assert r.stop == "time" and not r.complete and r.partial is not None
    seen: list[dict[str, Any]] = []
    r = zdfuzz.explore("e4", depth=5, threads=1, progress=seen.append, progress_interval=0.01)
    assert r.complete
    assert seen, "the progress callback was never called"
    assert {"depth", "frontier", "expanded", "states", "transitions", "seconds"} <= set(seen[-1])


def test_a_failing_progress_callback_stops_the_search() -> None:
    def boom(_: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        zdfuzz.explore("e4", depth=9, progress=boom, progress_interval=0.01)


def test_sigint_returns_the_partial_result() -> None:
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        r = zdfuzz.explore("e4", depth=12, threads=1)
    finally:
        timer.cancel()
    assert r.stop == "interrupted" and not r.complete
    assert r.depth_reached < 12
    assert "interrupted" in r.summary()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shape={"types": ["gpu"]}), "unknown device type"),
        (dict(bitstate="12"), "at least 512 bytes"),
        (dict(max_memory="lots"), "unknown unit"),
        (dict(max_memory="1.5.6G"), "not a size"),
        (dict(shape={"pages": 0}), "pages"),
        (dict(bitstate="2G", max_memory="1G"), "larger than the memory cap"),
        (dict(progress_interval=float("nan")), "progress_interval"),
        (dict(progress=42), "callable"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        zdfuzz.explore("e4", depth=1, **kwargs)


def test_cli_explore_counterexample_and_clean(tmp_path: Path) -> None:
    out = tmp_path / "q1.zdf"
    args = ["explore", "--rules", "p20", "--types", "generic", "--pages", "1", "--procs", "1", "--addrs", "1"]
    res = CliRunner().invoke(main, [*args, "--tasks", "1", "--depth", "12", "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "I-L2 (safety) reachable in 10 actions" in res.output
    text = out.read_text()
    assert text.startswith("# zdfuzz explore: shortest counterexample, 10 actions")
    replay = CliRunner().invoke(main, ["replay", str(out), "--quiet"])
    assert replay.exit_code == 1 and "I-L2" in replay.output
    clean = CliRunner().invoke(main, ["explore", "--rules", "e4", "--depth", "3", "--pages", "2", "--quiet"])
    assert clean.exit_code == 0, clean.output
    assert "no violation reachable within depth 3" in clean.output
    stopped = CliRunner().invoke(main, ["explore", "--rules", "e4", "--depth", "9", "--max-seconds", "0"])
    assert stopped.exit_code == 3, stopped.output
    assert "time limit reached" in stopped.output
    bad = CliRunner().invoke(main, ["explore", "--rules", "e4", "--depth", "2", "--types", "gpu"])
    assert bad.exit_code == 2 and "unknown device type" in bad.output


def test_max_memory_caps_the_measured_peak(tmp_path: Path) -> None:
    """``--max-memory`` caps what the process holds: its peak resident set as
    the kernel counted it (``VmHWM`` of the child's own address space, which
    the JSON reports) stays below the cap, and the search gets as far as the
    cap allows (cut inside depth 6 of the standard configuration, which holds
    several times the cap, not at the start).

    Not ``ru_maxrss``: Linux carries the pre-exec image's peak into it, and a
    child of a large pytest process starts as a copy of that process."""
    import json
    import subprocess
    import sys

    cap = 150 << 20
    argv = [sys.executable, "-m", "zdfuzz.cli", "explore", "--rules", "e4", "--depth", "6"]
    argv += ["--threads", "2", "--max-memory", str(cap), "--json"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert p.returncode == 3, p.stderr
    r = json.loads(p.stdout)
    assert r["stop"] == "memory" and not r["complete"], r["summary"]
    assert r["depth_reached"] == 5, r["summary"]
    # a real reading (the interpreter alone holds tens of MiB), below the cap
    assert 16 << 20 < r["peak_memory"] <= cap, (r["peak_memory"], r["summary"])
