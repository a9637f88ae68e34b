"""``hmm_range_fault`` through the engines and the explorer.

A device-private driver's HMM snapshot takes no page reference; what keeps
its device from using a page the CPU has since unmapped, migrated or freed is
``mmu_interval_read_retry`` (mm/hmm.c and its callers). The what-if below is a
driver that skips the check: the oracle reports I-H1.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main
from zdfuzz.corpus import Corpus

NO_RETRY = """name = "hmm-no-retry-check"
base = "e4"
description = "the driver maps hmm_range_fault snapshots without mmu_interval_read_retry"
[private]
hmm_checks_retry = false
"""


def _findings(corpus: Path) -> dict[str, str]:
    return {f.signature.invariant: f.signature.kind for f in Corpus(corpus).findings()}


def test_the_native_engine_finds_the_what_if_and_not_the_eras(tmp_path: Path) -> None:
    toml = tmp_path / "noretry.toml"
    toml.write_text(NO_RETRY)
    args = ["fuzz", "--types", "private", "--seed", "1", "--execs", "20000", "--time", "600"]
    r = CliRunner().invoke(main, [*args, "--rules", str(toml), "--corpus", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    assert _findings(tmp_path / "w").get("I-H1") == "hmm_range_fault", _findings(tmp_path / "w")
    for era in ("e4", "e5"):
        r = CliRunner().invoke(main, [*args, "--rules", era, "--corpus", str(tmp_path / era)])
        assert r.exit_code == 0, r.output
        assert "I-H1" not in _findings(tmp_path / era), era


def test_the_explorer_finds_the_shortest_stale_snapshot(tmp_path: Path) -> None:
    """Shortest (3 actions): the driver's faulting walk (HMM_PFN_REQ_FAULT)
    gives the hole an anonymous RAM page and snapshots it, the process exits
    (the notifier's invalidation), and the drain runs the driver's step,
    which maps the freed page. (Before ``hmm_fault`` it was 4: the CPU's
    fault, then the snapshot-only walk.)"""
    shape = zdfuzz.Shape(types=["private"], pages=1, cpus=1, procs=1, addrs=1, tasks=2, ram=1)
    toml = tmp_path / "noretry.toml"
    toml.write_text(NO_RETRY)
    bug = zdfuzz.explore(zdfuzz.Rules.load(str(toml)), shape=shape, depth=8, threads=1)
    assert bug.violation is not None and bug.violation.invariant == "I-H1", bug
    assert bug.counterexample is not None
    acts = [a for a in bug.counterexample.to_text().splitlines() if a and not a.startswith(("#", "config", "rules"))]
    assert len(acts) == 3 and acts[1].startswith("hmm_fault ") and acts[2].startswith("exit_mmap"), acts
    assert "stale hmm_range_fault snapshot" in bug.violation.message
    # past the eviction's walk of a freed anon_vma (docs/findings.md F5)
    ok = zdfuzz.explore("e4", shape=shape, depth=8, threads=1, ignore=["I-M10 migrate_device_range private"])
    assert ok.counterexample is None and ok.states > 1000
