"""docs/findings.md: what the clean-era soak found.

A suspected kernel issue keeps its soak-found reproducer in
``corpus/findings/``: it must still break the recorded invariant under its
preset, and be clean under the era the write-up says is safe. A model bug the
soak found keeps the reproducer that reported it in
``corpus/findings/model-bugs/``: after the fix it must replay clean, so the
false report cannot come back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zdfuzz import regressions
from zdfuzz.corpus import Signature

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT / "corpus" / "findings"
DOC = ROOT / "docs" / "findings.md"

SUSPECTED = sorted(FINDINGS.glob("*.zdf"))
MODEL_BUGS = sorted((FINDINGS / "model-bugs").glob("*.zdf"))

# the era the write-up gives as safe for each suspected issue, and the other
# eras it says share the violation
SAFE_IN = {"F1": "e1"}
ALSO_IN = {"F1": ("e2", "e3", "e5", "p20")}


def _meta(zdf: Path) -> dict:
    return json.loads(zdf.with_suffix(".json").read_text())


def test_there_is_something_to_check() -> None:
    assert SUSPECTED, f"no suspected-issue reproducer under {FINDINGS}"
    assert MODEL_BUGS, f"no model-bug reproducer under {FINDINGS / 'model-bugs'}"


@pytest.mark.parametrize("zdf", SUSPECTED, ids=lambda p: p.name)
def test_suspected_issue_still_reproduces_and_is_clean_in_the_safe_era(zdf: Path) -> None:
    sig = _meta(zdf)["signature"]
    v = regressions.replay(zdf, sig["rules"])
    assert v.violation is not None, f"{zdf}: clean under {sig['rules']}"
    assert Signature(*v.signature) == Signature(**sig), v.violation
    fid = zdf.name.split("-")[0]
    for rules in ALSO_IN[fid]:
        other = regressions.replay(zdf, rules)
        assert other.violation is not None and other.violation.invariant == sig["invariant"], (rules, other)
    safe = SAFE_IN[fid]
    clean = regressions.replay(zdf, safe)
    assert clean.ok, f"{zdf} under {safe}: {clean.violation or clean.conformance}"


@pytest.mark.parametrize("zdf", SUSPECTED, ids=lambda p: p.name)
def test_suspected_issue_was_found_by_the_soak(zdf: Path) -> None:
    meta = _meta(zdf)
    assert meta["engine"] in ("native", "hypothesis", "atheris")
    assert meta["minimized"] is True and meta["actions"] <= meta["original_actions"]
    assert meta["time_to_find"] > 0


@pytest.mark.parametrize("zdf", MODEL_BUGS, ids=lambda p: p.name)
def test_model_bug_reproducer_replays_clean_after_the_fix(zdf: Path) -> None:
    sig = _meta(zdf)["signature"]
    v = regressions.replay(zdf, sig["rules"])
    assert v.ok, f"{zdf}: the fixed model bug is back: {v.violation or v.conformance}"


def test_the_write_up_names_every_reproducer() -> None:
    doc = DOC.read_text()
    for zdf in SUSPECTED + MODEL_BUGS:
        assert zdf.name in doc, f"docs/findings.md does not mention {zdf.name}"
    assert "SOAK_TABLE" not in doc and "F1_PROGRAM" not in doc
