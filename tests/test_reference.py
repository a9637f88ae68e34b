"""The pure-Python reference model: its tables match the Rust core's, its API
is zdfuzz.Machine's, and fixed programs (every invariant's firing program,
the corpus seeds, THP round trips) give identical outcomes on both sides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import zdfuzz
import zdfuzz_reference as reference
from zdfuzz_reference import diff
from zdfuzz_reference.ops import KINDS
from zdfuzz_reference.percpu_ref import PercpuRef
from zdfuzz_reference.rules import Rules

ROOT = Path(__file__).resolve().parent.parent


def test_action_table_is_the_rust_one() -> None:
    # same names, operands and order: the byte decoder depends on the order
    rust = [(name, list(args)) for name, args, _ in zdfuzz.action_kinds()]
    mine = [(k.name, [n for n, _ in k.args]) for k in KINDS]
    assert mine == rust
    assert reference.SUPPORTED_KINDS == {k.name for k in KINDS}


def test_invariant_ids_and_docs_are_the_rust_ones() -> None:
    assert [(i, reference.oracle.INVARIANT_DOCS[i]) for i in reference.INVARIANTS] == zdfuzz.invariants()


@pytest.mark.parametrize("name", zdfuzz.Rules.presets())
def test_rules_are_read_from_the_rust_preset(name: str) -> None:
    rules = Rules.load(name)
    switches = {k: v for k, v, _ in zdfuzz.Rules.preset(name).switches()}
    for k, v in switches.items():
        obj: object = rules
        for part in k.split("."):
            obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
        assert str(obj).lower() == v, k
    # aliases and TOML files resolve through the Rust side
    assert Rules.load(zdfuzz.Rules.preset(name)) == rules


def test_unknown_rules_and_shapes_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown rules 'e9'"):
        reference.Machine(rules="e9")
    with pytest.raises(ValueError, match="pages .* between 1 and 1024"):
        reference.Machine(shape={"pages": 0})
    with pytest.raises(ValueError, match="unknown device type"):
        reference.Machine(shape={"types": ("gpu",)})


def test_percpu_ref_counts_like_the_rust_one() -> None:
    # a first example: get(0), get(1), put(0), kill, grace period, put(1)
    rust = zdfuzz.PercpuRef(cpus=4)
    mine = PercpuRef(4)
    mine.init(0)
    for op, cpu in (("get", 0), ("get", 1), ("put", 0)):
        getattr(rust, op)(cpu)
        (mine.get_many if op == "get" else mine.put_many)(cpu, 1)
        assert mine.count() == rust.count()
    rust.kill()
    assert not mine.kill().released
    assert mine.is_dying() and mine.switch_pending() and mine.count() == rust.count() == 1
    rust.grace_period()
    assert not mine.grace_period().events
    assert rust.put(1) and mine.put_many(1, 1).released
    assert mine.count() == rust.count() == 0
    # a put below zero once atomic is reported, not released again
    assert mine.put_many(0, 1).events == {"put_below_zero"}


Q_E2 = """\
rules e2
config types=private
memremap_pages pgmap=0
alloc_device_page pgmap=0
migrate_vma_insert_page proc=0 addr=0 pfn=0
memunmap_pages pgmap=0
step task=0
step task=0
step task=0
rcu_grace_period
step task=0
step task=0
"""


def test_machine_api_matches_zdfuzz_machine() -> None:
    p = zdfuzz.Program.parse(Q_E2)
    ref = reference.Machine.for_program(p)
    rust = zdfuzz.Machine.for_program(p)
    assert ref.enabled_actions() == [str(a) for a in rust.enabled_actions()]
    for line in Q_E2.splitlines()[2:-1]:
        ref.step(line)
        rust.step(line)
    assert (
        ref.why_not("free_device_page pfn=1")
        == rust.why_not("free_device_page pfn=1")
        == "the driver does not hold this page"
    )
    with pytest.raises(reference.ProgramError, match="not enabled: the driver does not hold"):
        ref.step("free_device_page pfn=1")
    with pytest.raises(reference.InvariantViolation) as info:
        ref.step("step task=0")
    assert info.value.violation.invariant == "I-L2"
    assert ref.violation is not None and ref.steps == 10 and ref.violation.step == 9
    v = ref.finish()
    assert not v.ok and v.violation is not None and v.violation.category == "safety"
    ref.reset()
    assert ref.steps == 0 and ref.violation is None
    # run() from the initial state gives the same verdict, trace included
    r = ref.run(p)
    assert r.violation is not None and r.violation.invariant == "I-L2" and r.violation.step == 9
    assert r.violation.trace == rust.run(p).violation.trace  # type: ignore[union-attr]
    with pytest.raises(reference.ProgramError, match="another machine shape"):
        reference.Machine().run(p)


def test_run_bytes_matches_on_fixed_inputs() -> None:
    for rules in ("e1", "e3", "e5"):
        for data in (b"", b"\x00", bytes(range(256)), b"\xff" * 100, bytes((i * 97 + 13) % 256 for i in range(300))):
            a, b = diff.bytes_outcomes(data, rules, reference.config.Shape())
            assert diff.first_difference(a, b) is None, (rules, data)


@pytest.mark.parametrize("types", [["generic"], ["p2pdma"], ["fsdax"], ["private"]])
def test_two_byte_operands_decode_alike(types: list[str]) -> None:
    # more than 256 pfns: pfn operands take two bytes, little-endian
    shape = reference.config.Shape(types=types, pages=260, addrs=3, procs=2, ram=2, order=1, tasks=2)
    data = bytes((i * 131 + 7) % 256 for i in range(90))
    a, b = diff.bytes_outcomes(data, "e3", shape)
    assert len(a["trace"]) > 10
    assert diff.first_difference(a, b) is None


def test_encoding_is_the_rust_encoding() -> None:
    data = bytes((i * 97 + 13) % 256 for i in range(300))
    for rules in ("e1", "e5"):
        rust = zdfuzz.Program.from_bytes(data, rules=rules)
        m = reference.Machine(rules=rules)
        ops = m.decode_program(data)
        assert [reference.text.op_to_text(o) for o in ops] == [str(a) for a in rust.actions]
        assert b"".join(reference.decode.encode_op(m, o) for o in ops) == rust.to_bytes()


def _rust_test_programs() -> list[tuple[str, str, str]]:
    """(invariant, rules, program) of every `fire(...)` case of the Rust
    invariants test: one program per invariant that makes it fire, many
    under inline TOML presets that flip a switch."""
    src = (ROOT / "rust/core/tests/invariants.rs").read_text()
    consts = {n: a or b for n, a, b in re.findall(r'const (\w+): &str = (?:r#"(.*?)"#|"(.*?)");', src, re.S)}
    cases = re.findall(r'fire\(\s*"(I-[\w]+)",\s*(Toml|Preset)\(("?\w+"?)\),\s*(\w+),', src)
    assert len(cases) >= 36, "the invariants test changed shape"
    return [(inv, consts[r] if kind == "Toml" else r.strip('"'), consts[prog]) for inv, kind, r, prog in cases]


@pytest.mark.parametrize("inv,rules,program", _rust_test_programs(), ids=lambda x: x if x.startswith("I-") else "")
def test_every_invariant_fires_identically(inv: str, rules: str, program: str) -> None:
    r = zdfuzz.Rules.from_toml(rules) if "\n" in rules else zdfuzz.Rules.preset(rules)
    rust, ref = diff.rust_outcome(program, r), diff.reference_outcome(program, r)
    assert diff.first_difference(rust, ref) is None
    fired = [v["invariant"] for v in (ref["violation"], ref["conformance"]) if v]
    assert inv in fired


SEEDS = sorted((ROOT / "corpus/seeds").glob("*.zdf"))


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.stem)
def test_corpus_seeds_agree_under_every_preset(seed: Path) -> None:
    text = seed.read_text()
    for rules in zdfuzz.Rules.presets():
        rust, ref = diff.rust_outcome(text, rules), diff.reference_outcome(text, rules)
        assert diff.first_difference(rust, ref) is None, rules


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("rules", ["e5", "p20"])
def test_thp_round_trip_agrees(order: int, rules: str) -> None:
    nr = 1 << order
    n = max(nr, 4)
    text = (
        f"config types=private pgmaps=1 pages={n} cpus=2 procs=2 addrs={n} tasks=4 ram={n} order={order}\n"
        "memremap_pages pgmap=0\ndo_huge_pmd_anonymous_page proc=0 addr=0 cpu=0\n"
        f"cpu_write proc=0 addr=0 cpu=0\ncpu_write proc=0 addr={nr - 1} cpu=0\n"
        "migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM|COMPOUND cpu=0\n"
        # p20 (v5.10's collect) flushes the TLB after the PTL as a step of its own
        + "step task=0\n" * (6 if rules == "p20" else 5)
        + f"device_write pfn={nr - 1}\ndo_swap_page proc=0 addr=0 cpu=1\n"
        + "step task=0\n" * 9
    )
    rust, ref = diff.rust_outcome(text, rules), diff.reference_outcome(text, rules)
    assert "error" not in rust
    assert diff.first_difference(rust, ref) is None
    # the huge page really went to the device whole and came back
    assert any("entire mapcount" in c for t in ref["trace"] for c in t["changes"])


SPLIT = (
    "config types=private pgmaps=1 pages=2 cpus=1 procs=2 addrs=2 tasks=2 ram=2 order=1\n"
    "memremap_pages pgmap=0\ndo_huge_pmd_anonymous_page proc=0 addr=0 cpu=0\n"
)


@pytest.mark.parametrize(
    "body,note",
    [
        # the rmap walk reaches the child through the anon_vma_chain
        ("exit_mmap proc=1 cpu=0\nfork proc=0 child=1\n", "split folio 2"),
        # folio_get_anon_vma is NULL for a folio nothing maps
        (
            "pin_user_pages proc=0 addr=0 flags=0 cpu=0\nmunmap proc=0 addr=0 cpu=0\nmunmap proc=0 addr=1 cpu=0\n",
            "folio_get_anon_vma: NULL",
        ),
    ],
)
def test_the_split_walks_the_anon_vma_in_both_models(body: str, note: str) -> None:
    text = SPLIT + body + "split_huge_page pfn=2 cpu=0\n"
    rust, ref = diff.rust_outcome(text, "e4"), diff.reference_outcome(text, "e4")
    assert "error" not in rust
    assert diff.first_difference(rust, ref) is None
    assert any(note in n for t in ref["trace"] for n in t["notes"]), ref["trace"]
