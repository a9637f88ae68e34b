"""FS-DAX with PMD-sized extents (``fsdax_pmd=1``, ``--fsdax-pmd``): PMD
mappings, compound folios from v6.15 (``dax_folio_init`` / ``dax_folio_put``),
and v6.19's spurious WARN when such a folio is freed (d245f9b4ab80; fixed by
"mm/memremap: fix spurious large folio warning for FS-DAX"), reached by the
engines and the explorer, and the same in the Rust core and the reference
model."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main
from zdfuzz.corpus import Corpus
from zdfuzz.regressions import ROOT
from zdfuzz_reference import diff

REPRO = ROOT / "v6.19-orig" / "fsdax-pmd-folio-free-warns.zdf"

#: an extent associated and faulted in by a PMD, a GUP reference taken
#: through its tail, the file truncated (it waits for the reference), the
#: reference put, the extent reused by another file and unmapped through one
#: address, and the device unbound
LIFE = """config types=fsdax pgmaps=1 pages=4 cpus=2 procs=2 addrs=2 files=2 file_pages=1 tasks=2 order=1 fsdax_pmd=1
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=2
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
get_user_pages proc=0 addr=1 flags=0 cpu=1
truncate file=0 index=0 cpu=0
step task=0
put_page pfn=3 by=gup cpu=1
step task=0
step task=0
step task=0
dax_associate_entry file=1 index=0 pfn=2
dax_iomap_fault proc=1 addr=0 file=1 index=0 cpu=1
munmap proc=1 addr=1 cpu=1
memunmap_pages pgmap=0 cpu=0
"""


def _signatures(corpus: Path) -> list[str]:
    return sorted(str(f.signature) for f in Corpus(corpus).findings())


def test_a_native_campaign_finds_the_warn_under_v6_19_orig_and_not_under_e5(tmp_path: Path) -> None:
    args = ["fuzz", "--types", "fsdax", "--fsdax-pmd", "--seed", "1", "--execs", "20000"]
    r = CliRunner().invoke(main, [*args, "--rules", "v6.19-orig", "--corpus", str(tmp_path / "bug")])
    assert r.exit_code == 0, r.output
    sigs = _signatures(tmp_path / "bug")
    assert any(s.startswith("I-F11") for s in sigs), sigs
    r = CliRunner().invoke(main, [*args, "--rules", "e5", "--corpus", str(tmp_path / "fix")])
    assert r.exit_code == 0, r.output
    assert not any(s.startswith("I-F11") for s in _signatures(tmp_path / "fix"))
    # without --fsdax-pmd every FS-DAX folio is order-0: nothing to warn about
    plain = [a for a in args if a != "--fsdax-pmd"]
    r = CliRunner().invoke(main, [*plain, "--rules", "v6.19-orig", "--corpus", str(tmp_path / "pte")])
    assert not any(s.startswith("I-F11") for s in _signatures(tmp_path / "pte"))


def test_a_hypothesis_campaign_reaches_the_pmd_extent_and_the_warn(tmp_path: Path) -> None:
    args = ["fuzz", "--engine", "hypothesis", "--types", "fsdax", "--fsdax-pmd", "--seed", "1", "--execs", "300"]
    r = CliRunner().invoke(main, [*args, "--rules", "v6.19-orig", "--time", "600", "--corpus", str(tmp_path / "h")])
    assert r.exit_code == 0, r.output
    found = Corpus(tmp_path / "h").findings()
    f11 = [f for f in found if str(f.signature).startswith("I-F11")]
    assert f11, _signatures(tmp_path / "h")
    assert "fsdax_pmd=1" in f11[0].zdf.read_text()


def test_the_explorer_finds_the_warn_in_three_actions() -> None:
    shape = zdfuzz.Shape(
        types=["fsdax"], pages=2, cpus=1, procs=1, addrs=2, files=1, file_pages=1, tasks=1, fsdax_pmd=1
    )
    bug = zdfuzz.explore("v6.19-orig", shape=shape, depth=4, threads=1)
    assert bug.counterexample is not None
    assert bug.violation is not None and bug.violation.invariant == "I-F11"
    assert len(bug.counterexample.actions) == 3, bug.counterexample.to_text()
    ok = zdfuzz.explore("e5", shape=shape, depth=6, threads=1)
    assert ok.counterexample is None and ok.states > bug.states


@pytest.mark.parametrize("rules", ["e1", "e2", "e3", "e4", "e5", "v6.19-orig", "p20"])
def test_both_models_agree_on_fs_dax_pmd_extents_and_the_reproducer(rules: str) -> None:
    for text in (LIFE, REPRO.read_text()):
        a, b = diff.rust_outcome(text, rules), diff.reference_outcome(text, rules)
        assert diff.first_difference(a, b) is None, (rules, text)
    if rules != "v6.19-orig":
        assert diff.rust_outcome(LIFE, rules)["violation"] is None, rules


def test_the_shape_option_is_checked_and_written_only_when_on(tmp_path: Path) -> None:
    assert zdfuzz.Shape(types=["fsdax"], fsdax_pmd=1).order == 1  # huge pages come with it
    assert zdfuzz.Shape(types=["fsdax"], fsdax_pmd=1).to_dict()["fsdax_pmd"] == 1
    assert "fsdax_pmd" not in zdfuzz.Shape().to_dict()
    with pytest.raises(zdfuzz.ConfigError, match="fsdax"):
        zdfuzz.Shape(types=["generic"], fsdax_pmd=1)
    with pytest.raises(zdfuzz.ConfigError, match="multiple of"):
        zdfuzz.Shape(types=["fsdax"], pages=3, fsdax_pmd=1)
    r = CliRunner().invoke(main, ["fuzz", "--types", "generic", "--fsdax-pmd", "--corpus", str(tmp_path / "c")])
    assert r.exit_code == 2 and "fsdax" in r.output
    r = CliRunner().invoke(main, ["fuzz", "--types", "fsdax", "--fsdax-pmd", "--engine", "atheris"])
    assert r.exit_code == 2 and "atheris" in r.output
    p = zdfuzz.Program.parse(LIFE)
    assert "fsdax_pmd=1" in p.to_text()
