"""The regression corpus (docs/coverage.md): every historical bug the model expresses
has a campaign-found reproducer that breaks its invariant under the preset
with the code as it was and is clean under the preset with the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import zdfuzz
from zdfuzz import regressions

BUGS = {b.name: b for b in regressions.BUGS}


@pytest.mark.parametrize("name", sorted(BUGS))
def test_every_bug_has_a_reproducer_with_metadata(name: str) -> None:
    b = BUGS[name]
    zdf = regressions.reproducer_path(b)
    assert zdf.is_file(), f"{name}: no reproducer at {zdf} (run `zdfuzz regressions find`)"
    meta = json.loads(zdf.with_suffix(".json").read_text())
    assert meta["preset"] == b.preset and meta["invariant"] == b.invariant and meta["fixed_in"] == b.fixed_in
    # found by a campaign, minimized, and how
    assert meta["engine"] in ("native", "hypothesis", "atheris")
    assert isinstance(meta["seed"], int) and 0 < meta["seconds_to_find"] <= 60 * 3
    assert meta["actions"] <= meta["original_actions"]
    assert meta["fix"]
    # the catalogue row, the same in the metadata and the reproducer's header
    assert meta["catalogue"] == b.catalogue
    assert zdf.read_text().splitlines()[1].startswith(f"# Catalogue: {b.catalogue}. Found by the ")
    # the 60-second campaign under the fixing preset did not find the signature
    assert meta["fixed_campaign"]["signature_found"] is False, meta["fixed_campaign"]
    # the message recorded (and in the header) is what the reproducer itself
    # reports, with its own page numbers, not those of the program as found
    text = zdf.read_text()
    assert meta["message"] == regressions.replayed_message(text, b.preset)
    assert f"# {b.preset}; {b.invariant}: {meta['message']}" in text.splitlines()


@pytest.mark.parametrize("name", sorted(BUGS))
def test_reproducer_breaks_its_era_and_is_clean_under_the_fix(name: str) -> None:
    b = BUGS[name]
    zdf = regressions.reproducer_path(b)
    buggy = regressions.replay(zdf, b.preset)
    assert buggy.violation is not None, f"{zdf}: clean under {b.preset}"
    assert buggy.violation.invariant == b.invariant, buggy.violation
    fixed = regressions.replay(zdf, b.fixed_in)
    assert fixed.ok, f"{zdf} under {b.fixed_in}: {fixed.violation or fixed.conformance}"


def test_reproducer_is_minimal_in_actions() -> None:
    # removing any one action loses the violation or makes the program invalid
    b = BUGS["unbind-does-not-wait"]
    program = zdfuzz.Program.parse(regressions.reproducer_path(b).read_text())
    lines = program.to_text().splitlines()
    actions = [i for i, line in enumerate(lines) if line and not line.startswith(("#", "rules", "config"))]
    assert len(actions) >= 2
    for i in actions:
        text = "\n".join(line for j, line in enumerate(lines) if j != i) + "\n"
        try:
            p = zdfuzz.Program.parse(text)
            v = zdfuzz.Machine.for_program(p, rules=zdfuzz.Rules.preset(b.preset)).run(p)
        except zdfuzz.ProgramError:
            continue
        assert v.violation is None or v.violation.invariant != b.invariant, f"line {i} is not needed"


def test_check_is_clean_on_the_corpus_and_reports_a_broken_entry(tmp_path: Path) -> None:
    assert regressions.check() == []
    # a copy whose metadata names the wrong fix: check must say so
    shutil.copytree(regressions.ROOT, tmp_path / "r")
    meta_path = tmp_path / "r" / "v5.1" / "unbind-does-not-wait.json"
    meta = json.loads(meta_path.read_text())
    meta["fixed_in"] = "v5.1"
    meta_path.write_text(json.dumps(meta))
    problems = regressions.check(tmp_path / "r")
    assert len(problems) == 1 and "fixing preset v5.1 not clean" in problems[0], problems


def test_metadata_missing_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "e3").mkdir()
    (tmp_path / "e3" / "x.zdf").write_text("config types=generic\nmemremap_pages pgmap=0\n")
    with pytest.raises(ValueError, match=r"x\.zdf: no metadata file x\.json"):
        regressions.entries(tmp_path)


def test_the_regression_corpus_and_answers_ship_in_the_package(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from click.testing import CliRunner

    import zdfuzz
    from zdfuzz import regressions as reg
    from zdfuzz.cli import main

    pkg = Path(zdfuzz.__file__).resolve().parent
    assert reg.ROOT.is_relative_to(pkg) and reg.ANSWERS.is_relative_to(pkg)
    assert len(reg.entries()) >= 13
    assert (reg.ANSWERS / "q1-generic.zdf").is_file()
    # a check of nothing is an error, never a pass
    r = CliRunner().invoke(main, ["regressions", "check", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "no reproducers" in r.output
