"""The Python API of the machine (python/zdfuzz/_core.pyi)."""

from __future__ import annotations

import json

import pytest

import zdfuzz
from programs import Q1  # noqa: E402
from zdfuzz import Action, InvariantViolation, Machine, Program, ProgramError, Rules, Shape


def test_run_reports_the_seed_q1_violation_under_p20_only() -> None:
    p = Program.parse(Q1)
    v = Machine(rules="p20", shape=Shape(types=("generic",))).run(p)
    assert not v.ok
    assert v.violation is not None
    assert v.violation.invariant == "I-L2"
    assert v.violation.category == "safety"
    assert v.violation.step == 9
    assert "GUP reference" in v.violation.message
    assert len(v.violation.trace) == 10
    assert v.violation.trace[2].split()[1] == "get_user_pages"
    clean = Machine(rules="e1", shape={"types": ["generic"]}).run(p)
    assert clean.ok, clean.violation
    assert clean.violation is None


def test_machine_defaults_and_shape_mismatch() -> None:
    m = Machine()
    assert m.rules.name == "e3"
    assert m.shape.types == ["private", "fsdax", "generic", "p2pdma"] == zdfuzz.DEFAULT_DEVICE_TYPES
    assert zdfuzz.DEVICE_TYPES == [*zdfuzz.DEFAULT_DEVICE_TYPES, "coherent"]
    with pytest.raises(ProgramError, match="another machine shape"):
        m.run(Program.parse(Q1))
    with pytest.raises(ValueError, match="unknown device type"):
        Machine(shape=Shape(types=("gpu",)))
    with pytest.raises(ValueError, match="pages .* between 1 and 1024"):
        Machine(shape={"pages": 0})
    with pytest.raises(ValueError, match="unknown rules"):
        Machine(rules="e9")


def test_step_enabled_actions_state_and_reset() -> None:
    m = Machine(rules="e3", shape=Shape(types=("private",)))
    first = [str(a) for a in m.enabled_actions()]
    assert "memremap_pages pgmap=0" in first
    assert not any(a.startswith("alloc_device_page") for a in first)  # no pgmap yet
    assert "exit_mmap proc=1 cpu=0" in first
    m.step("memremap_pages pgmap=0")
    assert "alloc_device_page pgmap=0 cpu=1" in [str(a) for a in m.enabled_actions()]
    m.step(Action.parse("alloc_device_page pgmap=0 cpu=0"))
    st = m.state()
    assert st["pgmaps"][0]["ref"] == 2  # initial + one per allocated page (E3)
    assert st["pages"][0]["refcount"] == 1 and st["pages"][0]["locked"]
    assert "driver" in st["pages"][0]["holders"]
    assert m.why_not("free_device_page pfn=1") == "the driver does not hold this page"
    with pytest.raises(ProgramError, match="not enabled: the driver does not hold"):
        m.step("free_device_page pfn=1")
    m.reset()
    assert m.steps == 0
    assert m.state()["pgmaps"][0]["state"] == "unused"


def test_step_raises_invariant_violation() -> None:
    m = Machine(rules="e2", shape=Shape(types=("private",)))
    for line in Q_E2:
        m.step(line)
    with pytest.raises(InvariantViolation) as info:
        m.step("step task=0")
    assert info.value.violation.invariant == "I-L2"
    assert m.violation is not None
    v = m.finish()
    assert not v.ok


Q_E2 = [
    "memremap_pages pgmap=0",
    "alloc_device_page pgmap=0",
    "migrate_vma_insert_page proc=0 addr=0 pfn=0",
    "memunmap_pages pgmap=0",
    "step task=0",
    "step task=0",
    "step task=0",
    "rcu_grace_period",
    "step task=0",
]


def test_run_bytes_is_deterministic_and_total() -> None:
    m = Machine(rules="e1")
    for data in (b"", b"\x00", bytes(range(256)), b"\xff" * 100):
        a = m.run_bytes(data)
        b = m.run_bytes(data)
        assert (a.ok, a.steps) == (b.ok, b.steps)
        assert str(a.violation) == str(b.violation)
    traced = m.run_bytes(bytes(range(256)), trace=True)
    assert traced.trace and traced.trace[0]["step"] == 0


def test_program_encodings_round_trip() -> None:
    data = bytes((i * 97 + 13) % 256 for i in range(300))
    p = Program.from_bytes(data, rules="e4")
    assert len(p) > 10
    assert p.rules == "e4"
    assert Program.from_bytes(p.to_bytes(), rules="e4") == p
    assert Program.parse(p.to_text()) == p
    assert Program.from_json(p.to_json()) == p
    assert json.loads(p.to_json())["ops"][0]["op"] == p.actions[0].name


def test_program_errors_name_line_and_column() -> None:
    with pytest.raises(ProgramError) as info:
        Program.parse("rules e1\n\nmemremap_pages pgmap=0\nput_page pfn=1 by=nobody\n")
    assert (info.value.line, info.value.col) == (4, 19)
    assert "gup or kernel" in info.value.message
    with pytest.raises(ProgramError) as info:
        Program.from_json('{"ops": [}')
    assert info.value.line == 1


