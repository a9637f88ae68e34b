"""Differential testing in CI: random programs on the Rust core and on the
pure-Python reference must give identical outcomes — validity, verdict
(violation id, class, step, action, message; conformance; steps) and the
whole trace (step, action, cpu, drain flag, counter changes, notes).

Bounded (about a minute on CI's 2 cores): hypothesis byte strings through
both ``run_bytes``, hypothesis action lists (bytes decoded under a random
swarm of kinds) run as ``.zdf`` text, a seeded random-walk run over every
preset and the what-if presets of the Rust invariant tests, and a seeded run
on MEMORY_DEVICE_COHERENT machines (e4) that checks the type's own paths were
reached, and seeded runs (e2, e3, e4) of GUPs that fault device-private pages
back to system RAM. The long run is
``python -m zdfuzz_reference.diff --time 600``.
"""

from __future__ import annotations

import random
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zdfuzz
from zdfuzz_reference import SUPPORTED_KINDS, diff, p2pdma
from zdfuzz_reference.config import Shape
from zdfuzz_reference.ops import Op
from zdfuzz_reference.rules import DEVICE_TYPES
from zdfuzz_reference.text import parse_program

ROOT = Path(__file__).resolve().parent.parent
PRESETS = zdfuzz.Rules.presets() + [name for name, _, _ in zdfuzz.Rules.regressions()]


def fast(n: int) -> settings:
    """Deterministic (derandomized: the same examples on every run), no
    per-example deadline (the reference is slow by design)."""
    return settings(
        max_examples=n, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
    )


