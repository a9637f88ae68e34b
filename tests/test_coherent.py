"""MEMORY_DEVICE_COHERENT (v6.0) through the CLI, the engines and the explorer.

Coherent memory is the fifth type: its pages follow the device-private
refcount rules (mm/memremap.c tests ``PRIVATE || COHERENT``) but are mapped by
present PTEs, and a FOLL_LONGTERM GUP moves a coherent page to system RAM
before pinning it ("mm/gup: migrate device coherent pages when pinning instead
of failing"). The what-if below is a GUP that forgot: the oracle reports I-G5.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main
from zdfuzz.corpus import Corpus

PINS_COHERENT = """name = "gup-pins-coherent"
base = "e4"
description = "FOLL_LONGTERM GUP forgets that coherent pages are not longterm-pinnable"
[gup]
longterm_migrates_coherent = false
"""


def _findings(corpus: Path) -> list[str]:
    return sorted({f.signature.invariant for f in Corpus(corpus).findings()})


def test_coherent_is_a_type_by_name_only_and_only_from_v6_0(tmp_path: Path) -> None:
    assert "coherent" in zdfuzz.DEVICE_TYPES and "coherent" not in zdfuzz.DEFAULT_DEVICE_TYPES
    assert zdfuzz.Shape().types == zdfuzz.DEFAULT_DEVICE_TYPES
    for era in ("e1", "e2", "p20"):
        r = CliRunner().invoke(
            main, ["fuzz", "--rules", era, "--types", "private,coherent", "--corpus", str(tmp_path / era)]
        )
        assert r.exit_code == 2, r.output
        assert "have no MEMORY_DEVICE_COHERENT" in r.output and "execs" not in r.output, r.output
        assert not (tmp_path / era).exists(), "refused before the campaign starts"
    r = CliRunner().invoke(main, ["explore", "--rules", "e1", "--types", "coherent", "--depth", "2"])
    assert r.exit_code == 2 and "have no MEMORY_DEVICE_COHERENT" in r.output, r.output


def test_both_engines_find_a_longterm_pin_of_a_coherent_page_and_not_in_the_real_eras(tmp_path: Path) -> None:
    toml = tmp_path / "pins.toml"
    toml.write_text(PINS_COHERENT)
    native = ["fuzz", "--types", "coherent", "--seed", "1", "--execs", "5000", "--time", "600"]
    r = CliRunner().invoke(main, [*native, "--rules", str(toml), "--corpus", str(tmp_path / "n")])
    assert r.exit_code == 0, r.output
    # the eviction's walk of a freed anon_vma (docs/findings.md F5) may be found beside it
    assert "I-G5" in _findings(tmp_path / "n") and set(_findings(tmp_path / "n")) <= {"I-G5", "I-M10"}
    hyp = ["fuzz", "--engine", "hypothesis", "--types", "coherent", "--seed", "1", "--execs", "300", "--time", "600"]
    r = CliRunner().invoke(main, [*hyp, "--rules", str(toml), "--corpus", str(tmp_path / "h")])
    assert r.exit_code == 0, r.output
    assert "I-G5" in _findings(tmp_path / "h") and set(_findings(tmp_path / "h")) <= {"I-G5", "I-M10"}
    # the reproducer is the kernel's sequence: a coherent page mapped, then pinned for long
    texts = [f.read_text() for f in (tmp_path / "n" / "findings").glob("*.zdf")]
    text = next(t for t in texts if t.startswith("# I-G5"))
    assert "config types=coherent" in text and "FOLL_LONGTERM" in text
    for era in ("e4", "e5"):
        r = CliRunner().invoke(main, [*native, "--rules", era, "--corpus", str(tmp_path / era)])
        assert r.exit_code == 0, r.output
        # no long-term pin; the eviction's walk of a freed anon_vma (docs/findings.md F5) may be found
        assert set(_findings(tmp_path / era)) <= {"I-M10"}, era


def test_the_explorer_proves_the_longterm_path_within_bounds(tmp_path: Path) -> None:
    shape = zdfuzz.Shape(types=["coherent"], pages=1, cpus=1, procs=1, addrs=1, tasks=1, ram=1)
    toml = tmp_path / "pins.toml"
    toml.write_text(PINS_COHERENT)
    bug = zdfuzz.explore(zdfuzz.Rules.load(str(toml)), shape=shape, depth=6, threads=1)
    assert bug.counterexample is not None
    assert bug.violation is not None and bug.violation.invariant == "I-G5"
    # shortest: memremap_pages, alloc_device_page, migrate_vma_insert_page, pin_user_pages
    assert len(bug.counterexample.actions) == 4
    ok = zdfuzz.explore("e4", shape=shape, depth=6, threads=1, ignore=["I-M10 migrate_device_range coherent"])
    assert ok.counterexample is None and ok.states > 1
