"""`zdfuzz soak` (docs/findings.md): one campaign per (preset, type, engine),
a summary rewritten after each, and a restarted soak skips what finished."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from zdfuzz.cli import main

# a few seconds of the native engine per campaign: F1 (docs/findings.md) is
# found under e4 device-dax within a few hundred programs, device-private is
# clean under e4 at this budget (the soak ran it for 10 minutes)
ARGS = ["soak", "--minutes", "0.05", "--presets", "e4", "--types", "generic,private", "--engines", "native"]


def test_soak_runs_each_campaign_records_findings_and_resumes(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, [*ARGS, "--corpus", str(tmp_path)])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "soak.json").read_text())
    runs = {x["key"]: x for x in summary["runs"]}
    assert set(runs) == {"e4/generic/native", "e4/private/native"}
    for x in runs.values():
        assert x["execs"] > 0 and x["minutes"] == 0.05
        # each campaign has its own corpus directory
        assert (tmp_path / "e4" / x["type"] / "native").is_dir()
    sigs = {f["signature"] for f in runs["e4/generic/native"]["findings"]}
    assert "I-L2 memunmap_pages generic e4" in sigs, runs["e4/generic/native"]
    for f in runs["e4/generic/native"]["findings"]:
        assert Path(f["reproducer"]).is_file()
    assert "I-L2 memunmap_pages generic e4" in r.output  # the final table

    # a second soak over the same directory runs nothing again
    again = CliRunner().invoke(main, [*ARGS, "--corpus", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert again.output.count("done earlier, skipped") == 2
    assert json.loads((tmp_path / "soak.json").read_text())["runs"] == summary["runs"]


def test_a_killed_soak_reruns_only_the_unfinished_campaigns(tmp_path: Path) -> None:
    # as if killed after the first campaign: the summary has one run
    CliRunner().invoke(main, [*ARGS, "--types", "generic", "--corpus", str(tmp_path)])
    first = json.loads((tmp_path / "soak.json").read_text())["runs"]
    assert [x["key"] for x in first] == ["e4/generic/native"]
    r = CliRunner().invoke(main, [*ARGS, "--corpus", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert r.output.count("done earlier, skipped") == 1
    runs = json.loads((tmp_path / "soak.json").read_text())["runs"]
    assert [x["key"] for x in runs] == ["e4/generic/native", "e4/private/native"]
    assert runs[0] == first[0]


def test_unknown_engine_is_refused() -> None:
    r = CliRunner().invoke(main, ["soak", "--engines", "native,afl"])
    assert r.exit_code != 0 and "afl" in r.output
