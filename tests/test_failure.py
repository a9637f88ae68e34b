"""Failure injection (``fail_next``, ``faults=1`` shapes, ``--faults``).

The P2P mmap error path is a real bug: v6.2's ``p2pmem_alloc_mmap``
(7e9c7ef83d78) returned from a failed ``vm_insert_page`` without putting the
chunk's ``pgmap->ref`` (the unbind then hangs), and once P2P pages were
0-based it also left the failed page's refcount at 1; both fixed in 2026
(6220694c52a5 "PCI/P2PDMA: Release per-CPU pgmap ref when vm_insert_page()
fails", and its companion). Every era preset has the old code; a TOML with
the two switches has the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main
from zdfuzz.corpus import Corpus
from zdfuzz_reference import diff

FIXED = """name = "e4-p2p-mmap-fixed"
base = "e4"
[p2p]
mmap_error_puts_ref = true
mmap_error_resets_rc = true
"""

LEAK = """rules e4
config types=p2pdma pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 tasks=1 faults=1
memremap_pages pgmap=0
fail_next site=vm_insert nth=2
p2pmem_alloc_mmap pgmap=0 proc=0 addr=0 pages=2 cpu=0
memunmap_pages pgmap=0 cpu=0
"""


def _findings(corpus: Path) -> list[str]:
    return sorted(f.signature.invariant for f in Corpus(corpus).findings())


def test_a_native_campaign_with_faults_finds_the_p2p_mmap_leak_and_not_after_the_fix(tmp_path: Path) -> None:
    fixed = tmp_path / "fixed.toml"
    fixed.write_text(FIXED)
    args = ["fuzz", "--types", "p2pdma", "--faults", "--seed", "1", "--execs", "20000", "--time", "600"]
    r = CliRunner().invoke(main, [*args, "--rules", "e4", "--corpus", str(tmp_path / "bug")])
    assert r.exit_code == 0, r.output
    found = _findings(tmp_path / "bug")
    assert "I-L4" in found and "I-F10" in found, found
    r = CliRunner().invoke(main, [*args, "--rules", str(fixed), "--corpus", str(tmp_path / "fix")])
    assert r.exit_code == 0, r.output
    assert _findings(tmp_path / "fix") == []
    # without --faults the same campaign never reaches an error path
    r = CliRunner().invoke(main, [*args[:3], *args[4:], "--rules", "e4", "--corpus", str(tmp_path / "nofaults")])
    assert _findings(tmp_path / "nofaults") == []


def test_the_explorer_with_faults_proves_the_fixed_error_path_within_bounds(tmp_path: Path) -> None:
    shape = zdfuzz.Shape(types=["p2pdma"], pages=2, cpus=1, procs=1, addrs=2, tasks=1, faults=1)
    bug = zdfuzz.explore("e4", shape=shape, depth=4, threads=1)
    assert bug.counterexample is not None
    assert "fail_next site=vm_insert" in bug.counterexample.to_text()
    fixed = tmp_path / "fixed.toml"
    fixed.write_text(FIXED)
    ok = zdfuzz.explore(zdfuzz.Rules.load(str(fixed)), shape=shape, depth=5, threads=1)
    assert ok.counterexample is None and ok.states > bug.states
    # a shape without faults has exactly the state space it had before
    plain = zdfuzz.Shape(types=["p2pdma"], pages=2, cpus=1, procs=1, addrs=2, tasks=1)
    a = zdfuzz.explore(zdfuzz.Rules.load(str(fixed)), shape=plain, depth=5, threads=1)
    assert a.states < ok.states


def test_core_and_reference_agree_on_the_error_paths() -> None:
    for rules in ("e3", "e4", "e5", "p20"):
        a, b = diff.rust_outcome(LEAK, rules), diff.reference_outcome(LEAK, rules)
        assert diff.first_difference(a, b) is None, rules
    gup = LEAK.replace("fail_next site=vm_insert nth=2\n", "fail_next site=try_grab nth=1\n").replace(
        "memunmap_pages", "get_user_pages proc=0 addr=0 flags=FOLL_PCI_P2PDMA cpu=0\nmemunmap_pages"
    )
    for rules in ("e3", "e4"):
        a, b = diff.rust_outcome(gup, rules), diff.reference_outcome(gup, rules)
        assert diff.first_difference(a, b) is None, rules
    # a failed destination allocation: the page is mapped back (I-M5 under e2)
    alloc = """config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=1 tasks=1 ram=1 order=0 faults=1
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
cpu_write proc=0 addr=0 cpu=0
fail_next site=alloc nth=1
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
"""
    for rules in ("e2", "e3", "e5"):
        a, b = diff.rust_outcome(alloc, rules), diff.reference_outcome(alloc, rules)
        assert diff.first_difference(a, b) is None, rules
    assert diff.rust_outcome(alloc, "e2")["violation"]["invariant"] == "I-M5"


def test_fail_next_is_refused_without_faults_and_the_flag_is_native_only(tmp_path: Path) -> None:
    p = zdfuzz.Program.parse(LEAK.replace(" faults=1", ""))
    with pytest.raises(zdfuzz.ProgramError, match="faults=1"):
        zdfuzz.Machine.for_program(p).run(p)
    with pytest.raises(zdfuzz.ConfigError, match="faults must be between 0 and 1"):
        zdfuzz.Shape(faults=2)
    assert zdfuzz.Shape(faults=1).to_dict()["faults"] == 1 and "faults" not in zdfuzz.Shape().to_dict()
    r = CliRunner().invoke(main, ["fuzz", "--faults", "--engine", "atheris", "--corpus", str(tmp_path / "c")])
    assert r.exit_code == 2 and "not atheris" in r.output


def test_a_hypothesis_campaign_with_faults_reaches_the_error_path(tmp_path: Path) -> None:
    args = ["fuzz", "--engine", "hypothesis", "--types", "p2pdma", "--faults", "--seed", "3", "--execs", "300"]
    r = CliRunner().invoke(main, [*args, "--rules", "e4", "--time", "600", "--corpus", str(tmp_path / "h")])
    assert r.exit_code == 0, r.output
    found = _findings(tmp_path / "h")
    assert {"I-L4", "I-F10"} & set(found), found
    texts = [p.read_text() for p in (tmp_path / "h" / "findings").glob("*.zdf")]
    assert any("fail_next site=vm_insert" in t for t in texts)
