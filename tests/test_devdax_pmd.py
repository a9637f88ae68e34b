"""Device-dax aligned to a PMD (``devdax_pmd=1``, ``--devdax-pmd``): PMD
mappings, compound folios from v5.17 (14606001efb4), and the GUP-fast leak of
``__gup_device_huge`` from v5.7 to v5.14 (a failed ``try_grab_page`` forgot
``put_dev_pagemap``; fixed by 6401c4eb57f9), reached by every engine and the
explorer, and the same in the Rust core and the reference model."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main
from zdfuzz.corpus import Corpus
from zdfuzz.regressions import ROOT
from zdfuzz_reference import diff

REPRO = ROOT / "e1" / "gup-fast-devmap-pmd-leak.zdf"

#: a PMD-aligned device-dax block faulted in, pinned through a tail, unpinned,
#: unmapped through one address of the block, and the device unbound
LIFE = """config types=generic pgmaps=1 pages=4 cpus=2 procs=1 addrs=2 tasks=1 order=1 devdax_pmd=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=2 cpu=0
pin_user_pages proc=0 addr=1 flags=0 cpu=1
get_user_pages proc=0 addr=0 flags=0 cpu=0
unpin_user_page pfn=3 cpu=0
munmap proc=0 addr=1 cpu=1
put_page pfn=2 by=gup cpu=1
memunmap_pages pgmap=0 cpu=0
"""


def _signatures(corpus: Path) -> list[str]:
    return sorted(str(f.signature) for f in Corpus(corpus).findings())


def test_a_native_campaign_finds_the_leak_under_e1_and_not_under_e2(tmp_path: Path) -> None:
    args = ["fuzz", "--types", "generic", "--faults", "--devdax-pmd", "--seed", "1", "--execs", "20000"]
    r = CliRunner().invoke(main, [*args, "--rules", "e1", "--corpus", str(tmp_path / "bug")])
    assert r.exit_code == 0, r.output
    assert "I-L4 memunmap_pages generic e1" in _signatures(tmp_path / "bug")
    found = Corpus(tmp_path / "bug").findings()[0]
    assert "GUP_FAST" in found.zdf.read_text() and "devdax_pmd=1" in found.zdf.read_text()
    r = CliRunner().invoke(main, [*args, "--rules", "e2", "--corpus", str(tmp_path / "fix")])
    assert r.exit_code == 0, r.output
    assert not any(s.startswith("I-L4") for s in _signatures(tmp_path / "fix"))
    # without --devdax-pmd the same campaign never meets a devmap PMD
    plain = [a for a in args if a != "--devdax-pmd"]
    r = CliRunner().invoke(main, [*plain, "--rules", "e1", "--corpus", str(tmp_path / "pte")])
    assert not any(s.startswith("I-L4") for s in _signatures(tmp_path / "pte"))


def test_the_explorer_finds_the_leak_in_four_actions_and_e2_is_clean() -> None:
    shape = zdfuzz.Shape(types=["generic"], pages=2, cpus=1, procs=1, addrs=2, tasks=1, order=1, faults=1, devdax_pmd=1)
    bug = zdfuzz.explore("e1", shape=shape, depth=5, threads=1)
    assert bug.counterexample is not None
    text = bug.counterexample.to_text()
    assert len(bug.counterexample.actions) == 4 and "flags=GUP_FAST" in text, text
    ok = zdfuzz.explore("e2", shape=shape, depth=6, threads=1)
    assert ok.counterexample is None and ok.states > bug.states


@pytest.mark.parametrize("rules", ["e1", "e2", "e3", "e4", "e5", "p20"])
def test_both_models_agree_on_pmd_mappings_and_the_reproducer(rules: str) -> None:
    for text in (LIFE, REPRO.read_text()):
        a, b = diff.rust_outcome(text, rules), diff.reference_outcome(text, rules)
        assert diff.first_difference(a, b) is None, (rules, text)
    assert diff.rust_outcome(LIFE, rules)["violation"] is None


def test_the_shape_option_is_checked_and_written_only_when_on(tmp_path: Path) -> None:
    assert zdfuzz.Shape(types=["generic"], devdax_pmd=1).order == 1  # huge pages come with it
    assert "devdax_pmd" not in zdfuzz.Shape().to_dict()
    with pytest.raises(zdfuzz.ConfigError, match="generic"):
        zdfuzz.Shape(types=["fsdax"], devdax_pmd=1)
    with pytest.raises(zdfuzz.ConfigError, match="multiple of"):
        zdfuzz.Shape(types=["generic"], pages=3, devdax_pmd=1)
    r = CliRunner().invoke(main, ["fuzz", "--types", "fsdax", "--devdax-pmd", "--corpus", str(tmp_path / "c")])
    assert r.exit_code == 2 and "generic" in r.output
    p = zdfuzz.Program.parse(LIFE)
    assert "devdax_pmd=1" in p.to_text()
