"""Partial-order reduction (sleep sets) in the explorer: the same states at
every depth, the same verdict and the same shortest counterexample as the
unreduced search, on every regression reproducer's machine and every preset."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main
from zdfuzz.regressions import BUGS, ROOT

PRESETS = sorted(p.stem for p in (Path(zdfuzz.__file__).parent / "presets").glob("*.toml"))
REPRODUCERS = sorted(ROOT.glob("*/*.zdf"))
SMALL = dict(pages=1, cpus=2, procs=1, addrs=2, files=1, file_pages=1, tasks=2, ram=0, order=0)


def same_verdicts(rules: str, shape: zdfuzz.Shape, depth: int) -> tuple[zdfuzz.ExploreResult, zdfuzz.ExploreResult]:
    plain = zdfuzz.explore(rules, shape=shape, depth=depth, threads=1)
    por = zdfuzz.explore(rules, shape=shape, depth=depth, threads=1, por=True)
    assert [lv[1] for lv in por.levels] == [lv[1] for lv in plain.levels], "new states per depth"
    assert (por.stop, por.states, por.depth_reached) == (plain.stop, plain.states, plain.depth_reached)
    length = lambda r: None if r.counterexample is None else len(r.counterexample)  # noqa: E731
    invariant = lambda r: None if r.violation is None else r.violation.invariant  # noqa: E731
    assert (length(por), invariant(por)) == (length(plain), invariant(plain))
    assert por.transitions + por.slept >= por.transitions and plain.slept == 0
    return plain, por


def test_every_regression_is_covered() -> None:
    assert len(REPRODUCERS) == len(BUGS)


@pytest.mark.parametrize("path", REPRODUCERS, ids=lambda p: p.stem)
def test_same_verdict_on_each_regression_machine(path: Path) -> None:
    program = zdfuzz.Program.parse(path.read_text())
    # (the longer reproducers' machines all have a shorter counterexample;
    # the skipped locked entry needs its whole 9 actions)
    plain, por = same_verdicts(program.rules, program.shape, min(len(program), 9))
    assert plain.counterexample is not None, "each reproducer's machine has a counterexample within its length"


@pytest.mark.parametrize("preset", PRESETS)
def test_same_verdict_on_each_preset(preset: str) -> None:
    same_verdicts(preset, zdfuzz.Shape(types=["private", "fsdax", "generic", "p2pdma"], **SMALL), 4)


def test_sleep_sets_prune_on_the_standard_shape() -> None:
    shape = zdfuzz.Shape(types=["private", "fsdax", "generic", "p2pdma"], pages=2, ram=0, order=0)
    plain, por = same_verdicts("e4", shape, 4)
    assert por.slept > 0 and por.transitions < plain.transitions


def test_cli_explore_por() -> None:
    args = ["explore", "--rules", "e4", "--depth", "3", "--pages", "1", "--quiet"]
    plain = CliRunner().invoke(main, args)
    por = CliRunner().invoke(main, [*args, "--por"])
    assert plain.exit_code == 0 and por.exit_code == 0, por.output
    assert "slept" in por.output and "slept" not in plain.output