@st.composite
def shapes(draw: st.DrawFn, rules: str | None = None) -> Shape:
    """A small shape of the types ``rules``' era has (without rules: the four
    of every era; MEMORY_DEVICE_COHERENT only from e3 on)."""
    types = draw(st.lists(st.sampled_from(diff.era_types(rules)), min_size=1, max_size=4, unique=True))
    return Shape(
        types=types,
        pgmaps=draw(st.integers(1, min(2, 16 // len(types)))),
        pages=draw(st.integers(1, 5)),
        cpus=draw(st.integers(1, 3)),
        procs=draw(st.integers(1, 3)),
        addrs=draw(st.integers(1, 6)),
        files=draw(st.integers(1, 2)),
        file_pages=draw(st.integers(1, 2)),
        tasks=draw(st.integers(1, 4)),
        ram=draw(st.integers(0, 6)),
        order=draw(st.integers(0, 2)),
    )


@st.composite
def rules_and_shapes(draw: st.DrawFn) -> tuple[str, Shape]:
    rules = draw(st.sampled_from(PRESETS))
    return rules, draw(shapes(rules))


@fast(400)
@given(data=st.binary(min_size=40, max_size=300), rules_shape=rules_and_shapes())
def test_byte_programs_agree(data: bytes, rules_shape: tuple[str, Shape]) -> None:
    rules, shape = rules_shape
    rust, ref = diff.bytes_outcomes(data, rules, shape)
    assert diff.first_difference(rust, ref) is None


@fast(400)
@given(
    data=st.binary(min_size=40, max_size=300),
    rules_shape=rules_and_shapes(),
    kinds=st.sets(st.sampled_from(sorted(SUPPORTED_KINDS - diff.ALWAYS)), min_size=1),
)
def test_action_lists_agree(data: bytes, rules_shape: tuple[str, Shape], kinds: set[str]) -> None:
    rules, shape = rules_shape
    text = diff.program_text(data, rules, shape, frozenset(kinds) | diff.ALWAYS)
    rust, ref = diff.rust_outcome(text, rules), diff.reference_outcome(text, rules)
    assert "error" not in rust, rust  # the reference only generates valid programs
    assert diff.first_difference(rust, ref) is None


def _what_if_presets() -> list[str]:
    """The inline TOML presets of the Rust invariant tests: each flips a
    switch to a buggy design, so random programs reach the code paths the
    built-in presets never take."""
    src = (ROOT / "rust/core/tests/invariants.rs").read_text()
    return [t for t in re.findall(r'const \w+: &str = r#"(.*?)"#;', src, re.S) if "base =" in t]


def test_random_walks_agree_under_presets_and_what_ifs(tmp_path: Path) -> None:
    rules = list(PRESETS)
    for i, text in enumerate(_what_if_presets()):
        path = tmp_path / f"whatif{i}.toml"
        path.write_text(text)
        rules.append(str(path))
    assert len(rules) > 20
    seeds = [parse_program(p.read_text()) for p in sorted((ROOT / "corpus/seeds").glob("*.zdf"))]
    rng = random.Random(20260601)
    checked = actions = 0
    for i in range(600):
        r = rng.choice(rules)
        if i % 3 == 0:
            # continue from a seed program cut at a random point
            seed = rng.choice(seeds)
            text = diff.random_walk(
                rng, r, seed.shape, rng.randint(0, 40), prefix=seed.ops[: rng.randint(0, len(seed.ops))]
            )
        else:
            text = diff.random_walk(rng, r, diff.random_shape(rng, rules=r), rng.randint(1, 60))
        rust, ref = diff.rust_outcome(text, r), diff.reference_outcome(text, r)
        assert "error" not in rust, (rust, text)
        d = diff.first_difference(rust, ref)
        assert d is None, f"{d}\n{diff.minimize(text, r)}"
        checked += 1
        actions += len(rust["trace"])
    assert checked == 600 and actions > 15000


def test_gup_flags_never_decide_whether_gup_is_enabled_on_a_locked_coherent_page() -> None:
    """A coherent page another migration holds locked between its collect
    and unmap steps: a FOLL_LONGTERM GUP is enabled like any other (the byte
    decoders probe GUP without its flags) and fails -EBUSY on both sides. A
    10-minute differential run once found the two decoders apart here, when
    the lock made FOLL_LONGTERM a condition of the action."""
    text = """rules e4
config types=coherent pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 tasks=2 ram=2
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
step task=0
step task=0
step task=0
step task=0
migrate_device_range pgmap=0 cpu=0
step task=0
"""
    for flags in ("0", "FOLL_LONGTERM", "FOLL_LONGTERM|FOLL_PCI_P2PDMA"):
        prog = text + f"pin_user_pages proc=0 addr=0 flags={flags} cpu=0\n"
        a, b = diff.rust_outcome(prog, "e4"), diff.reference_outcome(prog, "e4")
        assert diff.first_difference(a, b) is None, flags
    longterm = text + "pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=0\n"
    notes = [n for t in diff.rust_outcome(longterm, "e4")["trace"] for n in t["notes"]]
    assert any("locked by a migration: -EBUSY" in n for n in notes), notes


def test_coherent_programs_are_generated_and_agree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """MEMORY_DEVICE_COHERENT (v6.0, the ``e3`` era on): the generator puts
    it in the shapes of the eras that have it and never in the others, and
    the programs it makes on a coherent machine — anonymous memory migrated
    into coherent pages, FOLL_LONGTERM GUPs that move a coherent page back to
    system RAM first — are compared and agree. Fails if the type is
    silently dropped from the generated machines or never reaches its own
    code paths."""
    assert diff.era_types("e4") == list(DEVICE_TYPES) and "coherent" in DEVICE_TYPES
    assert "coherent" not in diff.era_types("e2") and "coherent" not in diff.era_types(None)
    rng = random.Random(1)
    for rules in ("e1", "e2", "p20"):
        assert all("coherent" not in diff.random_shape(rng, rules=rules).types for _ in range(100))
    assert any("coherent" in diff.random_shape(rng, rules="e4").types for _ in range(20))

    # every program compared, as the reference ran it: (device types, trace)
    compared: list[tuple[list[str], list[dict[str, Any]]]] = []
    real = diff.reference_outcome

    def spy(text: str, rules: str) -> diff.Outcome:
        out = real(text, rules)
        compared.append((parse_program(text).shape.types, out.get("trace", [])))
        return out

    monkeypatch.setattr(diff, "reference_outcome", spy)
    stats = diff.Stats()
    rng = random.Random(20261202)
    for _ in range(40):
        assert diff.check_one(rng, "e4", ["coherent"], 120, stats, tmp_path) is None
    assert stats.programs == stats.byte_programs == 40 and stats.disagreements == 0
    assert len(compared) == 40 and all(types == ["coherent"] for types, _ in compared)
    notes = [n for _, trace in compared for t in trace for n in t["notes"]]
    actions = [t["action"] for _, trace in compared for t in trace]
    # anonymous memory went into coherent pages and their driver freed them
    # again; FOLL_LONGTERM GUPs moved some to system RAM
    assert sum(n.startswith("page_free(pfn") for n in notes) >= 20
    assert sum(n.startswith("migrate_device_coherent_page(pfn") for n in notes) >= 5
    # (the -EBUSY outcomes are pinned by the deterministic test above: their
    # count in 40 random programs varied between machines)
    assert any(a.startswith("migrate_vma_setup") and "select=DEVICE_COHERENT" in a for a in actions)
    assert stats.actions > 3000
    # an era without the type never gets it, even when it is asked for
    stats = diff.Stats()
    compared.clear()
    for _ in range(5):
        assert diff.check_one(rng, "e2", ["coherent", "private"], 60, stats, tmp_path) is None
    assert len(compared) == 5 and all(types == ["private"] for types, _ in compared) and stats.disagreements == 0


def test_gup_faults_on_device_private_entries_are_generated_and_agree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A GUP on a device-private entry faults the page back to system RAM
    (``faultin_page`` -> ``do_swap_page`` -> ``migrate_to_ram``, a task) and
    grabs the RAM page when the fault returns. Programs that map
    device-private pages into a process and GUP them
    (:func:`diff.private_prefix`, then a random walk that races the fault)
    are generated under e2 (no fault reference), e3 (the reference under the
    PTL) and e4, compared, and agree; and the differential run's own
    generator reaches the fault too. Fails if the GUP fault is never reached
    or the two sides differ on it."""
    compared: list[list[dict[str, Any]]] = []
    real = diff.reference_outcome

    def spy(text: str, rules: str) -> diff.Outcome:
        out = real(text, rules)
        compared.append(out.get("trace", []))
        return out

    monkeypatch.setattr(diff, "reference_outcome", spy)

    def notes() -> list[str]:
        return [n for trace in compared for t in trace for n in t["notes"]]

    spawned = "GUP faults the device-private entry in: task"
    rng = random.Random(20261207)
    for rules in ("e2", "e3", "e4"):
        compared.clear()
        # (40 programs: a MADV_DONTNEED in the walk may zap the entry first)
        for _ in range(40):
            shape = diff.random_shape(rng, ["private"], rules)
            text = diff.random_walk(rng, rules, shape, rng.randint(0, 40), prefix=diff.private_prefix(rng, shape))
            rust, ref = diff.rust_outcome(text, rules), diff.reference_outcome(text, rules)
            assert "error" not in rust, (rust, text)
            d = diff.first_difference(rust, ref)
            assert d is None, f"{rules}: {d}\n{diff.minimize(text, rules)}"
        got = notes()
        assert sum(n.startswith(spawned) for n in got) >= 15, rules
        # the fault moved the page to RAM and GUP grabbed it, or it ran out
        # of RAM and GUP failed
        assert sum(n.startswith("GUP -> pfn ") for n in got) >= 10, rules
        assert "GUP -> -ENOMEM (VM_FAULT_OOM)" in got, rules
    # the differential run's generator (prefix and plain walks alike)
    compared.clear()
    stats = diff.Stats()
    for rules in ("e2", "e3", "e4") * 12:
        assert diff.check_one(rng, rules, ["private"], 120, stats, tmp_path) is None
    assert stats.programs == 36 and stats.disagreements == 0
    assert sum(n.startswith(spawned) for n in notes()) >= 3


def test_a_planted_bug_is_found_and_minimized(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The harness must see a one-reference slip in the reference and shrink
    the program to what shows it."""
    real = p2pdma.kernel_get_page

    def takes_two(m: object, p: int) -> None:
        real(m, p)  # type: ignore[arg-type]
        m.s.rc[p] += 1  # type: ignore[attr-defined]

    text = (ROOT / "corpus/seeds/p2pdma-01-kernel-alloc-get-put.zdf").read_text()
    assert diff.first_difference(diff.rust_outcome(text, "e1"), diff.reference_outcome(text, "e1")) is None
    monkeypatch.setattr(p2pdma, "kernel_get_page", takes_two)
    report = diff.first_difference(diff.rust_outcome(text, "e1"), diff.reference_outcome(text, "e1"))
    assert report is not None and "changes" in report and "get_page" in report
    small = diff.minimize(text, "e1")
    lines = [x for x in small.splitlines() if x and not x.startswith(("rules", "config"))]
    # register, allocate, get_page: nothing less shows it
    assert [x.split()[0] for x in lines] == ["memremap_pages", "pci_alloc_p2pmem", "get_page"], small
    assert diff.first_difference(diff.rust_outcome(small, "e1"), diff.reference_outcome(small, "e1")) is not None
    # and the command line reports it, writing the minimized program
    stats = diff.Stats()
    rng = random.Random(5)
    reports = [diff.check_one(rng, "e1", ["p2pdma"], 120, stats, tmp_path) for _ in range(40)]
    assert stats.disagreements > 0
    assert any(r and "get_page" in r for r in reports)
    assert list(tmp_path.glob("disagreement-e1-*.zdf"))


def test_command_line_runs_and_reports(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # a number of programs, not a time: the same run on any machine
    assert diff.main(["--programs", "40", "--seed", "1", "--rules", "e3,e5", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    m = re.search(
        r"checked (\d+) programs as text \((\d+) from the native engine's corpus, (\d+) engine run\(s\)\) "
        r"and (\d+) as bytes \((\d+) actions",
        out,
    )
    assert m and int(m.group(1)) == 40 and int(m.group(5)) > 0, out
    assert int(m.group(2)) > 0 and int(m.group(3)) > 0, out  # a quarter come from the native engine by default
    assert "0 disagreement(s)" in out


def test_native_engine_programs_agree() -> None:
    """The native engine's corpus (inputs that reached new abstract
    transitions) decoded with the swarm and types the engine ran them with."""
    rng = random.Random(7)
    pool = diff.NativePool(execs=1500)
    for rules in ("e3", "e5", "p20"):
        stats = diff.Stats()
        for _ in range(25):
            assert diff.check_one(rng, rules, None, 120, stats, None, native=pool, native_share=1.0) is None
        assert stats.native_programs == 25 and stats.byte_programs == 25 and stats.disagreements == 0
    assert pool.runs >= 3


def test_native_entry_layout() -> None:
    f = zdfuzz.NativeFuzzer("e5", shape=zdfuzz.Shape(types=["private", "p2pdma"]), seed=2)
    f.run(max_execs=300)
    entries = f.take_new_entries()
    assert entries
    for e in entries:
        data, shape, kinds = diff.native_entry(e)
        assert data == e[18:] and set(shape.types) <= {"private", "p2pdma"} and shape.types
        assert kinds and kinds <= {k.name for k in diff.KINDS}
        # the engine's machine shape: system RAM and THP only with device-private
        assert (shape.ram, shape.order) == ((4, 1) if "private" in shape.types else (0, 0))
    with pytest.raises(ValueError, match="not a native corpus entry"):
        diff.native_entry(b"\x02" + bytes(20))


def test_hmm_snapshots_are_generated_and_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hmm_range_fault`` or ``hmm_fault`` after device-private pages are
    mapped (:func:`diff.private_prefix` with the GUP replaced by the driver's
    snapshot, with or without HMM_PFN_REQ_FAULT), then a random walk that races the driver's retry check, under
    e4, e5 and the what-if that skips the check. The two models agree, the
    snapshot is taken and used, and invalidated ones are retried (or, in the
    what-if, reported: I-H1)."""
    compared: list[list[dict[str, Any]]] = []
    real = diff.reference_outcome

    def spy(text: str, rules: str) -> diff.Outcome:
        out = real(text, rules)
        compared.append(out.get("trace", []))
        return out

    monkeypatch.setattr(diff, "reference_outcome", spy)
    whatif = next(t for t in _what_if_presets() if 'name = "hmm-no-retry-check"' in t)
    rng = random.Random(20261202)
    found: set[str] = set()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "noretry.toml"
        path.write_text(whatif)
        for rules in ("e4", "e5", str(path)):
            compared.clear()
            for _ in range(40):
                shape = diff.random_shape(rng, ["private"], rules)
                prefix = diff.private_prefix(rng, shape)[:-1]
                g = shape.types.index("private") * shape.pgmaps
                # the snapshot-only walk, or the faulting one (HMM_PFN_REQ_FAULT)
                kind = rng.choice(["hmm_range_fault", "hmm_fault"])
                prefix.append(Op.new(kind, rng.randrange(shape.procs), rng.randrange(shape.addrs), g, 0))
                text = diff.random_walk(rng, rules, shape, rng.randint(0, 30), prefix=prefix)
                rust, ref = diff.rust_outcome(text, rules), diff.reference_outcome(text, rules)
                assert "error" not in rust, (rust, text)
                d_ = diff.first_difference(rust, ref)
                assert d_ is None, f"{rules}: {d_}\n{diff.minimize(text, rules)}"
                if rust.get("violation"):
                    found.add(rust["violation"]["invariant"])
            notes = [n for trace in compared for t in trace for n in t["notes"]]
            assert sum("(no reference taken)" in n for n in notes) >= 10, rules
            assert any(n.startswith("hmm_vma_fault: handle_mm_fault on the hole") for n in notes), rules
            if rules != str(path):
                assert any(n.startswith("mmu_interval_read_retry: the range was invalidated") for n in notes), rules
    assert "I-H1" in found
