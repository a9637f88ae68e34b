"""docs/answers.md: every program it cites replays to the verdict it states,
and the small explorer bounds it quotes hold."""

from __future__ import annotations

from pathlib import Path

import pytest

import zdfuzz

ANSWERS = Path(__file__).resolve().parents[1] / "corpus" / "answers"


def verdict(name: str, rules: str) -> zdfuzz.Verdict:
    program = zdfuzz.Program.parse((ANSWERS / name).read_text())
    r = zdfuzz.Rules.load(str(ANSWERS / rules)) if rules.endswith(".toml") else zdfuzz.Rules.preset(rules)
    return zdfuzz.Machine.for_program(program, rules=r).run(program)


def invariant(v: zdfuzz.Verdict) -> str | None:
    return v.violation.invariant if v.violation is not None else None


@pytest.mark.parametrize(
    ("name", "rules", "expected"),
    [
        ("q1-generic.zdf", "p20", "I-L2"),
        ("q1-generic.zdf", "e1", None),
        ("q1-fsdax.zdf", "p20", "I-L2"),
        ("q1-fsdax.zdf", "p20-busyfix.toml", "I-L2"),
        ("q1-fsdax.zdf", "e1", None),
        ("q1-fsdax.zdf", "e1-busyfix.toml", None),
        ("q1-private.zdf", "p20", "I-L2"),
        ("q1-private.zdf", "e1", "I-F9"),
        ("q2-busy-scan.zdf", "e3", "I-X2"),
        ("q2-busy-scan.zdf", "e1", "I-X2"),
        ("q2-busy-scan.zdf", "e4", None),
        ("q2-fsdax-states.zdf", "e3", None),
        ("q2-fsdax-states.zdf", "e4", None),
    ],
)
def test_answer_programs_replay_as_stated(name: str, rules: str, expected: str | None) -> None:
    v = verdict(name, rules)
    assert invariant(v) == expected, (name, rules, v.violation)
    assert v.conformance is None


def test_q2_refcounts_of_the_three_states() -> None:
    program = zdfuzz.Program.parse((ANSWERS / "q2-fsdax-states.zdf").read_text())
    seen = {}
    for rules in ("e3", "e4"):
        m = zdfuzz.Machine.for_program(program, rules=zdfuzz.Rules.preset(rules))
        rows = []
        for a in program.actions:
            m.step(a)
            page = m.state()["pages"][0]
            rows.append((page["refcount"], page["mapcount"]))
        seen[rules] = rows
    # free, cached, mapped, pinned + mapped, pinned + unmapped, cached again
    assert seen["e3"] == [(1, 0), (1, 0), (1, 0), (2, 0), (2, 0), (1, 0)]
    assert seen["e4"] == [(0, 0), (0, 0), (1, 1), (2, 1), (1, 0), (0, 0)]


def test_q1_explorer_bounds() -> None:
    # P2PDMA: nothing under p20; the E1 per-page put is the bug (I-F1, 7 actions)
    p20 = zdfuzz.explore(
        "p20", shape=dict(types=["p2pdma"], pages=4, procs=2, addrs=2, tasks=2, ram=0, order=0), depth=8
    )
    assert p20.counterexample is None and p20.states == 20570
    e1 = zdfuzz.explore("e1", shape=dict(types=["p2pdma"], pages=4, procs=2, addrs=2, tasks=2, ram=0, order=0), depth=8)
    assert e1.violation is not None and e1.violation.invariant == "I-F1" and e1.depth_reached == 7
    # PRIVATE under the eviction contract: nothing, in either era
    for rules in ("p20-evict.toml", "e1-evict.toml"):
        r = zdfuzz.explore(
            zdfuzz.Rules.load(str(ANSWERS / rules)),
            shape=dict(types=["private"], pages=1, procs=1, addrs=1, tasks=2, ram=0, order=0),
            depth=10,
        )
        assert r.counterexample is None, rules
    # GENERIC: the shortest p20 counterexample is the 10 actions of q1-generic.zdf
    g = zdfuzz.explore("p20", shape=dict(types=["generic"], pages=1, procs=1, addrs=1, tasks=1), depth=12)
    assert g.counterexample is not None and len(g.counterexample) == 10


def test_q2_bounds_with_pmd_sized_extents() -> None:
    shape = dict(types=["fsdax"], pages=4, procs=1, addrs=2, tasks=2, files=1, file_pages=2, fsdax_pmd=1)
    e3 = zdfuzz.explore("e3", shape=shape, depth=8)
    assert e3.violation is not None and e3.violation.invariant == "I-X2" and e3.depth_reached == 8
    e4 = zdfuzz.explore("e4", shape=shape, depth=10)
    assert e4.counterexample is None and (e4.states, e4.transitions) == (105829, 741177)
