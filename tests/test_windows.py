"""Kernel sequences with a window in the middle, as task steps the engines
reach: the free path after ``->folio_free()`` (I-F3; fixed by 85be0a262e39
"mm/zone_device: do not touch device folio after calling ->folio_free()")
a DAX entry lock held across a writeback step, which the busy-page scan
skipped before 6be3e21d25ca "fs/dax: don't skip locked entries when
scanning entries" (I-X2), and the TLB flush of a migration's collect after
the page-table lock was dropped, which a MADV_DONTNEED could return inside
before 60bae7370896 "mm/migrate_device.c: flush TLB while holding PTL"
(I-W2).

Each is found by a native campaign (a fixed number of executions, seeded:
the same programs on every machine) and by the explorer under the preset
with the old code, and neither finds it under the preset with the fix; the
Rust core and the reference model agree on the reproducers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from zdfuzz.cli import main
from zdfuzz.corpus import Corpus
from zdfuzz_reference import diff

SHAPES = {
    # device-private pages that the driver can hand out again as parts of
    # order-1 folios
    "I-F3": ["--types", "private", "--pages", "2", "--procs", "1", "--addrs", "1", "--tasks", "2", "--order", "1"],
    # one FS-DAX file of two blocks, mapped and pinned by one process
    "I-X2": ["--types", "fsdax", "--pages", "2", "--procs", "1", "--addrs", "2", "--tasks", "2", "--files", "1"],
    # one page of RAM the device-private driver migrates
    "I-W2": ["--types", "private", "--pages", "1", "--procs", "1", "--addrs", "1", "--tasks", "1", "--ram", "1"],
}
#: e5 with only the free path's late read turned back (v6.19-orig also
#: lacks free_zone_device_folio_prepare, whose I-F4 is shorter)
LATE_READ = """name = "e5-late-pgmap-read"
base = "e5"
[thp]
free_rereads_pgmap = true
"""
#: e4 with only the collect's flush order turned back (e2, which has it,
#: reaches the LRU putback bug 41cddf83d8b0 fixed, I-M6, in fewer actions)
LATE_FLUSH = """name = "e4-late-tlb-flush"
base = "e4"
[migrate]
collect_flush_after_unlock = true
"""
TOMLS = {"late-read.toml": LATE_READ, "late-flush.toml": LATE_FLUSH}
CASES = [
    # (invariant, rules with the old code, preset with the fix, shortest)
    ("I-F3", "late-read.toml", "e5", 6),
    ("I-X2", "v6.15-skip-locked-entry", "e4", 9),
    ("I-W2", "late-flush.toml", "e4", 5),
]


def _signatures(corpus: Path) -> list[str]:
    return sorted(f"{f.signature.invariant} {f.signature.kind}" for f in Corpus(corpus).findings())


@pytest.mark.parametrize(("inv", "bug", "fix", "shortest"), CASES)
def test_the_explorer_finds_the_window_only_in_the_old_code(
    inv: str, bug: str, fix: str, shortest: int, tmp_path: Path
) -> None:
    shape = SHAPES[inv]
    if bug.endswith(".toml"):
        (tmp_path / bug).write_text(TOMLS[bug])
        bug = str(tmp_path / bug)
    r = CliRunner().invoke(main, ["explore", "--rules", bug, *shape, "--depth", str(shortest), "--quiet"])
    assert r.exit_code == 1, r.output
    assert f"{inv} (safety) reachable in {shortest} actions (shortest)" in r.output, r.output
    # past the eviction's walk of a freed anon_vma (docs/findings.md F5), which every era with
    # migrate_device_range has
    past = ["--ignore", "I-M10 migrate_device_range private"]
    r = CliRunner().invoke(main, ["explore", "--rules", fix, *shape, "--depth", str(shortest), "--quiet", *past])
    assert r.exit_code == 0, r.output
    assert f"no violation reachable within depth {shortest}" in r.output, r.output


def test_a_native_campaign_finds_the_skipped_locked_entry_and_not_after_the_fix(tmp_path: Path) -> None:
    args = ["fuzz", *SHAPES["I-X2"][:2], "--seed", "1", "--execs", "30000", "--time", "600"]
    r = CliRunner().invoke(main, [*args, "--rules", "v6.15-skip-locked-entry", "--corpus", str(tmp_path / "bug")])
    assert r.exit_code == 0, r.output
    assert "I-X2 truncate" in _signatures(tmp_path / "bug")
    r = CliRunner().invoke(main, [*args, "--rules", "e4", "--corpus", str(tmp_path / "fix")])
    assert r.exit_code == 0, r.output
    assert "I-X2 truncate" not in _signatures(tmp_path / "fix")


REPRODUCERS = [
    Path(__file__).resolve().parents[1] / "corpus" / "regressions" / "v6.19-orig" / "free-path-reads-reused-folio.zdf",
    Path(__file__).resolve().parents[1]
    / "corpus"
    / "regressions"
    / "v6.15-skip-locked-entry"
    / "busy-scan-skips-locked-entry.zdf",
    Path(__file__).resolve().parents[1] / "corpus" / "regressions" / "e2" / "collect-flushes-tlb-after-unlock.zdf",
]


@pytest.mark.parametrize("path", REPRODUCERS, ids=lambda p: p.stem)
def test_both_models_agree_on_the_reproducers_under_both_presets(path: Path) -> None:
    text = path.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith(("#", "rules ")))
    fixed = {"v6.19-orig": "e5"}.get(path.parent.name, "e4")
    for rules in (path.parent.name, fixed):
        a, b = diff.rust_outcome(body, rules), diff.reference_outcome(body, rules)
        assert diff.first_difference(a, b) is None, (rules, diff.first_difference(a, b))
        assert (a["violation"] is not None) == (rules == path.parent.name), (rules, a["violation"])
