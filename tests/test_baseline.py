"""Judging a change against a baseline: fuzz --baseline/--both, explore
--baseline/--ignore, compare, rules show/diff."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import zdfuzz
from zdfuzz.baseline import bug, label, overrides, replay, rules_diff
from zdfuzz.cli import main
from zdfuzz.corpus import Signature

NOOP = 'base = "e3"\nname = "e3-noop"\n'


def run_json(args: list[str], code: int = 0) -> dict:  # type: ignore[type-arg]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == code, r.output
    # human output goes to stderr; stdout is the document
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_a_campaign_on_a_no_op_toml_reports_no_new_finding(tmp_path: Path) -> None:
    toml = tmp_path / "noop.toml"
    toml.write_text(NOOP)
    d = run_json(
        ["fuzz", "--rules", str(toml), "--time", "20", "--execs", "20000", "--seed", "1"]
        + ["--corpus", str(tmp_path / "c"), "--json"]
    )
    assert d["baseline"] == "e3"  # the TOML's base, by default
    assert d["findings"], "e3's own bugs are found"
    assert d["counts"]["new"] == 0
    assert {f["label"] for f in d["findings"]} == {"shared"}
    # the label is in each finding's metadata
    for f in d["findings"]:
        meta = json.loads(Path(f["reproducer"][: -len(".zdf")] + ".json").read_text())
        assert (meta["label"], meta["baseline"]) == ("shared", "e3")


def test_p20_campaign_tells_the_rfc_bugs_from_v5_10_bugs(tmp_path: Path) -> None:
    d = run_json(["fuzz", "--time", "20", "--execs", "20000", "--seed", "1", "--corpus", str(tmp_path), "--json"])
    assert d["rules"] == "p20" and d["baseline"] == "e1"
    labels = {
        (f["signature"]["invariant"], f["signature"]["kind"], f["signature"]["device"]): f["label"]
        for f in d["findings"]
    }
    assert labels[("I-L2", "memunmap_pages", "generic")] == "new"
    assert labels[("I-X2", "truncate", "fsdax")] == "shared"
    # every label is what replaying under e1 says
    e1 = zdfuzz.Rules.resolve("e1")
    for f in d["findings"]:
        program = zdfuzz.Program.parse(Path(f["reproducer"]).read_text())
        r = replay(program, e1)
        same = r.signature is not None and bug(r.signature) == bug(Signature(**f["signature"]))
        assert f["label"] == ("shared" if same else "new"), f


def test_baseline_none_turns_labels_off(tmp_path: Path) -> None:
    d = run_json(
        [
            "fuzz",
            "--time",
            "5",
            "--execs",
            "3000",
            "--seed",
            "1",
            "--corpus",
            str(tmp_path),
            "--baseline",
            "none",
            "--json",
        ]
    )
    assert d["baseline"] is None and all(f["label"] is None for f in d["findings"])


def test_both_runs_the_baseline_and_labels_fixed(tmp_path: Path) -> None:
    d = run_json(
        ["fuzz", "--time", "20", "--execs", "20000", "--seed", "1", "--corpus", str(tmp_path), "--both", "--json"]
    )
    b = d["baseline_run"]
    assert b["rules"] == "e1" and b["baseline"] == "p20"
    labels = {(f["signature"]["invariant"], f["signature"]["device"]): f["label"] for f in b["findings"]}
    assert labels[("I-F1", "p2pdma")] == "fixed"  # the RFC fixes v5.10's p2pdma get_page
    assert labels[("I-X2", "fsdax")] == "shared"
    assert b["counts"]["new"] == 0


def test_both_needs_a_baseline() -> None:
    r = CliRunner().invoke(main, ["fuzz", "--rules", "e1", "--both", "--time", "1"])
    assert r.exit_code == 2 and "e1 has no base" in r.output


def test_label_of_one_program() -> None:
    from programs import Q1

    p = zdfuzz.Program.parse(Q1)
    sig = Signature("I-L2", "memunmap_pages", "generic", "p20")
    lab, r = label(sig, p, zdfuzz.Rules.resolve("e1"))
    assert (lab, r.signature, r.describe()) == ("new", None, "clean under e1")
    lab, r = label(sig, p, zdfuzz.Rules.resolve("p20"))
    assert lab == "shared"
    lab, _ = label(sig, p, zdfuzz.Rules.resolve("e1"), of_baseline=True)
    assert lab == "fixed"


def test_explore_baseline_skips_what_e1_shares(tmp_path: Path) -> None:
    shape = ["--types", "private", "--pages", "1", "--procs", "1", "--addrs", "1", "--tasks", "1", "--ram", "1"]
    first = run_json(["explore", "--rules", "p20", *shape, "--depth", "12", "--quiet", "--json"], code=1)
    assert first["signature"]["invariant"] == "I-M6"  # a v5.10 migration bug, shortest
    out = tmp_path / "new.zdf"
    d = run_json(
        [
            "explore",
            "--rules",
            "p20",
            *shape,
            "--depth",
            "12",
            "--quiet",
            "--json",
            "--baseline",
            "e1",
            "--out",
            str(out),
        ],
        code=1,
    )
    assert d["baseline"] == "e1"
    skipped = {s["signature"]["invariant"] for s in d["skipped"]}
    assert "I-M6" in skipped and all("shared with e1" in s["why"] for s in d["skipped"])
    sig = d["signature"]
    assert (sig["invariant"], sig["kind"], sig["device"]) == ("I-L2", "memunmap_pages", "private")
    # new: e1 does not break the same way on this program
    program = zdfuzz.Program.parse(out.read_text())
    r = replay(program, zdfuzz.Rules.resolve("e1"))
    assert r.signature is None or bug(r.signature) != ("I-L2", "memunmap_pages", "private")
    assert len(program) >= len(zdfuzz.Program.parse(first["counterexample"]))


def test_explore_ignore_goes_past_a_listed_signature() -> None:
    shape = ["--types", "generic", "--pages", "1", "--procs", "1", "--addrs", "1", "--tasks", "1"]
    d = run_json(["explore", "--rules", "p20", *shape, "--depth", "12", "--quiet", "--json"], code=1)
    assert d["signature"]["invariant"] == "I-L2"
    d = run_json(
        ["explore", "--rules", "p20", *shape, "--depth", "12", "--quiet", "--json"]
        + ["--ignore", "I-L2 memunmap_pages generic"],
    )
    assert d["counterexample"] is None and d["stop"] == "depth"
    r = CliRunner().invoke(main, ["explore", "--rules", "p20", "--depth", "1", "--ignore", "I-L2"])
    assert r.exit_code == 2 and "INVARIANT KIND DEVICE" in r.output


def test_compare_e1_p20_shows_what_the_rfc_breaks_and_nothing_e1_had(tmp_path: Path) -> None:
    d = run_json(["compare", "e1", "p20", "--time", "3", "--corpus", str(tmp_path), "--json"], code=1)
    rows = {(r["invariant"], r["kind"], r["device"]): r for r in d["rows"]}
    broken = {k for k, r in rows.items() if r["verdict"] == "broken"}
    fixed = {k for k, r in rows.items() if r["verdict"] == "fixed"}
    assert ("I-L2", "memunmap_pages", "generic") in broken
    assert ("I-F1", "get_page", "p2pdma") in fixed
    assert rows[("I-X2", "truncate", "fsdax")]["verdict"] == "unchanged"
    assert d["counts"] == {v: sum(1 for r in d["rows"] if r["verdict"] == v) for v in ("broken", "fixed", "unchanged")}
    # nothing e1 already had: no reproducer of either side breaks a broken bug under e1
    e1, p20 = zdfuzz.Rules.resolve("e1"), zdfuzz.Rules.resolve("p20")
    under_e1 = set()
    for f in (tmp_path / "findings").glob("*.zdf"):
        r = replay(zdfuzz.Program.parse(f.read_text()), e1)
        if r.signature is not None:
            under_e1.add(bug(r.signature))
    assert not broken & under_e1
    # the campaigns labelled their findings against each other
    for meta in (tmp_path / "findings").glob("*.json"):
        m = json.loads(meta.read_text())
        if m["engine"] == "native":
            want = {"new", "shared"} if m["signature"]["rules"] == "p20" else {"fixed", "shared"}
            assert m["label"] in want and m["baseline"] == ("e1" if m["signature"]["rules"] == "p20" else "p20")
    # each row's reproducer shows its verdict
    for k, r in rows.items():
        program = zdfuzz.Program.parse(Path(r["reproducer"]).read_text())
        sa, sb = replay(program, e1).signature, replay(program, p20).signature
        if r["verdict"] == "broken":
            assert sb is not None and bug(sb) == k
        elif r["verdict"] == "fixed":
            assert sa is not None and bug(sa) == k


def test_compare_prints_the_verdict_table(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main, ["compare", "e1", "p20", "--time", "0", "--types", "generic,p2pdma", "--corpus", str(tmp_path)]
    )
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert out.startswith("e1 -> p20: 1 broken, 1 fixed, 0 unchanged")
    broken = out.split("broken by p20")[1].split("fixed by p20")[0]
    assert "I-L2 memunmap_pages generic: 10 actions (explore)" in broken
    assert "clean under e1" in broken
    assert "I-F1 get_page p2pdma" in out.split("fixed by p20")[1]


def test_compare_a_rule_set_with_itself_breaks_nothing(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["compare", "e3", "e3", "--time", "0", "--types", "fsdax", "--corpus", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("e3 -> e3: 0 broken, 0 fixed, ")
    assert "I-X2 truncate fsdax" in r.stdout.split("unchanged:")[1]


def test_rules_show_marks_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text('base = "e3"\nname = "mine"\n[types.generic]\nput_pgmap_on_zero = true\n')
    over = overrides(str(toml))
    assert over == {"types.generic.put_pgmap_on_zero": "false"}
    r = CliRunner().invoke(main, ["rules", "show", str(toml)])
    assert r.exit_code == 0, r.output
    assert "* types.generic.put_pgmap_on_zero = true   (e3: false)" in r.output
    assert "  types.generic.init_rc = " in r.output  # not marked
    d = run_json(["rules", "show", str(toml), "--json"])
    marked = [s["switch"] for s in d["switches"] if s["overridden"]]
    assert marked == ["types.generic.put_pgmap_on_zero"]
    # a preset: what its file sets over its base
    assert set(overrides("p20")) >= {d.switch for d in rules_diff("e1", "p20")}


def test_rules_diff_lists_differing_switches_with_docs() -> None:
    diffs = {d.switch: d for d in rules_diff("e1", "p20")}
    assert diffs["types.generic.put_pgmap_on_zero"].a == "true"
    assert diffs["types.generic.put_pgmap_on_zero"].b == "false"
    assert "types.generic.init_rc" not in diffs
    r = CliRunner().invoke(main, ["rules", "diff", "e1", "p20"])
    assert r.exit_code == 0
    assert f"{len(diffs)} switch(es) differ between e1 and p20" in r.output
    assert "types.generic.put_pgmap_on_zero: e1 true -> p20 false" in r.output
    assert diffs["types.generic.put_pgmap_on_zero"].doc.split()[0] in r.output
    assert rules_diff("e3", "v6.1") == []
