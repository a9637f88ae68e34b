"""Every command's --json output follows its documented, versioned schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from zdfuzz.cli import main
from zdfuzz.jsonout import SCHEMA_DIR, VERSIONS, schema

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "json.md").read_text()

from programs import Q1  # noqa: E402


def check(command: str, args: list[str], code: int = 0) -> dict[str, Any]:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == code, r.output
    d: dict[str, Any] = json.loads(r.stdout)
    jsonschema.validate(d, schema(command))
    assert d["schema"] == f"zdfuzz.{command}/{VERSIONS[command]}"
    return d


def test_every_schema_is_a_valid_json_schema_and_documented() -> None:
    files = {p.stem for p in SCHEMA_DIR.glob("*.json")}
    assert files == set(VERSIONS)
    for name in files:
        jsonschema.Draft202012Validator.check_schema(schema(name))
        assert f"zdfuzz.{name}/{VERSIONS[name]}" in DOC, name


def test_a_schema_rejects_what_it_should() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema": "zdfuzz.replay/2", "zdfuzz": "x"}, schema("replay"))


@pytest.fixture
def q1(tmp_path: Path) -> str:
    p = tmp_path / "q1.zdf"
    p.write_text(Q1)
    return str(p)


def test_replay_json(q1: str) -> None:
    d = check("replay", ["replay", q1, "--json"], code=1)
    assert d["violation"]["invariant"] == "I-L2" and d["signature"]["device"] == "generic"
    d = check("replay", ["replay", q1, "--rules", "e1", "--json"])
    assert d["ok"] and d["violation"] is None


def test_explain_json(q1: str) -> None:
    d = check("explain", ["explain", q1, "--json"], code=1)
    assert d["steps"][0]["action"].startswith("memremap_pages")
    assert d["violation"]["step"] == 9


def test_minimize_json(q1: str, tmp_path: Path) -> None:
    out = tmp_path / "small.zdf"
    d = check("minimize", ["minimize", q1, "-o", str(out), "--json"])
    assert d["actions"] <= d["original_actions"] and out.read_text() == d["program"]


def test_explore_json() -> None:
    d = check("explore", ["explore", "--rules", "e4", "--types", "generic", "--depth", "3", "--json"])
    assert d["counterexample"] is None and d["stop"] == "depth" and len(d["levels"]) == 4


def test_fuzz_and_corpus_list_json(tmp_path: Path) -> None:
    corpus = tmp_path / "soak" / "e1-generic"
    d = check(
        "fuzz",
        ["fuzz", "--rules", "e1", "--time", "10", "--execs", "3000", "--seed", "1"]
        + ["--corpus", str(corpus), "--json"],
    )
    assert d["findings"] and d["baseline"] is None
    # the stats file: JSON lines following zdfuzz.stats/1
    lines = [json.loads(x) for x in Path(d["stats_file"]).read_text().splitlines()]
    assert lines
    for line in lines:
        jsonschema.validate(line, schema("stats"))
    assert lines[-1]["findings"] == len(d["findings"])
    assert [x["elapsed"] for x in lines] == sorted(x["elapsed"] for x in lines)
    # corpus list looks into subdirectories
    listed = check("corpus-list", ["corpus", "list", str(tmp_path), "--json"])
    assert {f["reproducer"] for f in listed["findings"]} == {f["reproducer"] for f in d["findings"]}


def test_compare_json(tmp_path: Path) -> None:
    d = check(
        "compare",
        ["compare", "e1", "p20", "--time", "0", "--types", "generic", "--corpus", str(tmp_path), "--json"],
        code=1,
    )
    assert d["counts"]["broken"] == 1


def test_rules_json() -> None:
    d = check("rules-list", ["rules", "list", "--json"])
    assert "p20" in [p["name"] for p in d["presets"]]
    d = check("rules-show", ["rules", "show", "p20", "--json"])
    assert any(s["overridden"] for s in d["switches"])
    d = check("rules-diff", ["rules", "diff", "e1", "p20", "--json"])
    assert d["switches"]


def test_every_command_with_output_has_json() -> None:
    """fuzz, replay, explain, minimize, explore, compare, corpus list and the
    rules commands take --json."""
    import click

    def has_json(cmd: click.Command) -> bool:
        return any(p.name == "as_json" for p in cmd.params)

    group = main
    assert isinstance(group, click.Group)
    for name in ("fuzz", "replay", "explain", "minimize", "explore", "compare"):
        assert has_json(group.commands[name]), name
    for grp, sub in (("corpus", "list"), ("rules", "list"), ("rules", "show"), ("rules", "diff")):
        g = group.commands[grp]
        assert isinstance(g, click.Group) and has_json(g.commands[sub]), (grp, sub)


def test_no_color_and_no_color_env(q1: str) -> None:
    forced = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "NO_COLOR": None}
    r = CliRunner().invoke(main, ["replay", q1, "--quiet"], env=forced, color=True)
    assert "\x1b[1;31m" in r.output  # bold red: the control case has colour
    r = CliRunner().invoke(main, ["replay", q1, "--quiet"], env={**forced, "NO_COLOR": "1"}, color=True)
    assert r.exit_code == 1 and "I-L2" in r.output
    assert "31m" not in r.output  # no colour (bold may stay, as no-color.org allows)
    r = CliRunner().invoke(main, ["--no-color", "replay", q1, "--quiet"], env=forced, color=True)
    assert r.exit_code == 1 and "I-L2" in r.output
    assert "\x1b[" not in r.output  # no styles at all


def test_piped_output_never_cuts_names_or_words() -> None:
    """At 80 columns (a pipe), switch names and file paths stay whole and
    sentences wrap at spaces."""
    import zdfuzz

    r = CliRunner().invoke(main, ["rules", "show", "p20"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    for key, _v, doc in zdfuzz.Rules.preset("p20").switches():
        assert re.search(rf"^[* ] {re.escape(key)} = ", r.output, re.M), key
        words = set(r.output.split())
        assert all(w in words for w in doc.split()), doc
    assert "…" not in r.output
    assert max(len(line) for line in r.output.splitlines()) <= 80


def test_off_a_terminal_a_campaign_prints_status_lines(tmp_path: Path) -> None:
    """A log gets plain status lines (elapsed, execs, coverage, corpus,
    findings), not a live table's escape codes."""
    from zdfuzz.campaign import Campaign, Config

    r = CliRunner().invoke(
        main, ["fuzz", "--rules", "e4", "--time", "10", "--execs", "2000", "--seed", "1", "--corpus", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    status = [line for line in r.output.splitlines() if re.match(r"\d+/10s  \d+ execs  \d+/s  coverage \d+", line)]
    assert status, r.output
    assert "\x1b[" not in r.output and "┃" not in r.output
    # the interval: a line when it has passed, none before
    import io

    from rich.console import Console

    buf = io.StringIO()
    c = Campaign(Config(rules="e4", corpus=tmp_path / "c2", status_interval=5.0, stats_interval=0), Console(file=buf))
    c._status = c.start
    c.tick()
    assert buf.getvalue() == ""
    c._status = c.start - 5.0
    c.tick()
    assert "execs" in buf.getvalue() and c.stats_path is None


@pytest.mark.parametrize("args", [["kinds"], ["regressions", "list"], ["rules", "list"], ["corpus", "list", "."]])
def test_listings_at_80_columns_keep_names_whole(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zdfuzz
    from zdfuzz import regressions as reg

    # `corpus list .` looks into subdirectories: run it where there is no
    # corpus (the checkout has deliberately broken ones under tests/)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, args, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "…" not in r.output and "┃" not in r.output
    words = set(r.output.replace(",", " ").replace(":", " ").split())
    if args == ["kinds"]:
        assert {name for name, _a, _d in zdfuzz.action_kinds()} <= words
    if args == ["regressions", "list"]:
        assert {b.name for b in reg.BUGS} <= words
        assert {reg.display_path(reg.reproducer_path(b)) for b in reg.BUGS} <= words
    if args == ["rules", "list"]:
        assert set(zdfuzz.Rules.presets()) <= words
