"""The Ray backend (the ``zdfuzz[ray]`` extra): the sharded explorer counts
exactly what the single-process one does, and a campaign's workers feed one
deduplicated, resumable corpus. On a local cluster of 2 CPUs.

Skipped, with the reason printed, where Ray is not installed (it is not part
of the ``test`` extra: its wheels are large); ``pip install -e '.[ray]'``
first to run them. Without Ray the CLI's answer (exit 2, how to install) is
tested in any case."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

import zdfuzz
from zdfuzz import campaign
from zdfuzz.cli import main
from zdfuzz.corpus import Corpus

ROOT = Path(__file__).resolve().parents[1]
SMALL = zdfuzz.Shape(
    types=["private", "fsdax", "generic", "p2pdma"],
    pages=1,
    procs=1,
    addrs=2,
    files=1,
    file_pages=1,
    tasks=2,
    ram=0,
    order=0,
)


@pytest.mark.parametrize(
    "args",
    [
        ["explore", "--rules", "e4", "--depth", "2", "--ray"],
        ["fuzz", "--rules", "e4", "--time", "1", "--ray", "--workers", "2"],
    ],
)
def test_without_ray_the_commands_say_how_to_install_it(
    args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert "pip install 'zdfuzz[ray]'" in r.output


try:
    import ray
except ImportError:  # the extra is not installed
    ray = None

from zdfuzz import ray_backend  # noqa: E402  (imports ray only when used)

# one local Ray cluster (the module fixture), not one per pytest-xdist worker
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    if ray is None:
        pytest.skip("Ray is not installed (pip install -e '.[ray]' runs these tests)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _same(rules: str, shape: zdfuzz.Shape, depth: int, workers: int, symmetry: bool = True) -> Any:
    one = zdfuzz.explore(rules, shape=shape, depth=depth, threads=1, symmetry=symmetry)
    sharded = ray_backend.explore(rules, shape, depth, workers=workers, symmetry=symmetry)
    assert (sharded.states, sharded.transitions, sharded.stop, sharded.depth_reached) == (
        one.states,
        one.transitions,
        one.stop,
        one.depth_reached,
    )
    assert sharded.levels == one.levels
    if one.counterexample is None:
        assert sharded.counterexample is None
    else:
        assert sharded.counterexample is not None and sharded.violation is not None and one.violation is not None
        # the same path wins: the very same program
        assert sharded.counterexample.to_text() == one.counterexample.to_text()
        assert sharded.violation.invariant == one.violation.invariant
    return sharded


@pytest.mark.parametrize("workers", [1, 2])
def test_sharded_explorer_counts_exactly_as_one_process(cluster: Any, workers: int) -> None:
    r = _same("e4", SMALL, 4, workers)
    assert r.stop == "depth" and r.complete and r.workers == workers


def test_sharded_explorer_exact_states(cluster: Any) -> None:
    tiny = zdfuzz.Shape(types=["fsdax"], pages=1, procs=1, addrs=1, files=1, file_pages=1, tasks=1, ram=0, order=0)
    r = _same("e3", tiny, 8, 2, symmetry=False)
    assert r.stop == "violation" and r.reduction == "none"


@pytest.mark.parametrize("path", sorted((ROOT / "corpus" / "regressions").glob("*/*.zdf"))[:4], ids=lambda p: p.stem)
def test_sharded_explorer_finds_the_same_counterexample(cluster: Any, path: Path) -> None:
    program = zdfuzz.Program.parse(path.read_text())
    r = _same(program.rules, program.shape, min(len(program), 8), 2)
    assert r.counterexample is not None


def test_cli_explore_on_ray(cluster: Any) -> None:
    args = ["explore", "--rules", "e4", "--depth", "3", "--pages", "1", "--quiet"]
    one = CliRunner().invoke(main, args)
    sharded = CliRunner().invoke(main, [*args, "--ray", "--workers", "2"])
    assert one.exit_code == 0 and sharded.exit_code == 0, sharded.output
    counts = lambda out: out.split(" — ")[1].split(" transitions")[0]  # noqa: E731
    assert counts(sharded.output) == counts(one.output)
    assert "Ray, 2 workers" in sharded.output
    with_por = CliRunner().invoke(main, [*args, "--ray", "--por"])
    assert with_por.exit_code == 2 and "--por" in with_por.output


def _campaign(corpus: Path, seconds: float) -> tuple[campaign.Campaign, str]:
    out = io.StringIO()
    cfg = campaign.Config(
        rules="e2", types=("private",), seconds=seconds, jobs=2, corpus=corpus, seed=7, ray="local", max_actions=32
    )
    c = campaign.run(cfg, Console(file=out, width=200))
    return c, out.getvalue()


def test_campaign_on_ray_deduplicates_into_one_corpus_and_resumes(cluster: Any, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    c, _ = _campaign(corpus, 4.0)
    assert c.found, "e2 on device-private pages has findings within seconds"
    ray_stats = c.stats["ray"]
    # both workers' engines report; the driver writes each signature once
    assert ray_stats["reported"] == len(c.found) + ray_stats["duplicates"]
    stored = Corpus(corpus).findings()
    sigs = [f.signature for f in stored]
    assert len(sigs) == len(set(sigs)) == len(c.found)
    for f in stored:
        meta = json.loads(f.zdf.with_suffix(".json").read_text())
        assert meta["ray"] is True and meta["job"] in (0, 1) and meta["minimized"]
        # each reproducer replays to its signature
        program = zdfuzz.Program.parse(f.zdf.read_text())
        v = zdfuzz.Machine.for_program(program).run(program, trace=False).violation
        assert v is not None and v.invariant == f.signature.invariant
    assert Corpus(corpus).native_entries(), "the engines' corpus entries reach the driver"
    # a second campaign on the same directory resumes: nothing found again
    again, _ = _campaign(corpus, 2.0)
    assert not {f.signature for f in again.found} & set(sigs)
    assert again.earlier == len(sigs)


def test_cli_fuzz_on_ray(cluster: Any, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main,
        ["fuzz", "--rules", "e2", "--types", "private", "--time", "2", "--seed", "3", "--corpus", str(tmp_path / "c")]
        + ["--ray", "--workers", "2"],
    )
    assert r.exit_code == 0, r.output
    bad = CliRunner().invoke(main, ["fuzz", "--engine", "hypothesis", "--time", "1", "--ray"])
    assert bad.exit_code == 2 and "native engine only" in bad.output