def test_rules_api() -> None:
    assert Rules.presets() == ["e1", "e2", "e3", "e4", "e5", "p20"]
    r = Rules.preset("v6.1")
    assert r.name == "e3" and r.kernel == "v6.1"
    switches = {k: v for k, v, _ in r.switches()}
    assert switches["types.private.init_rc"] == "0"
    assert switches["types.fsdax.init_rc"] == "1"
    toml = 'name = "mine"\nbase = "e3"\ndescription = "x"\n[types.fsdax]\ninit_rc = 0\nfree_rc = 0\n'
    mine = Rules.from_toml(toml, "mine.toml")
    assert mine.base == "e3"
    assert dict((k, v) for k, v, _ in mine.switches())["types.fsdax.init_rc"] == "0"
    with pytest.raises(ValueError, match=r"mine.toml:4:1: unknown switch `types.fsdax.init`"):
        Rules.from_toml('name = "m"\nbase = "e3"\n[types.fsdax]\ninit = 0\n', "mine.toml")
    # a full preset dump is itself a valid rules file: the presets are files
    # of the same format (python/zdfuzz/presets/e3.toml names base = "e2")
    dump = r.to_toml().replace('name = "e3"', 'name = "copy"')
    assert 'base = "e2"' in dump
    copy = Rules.from_toml(dump)
    assert copy.name == "copy" and copy.switches() == r.switches()


def test_invariants_and_kinds_are_listed() -> None:
    ids = [i for i, _ in zdfuzz.invariants()]
    assert "I-L2" in ids and "I-X2" in ids
    assert all(doc for _, doc in zdfuzz.invariants())
    kinds = {name: args for name, args, _ in zdfuzz.action_kinds()}
    assert kinds["memunmap_pages"] == ["pgmap", "cpu"]
    assert kinds["put_page"] == ["pfn", "by", "cpu"]


def test_migration_actions_reach_python() -> None:
    m = Machine(rules="e5", shape=Shape(types=("private",), ram=4, order=1))
    m.step("memremap_pages pgmap=0")
    m.step("do_huge_pmd_anonymous_page proc=0 addr=0 cpu=0")
    names = {a.name for a in m.enabled_actions()}
    for kind in ("migrate_vma_setup", "cpu_write", "split_huge_pmd", "split_huge_page", "mbind", "alloc_device_folio"):
        assert kind in names, kind
    a = Action.parse("migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM|COMPOUND cpu=1")
    assert a.args["select"] == "SYSTEM|COMPOUND"
    assert str(a) == "migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM|COMPOUND cpu=1"
    m.step(a)
    pages = m.state()["pages"]
    ram = [p for p in pages if p["pgmap"] is None]
    assert len(ram) == 4 and ram[0]["order"] == 1 and ram[1]["head"] == ram[0]["pfn"]
    e4 = Machine(rules="e4", shape=Shape(types=("private",)))
    e4.step("memremap_pages pgmap=0")
    with pytest.raises(ProgramError, match="COMPOUND is not supported"):
        e4.step("migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM|COMPOUND")


def test_regression_presets() -> None:
    names = {n: fixed for n, fixed, _ in Rules.regressions()}
    assert names["v5.1"] == "e1" and names["v6.19-orig"] == "e5"
    r = Rules.preset("v6.19-orig")
    assert r.base == "e5" and "fixed by" in r.description
    switches = dict((k, v) for k, v, _ in r.switches())
    assert switches["thp.free_prepare"] == "false"
    assert dict((k, v) for k, v, _ in Rules.preset("e5").switches())["thp.free_prepare"] == "true"
    with pytest.raises(ValueError, match="regression presets: v4.10"):
        Rules.preset("v9.9")


def test_act_returns_the_violation_and_what_the_action_brought_into_use() -> None:
    """One typed call per step (what the hypothesis state machine uses): the
    violation as data, the objects created, the actions enabled next."""
    m = Machine(rules="p20", shape=Shape(types=["generic"], pages=2))
    r = m.act("memremap_pages pgmap=0")
    assert (r.violation, r.pgmaps, r.pages, r.pins, r.tasks) == (None, [0], [], [], [])
    assert [str(a) for a in r.enabled] == [str(a) for a in m.enabled_actions()]
    r = m.act("dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0")
    assert (r.pgmaps, r.pages, r.pins) == ([], [1], [])  # a mapping holds it; not a pin
    r = m.act("pin_user_pages proc=0 addr=0 flags=0 cpu=0")
    assert (r.pages, r.pins) == ([], [1])  # held already, newly pinned
    r = m.act("memunmap_pages pgmap=0 cpu=0")
    assert r.tasks == [0]
    for _ in range(3):
        r = m.act("step task=0")
    r = m.act("rcu_grace_period")
    r = m.act("step task=0")
    r = m.act("step task=0")
    assert r.violation is not None and r.violation.invariant == "I-L2" and r.enabled == []
    with pytest.raises(ProgramError, match="stopped"):
        m.act("rcu_grace_period")
