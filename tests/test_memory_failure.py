"""memory_failure() on ZONE_DEVICE pages through the CLI, the engines and
the explorer.

A hardware memory error on device memory (``memory_failure`` →
``get_dev_pagemap`` → ``memory_failure_dev_pagemap`` → ``put_dev_pagemap``,
mm/memory-failure.c) is an injected event, so it is reachable in shapes with
``faults=1`` (``--faults``) only. The reference memory_failure holds keeps an
unbind's teardown back; the what-if below drops it, and the oracle reports
the handler reading a torn-down page (I-L3).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main
from zdfuzz.corpus import Corpus

NO_REF = """name = "memory-failure-no-pgmap-ref"
base = "e4"
description = "memory_failure runs its ZONE_DEVICE handler without a pgmap reference"
[pgmap]
memory_failure_gets_pgmap = false
"""


def _findings(corpus: Path) -> dict[str, str]:
    return {f.signature.invariant: f.signature.kind for f in Corpus(corpus).findings()}


def test_memory_failure_needs_faults() -> None:
    assert "memory_failure" in {name for name, _a, _d in zdfuzz.action_kinds()}
    text = """config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=2 faults=1
memremap_pages pgmap=0
memory_failure pfn=0 cpu=0
"""
    p = zdfuzz.Program.parse(text)
    assert zdfuzz.Machine.for_program(p).run(p).ok
    p = zdfuzz.Program.parse(text.replace(" faults=1", ""))
    with pytest.raises(zdfuzz.ProgramError, match="faults=1"):
        zdfuzz.Machine.for_program(p).run(p)


def test_the_native_engine_finds_the_what_if_and_not_the_eras(tmp_path: Path) -> None:
    toml = tmp_path / "noref.toml"
    toml.write_text(NO_REF)
    args = ["fuzz", "--types", "generic,fsdax", "--faults", "--seed", "1", "--execs", "20000", "--time", "600"]
    r = CliRunner().invoke(main, [*args, "--rules", str(toml), "--corpus", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    found = _findings(tmp_path / "w")
    assert found.get("I-L3") == "memory_failure", found
    text = next(p for p in (tmp_path / "w" / "findings").glob("*.zdf") if "memory_failure" in p.read_text()).read_text()
    assert "memunmap_pages" in text
    for era in ("e1", "e4"):
        r = CliRunner().invoke(main, [*args, "--rules", era, "--corpus", str(tmp_path / era)])
        assert r.exit_code == 0, r.output
        assert "I-L3" not in _findings(tmp_path / era), era


def test_the_explorer_finds_the_shortest_what_if_and_not_in_e4(tmp_path: Path) -> None:
    """Shortest (11 actions): the unbind runs to its teardown's wait, the
    lookup still finds the killed pgmap, the what-if takes no reference, the
    teardown completes, the handler reads the page. Under e4 the lookup's
    tryget_live fails on the killed pgmap. (e4 is clean to depth 11 too,
    1,872,946 states: docs/model.md; the test stops at 9 to stay quick.)
    Device-dax's known I-L2 of e4 (docs/findings.md) is explored past."""
    shape = zdfuzz.Shape(types=["generic"], pages=1, cpus=1, procs=1, addrs=1, tasks=2, faults=1)
    toml = tmp_path / "noref.toml"
    toml.write_text(NO_REF)
    known = [("I-L2", "memunmap_pages", "generic")]
    bug = zdfuzz.explore(zdfuzz.Rules.load(str(toml)), shape=shape, depth=11, threads=1, ignore=known)
    assert bug.violation is not None and bug.violation.invariant == "I-L3", bug
    assert bug.counterexample is not None
    acts = [a for a in bug.counterexample.to_text().splitlines() if a and not a.startswith(("#", "config", "rules"))]
    assert len(acts) == 11, acts
    assert {"memory_failure", "memunmap_pages", "rcu_grace_period"} <= {a.split()[0] for a in acts}, acts
    ok = zdfuzz.explore("e4", shape=shape, depth=9, threads=1, ignore=known)
    assert ok.counterexample is None and ok.states > 10_000
