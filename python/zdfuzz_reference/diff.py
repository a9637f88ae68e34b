"""Differential testing: the Rust core and the reference must agree.

Random programs run on both implementations; their outcomes must be
identical — the error (action index and reason) if a program is not valid,
else the verdict (the violation's id, class, step, action, message, objects,
expected and actual values; the conformance result; the step count) and the
trace (for every executed action, drain included: step, action text, cpu,
drain flag, counter changes and kernel-event notes).

Programs are made two ways:

* *action lists*: random bytes decoded by the reference's total decoder
  restricted to a random swarm of the kinds it supports
  (:data:`zdfuzz_reference.SUPPORTED_KINDS`), or a random walk over enabled
  actions of such a swarm, rendered as ``.zdf`` text, and run as text on both
  sides
  (``zdfuzz.Program.parse`` + ``zdfuzz.Machine.run``), which needs no decoder
  on the Rust side;
* *byte programs*: the same bytes through both implementations' ``run_bytes``
  (only when every kind is supported: the Rust decoder has no kind mask yet);
* *native-engine programs*: the corpus a short run of the native engine
  (``zdfuzz.NativeFuzzer``) grew under the same rules — inputs that reached
  new abstract transitions, decoded with the swarm and device types the
  engine ran them with (``NativePool``), as text and as bytes.

The device types are a random subset of those the era has: the four of every
era, and MEMORY_DEVICE_COHERENT from ``e3`` on (never under an older era,
which has no such type). A random walk on a machine with a coherent pgmap
often starts from anonymous memory migrated into coherent pages
(:func:`coherent_prefix`), the state its own paths (present device PTEs,
``MIGRATE_VMA_SELECT_DEVICE_COHERENT``, the FOLL_LONGTERM migration to RAM)
need and a walk rarely reaches by itself. Likewise a walk on a machine with a
device-private pgmap now and then starts from anonymous memory migrated into
device-private pages and a GUP of one of them (:func:`private_prefix`): GUP
faults the page back to system RAM, a task the walk then races.

A disagreement is shrunk by dropping actions while it persists and written
as a ``.zdf`` file; the first diverging trace entry is printed.

    python -m zdfuzz_reference.diff --time 600 [--rules e1,e3] [--types private,fsdax] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zdfuzz_reference import SUPPORTED_KINDS, decode
from zdfuzz_reference.config import Shape
from zdfuzz_reference.machine import Machine
from zdfuzz_reference.ops import FLAGS, KINDS, SELECT_SYSTEM, Op, dim_size, dim_value
from zdfuzz_reference.rules import DEFAULT_TYPES, DEVICE_TYPES, Rules
from zdfuzz_reference.text import Program, ProgramError, op_to_text, parse_program

if TYPE_CHECKING:
    import zdfuzz

PRESETS = ("e1", "e2", "e3", "e4", "e5", "p20")


def _rust() -> Any:
    """The Rust side, loaded only when a comparison runs: importing this
    module (or the reference) never loads the extension."""
    import zdfuzz

    return zdfuzz


def rust_shape(shape: Shape) -> zdfuzz.Shape:
    """The Rust side's Shape of a reference Shape."""
    rust: zdfuzz.Shape = _rust().Shape(types=shape.types, **dict(shape.header_fields()))
    return rust


Outcome = dict[str, Any]


# -- outcomes -------------------------------------------------------------------


def _violation(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "invariant": v.invariant,
        "class": v.category,
        "step": v.step,
        "action": v.action,
        "message": v.message,
        "objects": [tuple(o) for o in v.objects],
        "expected": v.expected,
        "actual": v.actual,
    }


def _verdict(v: Any) -> Outcome:
    return {
        "violation": _violation(v.violation),
        "conformance": _violation(v.conformance),
        "steps": v.steps,
        "trace": [dict(t) for t in v.trace],
    }


def rust_outcome(text: str, rules: str) -> Outcome:
    """Run ``.zdf`` text on the Rust core."""
    zdfuzz = _rust()
    p = zdfuzz.Program.parse(text)
    try:
        return _verdict(zdfuzz.Machine.for_program(p, rules=rules).run(p, trace=True))
    except zdfuzz.ProgramError as e:
        return {"error": e.message}


def reference_outcome(text: str, rules: str) -> Outcome:
    """Run ``.zdf`` text on the reference."""
    p = parse_program(text)
    try:
        return _verdict(Machine.for_program(p, rules=rules).run(p, trace=True))
    except ProgramError as e:
        return {"error": e.message}


def first_difference(a: Outcome, b: Outcome) -> str | None:
    """None if the outcomes agree, else a readable account of the first place
    they differ (the first diverging trace entry, field by field)."""
    if a == b:
        return None
    if "error" in a or "error" in b:
        return f"validity differs:\n  rust:      {a.get('error', 'runs')}\n  reference: {b.get('error', 'runs')}"
    ta, tb = a["trace"], b["trace"]
    for i in range(max(len(ta), len(tb))):
        ea = ta[i] if i < len(ta) else None
        eb = tb[i] if i < len(tb) else None
        if ea != eb:
            lines = [f"first diverging trace entry: #{i}"]
            if ea is None or eb is None:
                lines.append(f"  rust:      {ea}\n  reference: {eb}")
            else:
                for key in ("step", "action", "cpu", "drain", "changes", "notes"):
                    if ea[key] != eb[key]:
                        lines.append(f"  {key}:\n    rust:      {ea[key]}\n    reference: {eb[key]}")
                lines.append(f"  (action: {ea['action']})")
            return "\n".join(lines)
    for key in ("violation", "conformance", "steps"):
        if a[key] != b[key]:
            return f"{key} differs (traces agree):\n  rust:      {a[key]}\n  reference: {b[key]}"
    return "outcomes differ"


# -- generating programs ------------------------------------------------------------


def era_types(rules: str | None) -> list[str]:
    """The device types a machine under ``rules`` may have: the four of every
    era, and MEMORY_DEVICE_COHERENT where the era has it (v6.0+: ``e3`` on).
    Without rules, the four."""
    if rules is None:
        return list(DEFAULT_TYPES)
    r = Rules.load(rules)
    return [t for t in DEVICE_TYPES if r.has(t)]


def random_shape(rng: random.Random, types: Sequence[str] | None = None, rules: str | None = None) -> Shape:
    """A small random machine shape (small keeps both sides fast and makes
    collisions between actors likely); without ``types``, a random subset of
    the types of ``rules``' era (:func:`era_types`)."""
    if types is None:
        pool = era_types(rules)
        rng.shuffle(pool)
        types = pool[: rng.randint(1, len(pool))]
    shape = _random_shape(rng, types)
    # a third of the shapes with device-dax have it PMD-aligned (compound
    # folios from v5.17), a third of those with FS-DAX PMD-sized extents
    # (compound folios from v6.15)
    _pmd_option(rng, shape, "generic", "devdax_pmd")
    _pmd_option(rng, shape, "fsdax", "fsdax_pmd")
    return shape


def _pmd_option(rng: random.Random, shape: Shape, ty: str, option: str) -> None:
    """Turn on the PMD shape option ``option`` of type ``ty`` in a third of
    the shapes that have the type, adjusting the shape to fit it."""
    if ty in shape.types and rng.random() < 0.3:
        shape.order = max(shape.order, 1)
        nr = 1 << shape.order
        shape.addrs = max(shape.addrs, nr)
        shape.pages = max(nr, shape.pages - shape.pages % nr)
        setattr(shape, option, 1)


def _random_shape(rng: random.Random, types: Sequence[str]) -> Shape:
    if rng.random() < 0.05:
        # now and then a larger machine: more than 24 pages touched by one
        # action (every page is then checked), 3-page P2P chunks, order-3 THPs
        return Shape(
            types=list(types),
            pgmaps=rng.randint(1, 16 // len(types)),
            pages=rng.randint(4, 16),
            cpus=rng.randint(1, 8),
            procs=rng.randint(1, 4),
            addrs=rng.randint(4, 24),
            files=rng.randint(1, 4),
            file_pages=rng.randint(1, 8),
            tasks=rng.randint(1, 8),
            ram=rng.randint(0, 32),
            order=rng.randint(0, 3),
            faults=int(rng.random() < 0.3),
        )
    order = rng.choice((0, 1, 1, 2))
    return Shape(
        types=list(types),
        pgmaps=rng.randint(1, min(2, 16 // len(types))),
        pages=rng.randint(1, 6),
        cpus=rng.randint(1, 3),
        procs=rng.randint(1, 3),
        addrs=rng.randint(1, 8),
        files=rng.randint(1, 2),
        file_pages=rng.randint(1, 2),
        tasks=rng.randint(1, 4),
        ram=rng.randint(0, 8),
        order=order,
        # failure injection in a third of the programs: the error paths
        faults=int(rng.random() < 0.3),
    )


#: kinds every swarm keeps: without them nothing is registered or progresses
ALWAYS = frozenset({"memremap_pages", "step", "rcu_grace_period"})


def random_kinds(rng: random.Random, supported: frozenset[str] = SUPPORTED_KINDS) -> frozenset[str]:
    """A swarm: a random subset of the supported kinds. Leaving kinds out
    lets the others go deeper (a program without exit_mmap keeps its
    processes; one without memunmap_pages keeps its pgmaps)."""
    keep = rng.choice((0.3, 0.5, 0.8, 1.0))
    # sorted: a set of strings iterates in an order that changes with
    # PYTHONHASHSEED, which made the swarm for a given seed differ from run
    # to run
    chosen = {k for k in sorted(supported - ALWAYS) if rng.random() < keep}
    if rng.random() < 0.7:
        chosen.discard("exit_mmap")
    return frozenset((ALWAYS & supported) | chosen)


def random_program(
    rng: random.Random, rules: str, shape: Shape, nbytes: int, kinds: frozenset[str] | None = None
) -> tuple[bytes, str]:
    """Random bytes and the action list they decode to on the reference
    (restricted to ``kinds``, a random swarm by default), as ``.zdf`` text."""
    if kinds is None:
        kinds = random_kinds(rng)
    data = rng.randbytes(nbytes)
    return data, program_text(data, rules, shape, kinds)


def random_walk(
    rng: random.Random,
    rules: str,
    shape: Shape,
    nactions: int,
    kinds: frozenset[str] | None = None,
    prefix: Sequence[Op] = (),
) -> str:
    """A random walk over enabled actions, as ``.zdf`` text: at each step a
    kind is drawn uniformly among those of the swarm that have an enabled
    action (found by sampling operand combinations), then one of its enabled
    actions. Unlike decoded bytes, rarely enabled kinds (a fault on a
    device-private entry, a split) are as likely as always-enabled ones.
    The walk starts after ``prefix`` (the actions of it that are valid here),
    so it can continue from the deep states a hand-written seed reaches."""
    if kinds is None:
        kinds = random_kinds(rng)
    m = Machine.with_shape(rules, shape)
    order = [k for k in KINDS if k.name in kinds]
    ops = []
    for pre in prefix:
        if m.violation is not None:
            break
        try:
            m.step_op(pre)  # blocked steps are accepted, as on the Rust side
        except ProgramError:
            continue  # not valid under these rules: leave it out
        ops.append(pre)
    for _ in range(nactions):
        if m.violation is not None:
            break
        rng.shuffle(order)
        op = None
        for info in order:
            if not decode._kind_possible(m, info.name):
                continue
            sizes = [dim_size(d, m.layout) for _, d in info.args]
            if any(n == 0 for n in sizes):
                continue
            for _ in range(12):
                cand = Op.new(info.name, *(dim_value(d, rng.randrange(n)) for (_, d), n in zip(info.args, sizes)))
                if m.enabled(cand) is None:
                    op = cand
                    break
            if op is not None:
                break
        if op is None:
            break
        m.apply_traced(op)
        ops.append(op)
        if m.violation is not None:
            break
    return Program(rules=_rules_label(rules), shape=shape, ops=ops).to_text()


def coherent_prefix(rng: random.Random, shape: Shape) -> list[Op]:
    """Actions that put anonymous memory of a random process into the first
    coherent pgmap's pages: a written page migrated there
    (``migrate_vma_setup`` with ``SELECT_SYSTEM``, run to its end) and a
    hole filled there (``migrate_vma_insert_page`` by the migration). A
    prefix for :func:`random_walk`, which leaves out what is not valid on
    the shape (a second address it does not have, a task slot it lacks)."""
    g = shape.types.index("coherent") * shape.pgmaps
    proc = rng.randrange(shape.procs)
    a, b = rng.randrange(shape.addrs), rng.randrange(shape.addrs)
    steps = [Op.new("step", 0)] * 5
    return [
        Op.new("memremap_pages", g),
        Op.new("do_anonymous_page", proc, a, 0),
        Op.new("cpu_write", proc, a, 0),
        Op.new("migrate_vma_setup", proc, a, g, SELECT_SYSTEM, 0),
        *steps,
        Op.new("migrate_vma_setup", proc, b, g, SELECT_SYSTEM, 0),
        *steps,
    ]


def private_prefix(rng: random.Random, shape: Shape) -> list[Op]:
    """Actions that map the first device-private pgmap's pages into a random
    process — a page the driver allocates and inserts itself
    (``migrate_vma_insert_page``) and a hole a migration fills
    (``migrate_vma_setup`` with ``SELECT_SYSTEM``, run to its end) — then
    ``get_user_pages`` or ``pin_user_pages`` (random flags and cpu) of one
    of them: no present PTE there, so GUP faults the page back to system
    RAM (``faultin_page`` -> ``do_swap_page`` -> ``migrate_to_ram``), a task
    the walk then steps, races and drains. (No written RAM page is migrated
    to the device: before v6.1 that finalize is I-M6, which would end the
    program.) A prefix for :func:`random_walk`, like :func:`coherent_prefix`."""
    g = shape.types.index("private") * shape.pgmaps
    proc = rng.randrange(shape.procs)
    a, b = rng.randrange(shape.addrs), rng.randrange(shape.addrs)
    kind = rng.choice(("get_user_pages", "pin_user_pages"))
    flags = dim_value(FLAGS, rng.randrange(4))
    return [
        Op.new("memremap_pages", g),
        Op.new("alloc_device_page", g, 0),
        Op.new("migrate_vma_insert_page", proc, a, g * shape.pages, 0),
        Op.new("migrate_vma_setup", proc, b, g, SELECT_SYSTEM, 0),
        *[Op.new("step", 0)] * 5,
        Op.new(kind, proc, rng.choice((a, b)), flags, rng.randrange(shape.cpus)),
    ]


def program_text(data: bytes, rules: str, shape: Shape, kinds: frozenset[str] = SUPPORTED_KINDS) -> str:
    m = Machine.with_shape(rules, shape)
    ops = m.decode_program(data, kinds=None if len(kinds) == len(KINDS) else kinds)
    return Program(rules=_rules_label(rules), shape=shape, ops=ops).to_text()


#: the shape the native engine gives each machine (``NativeFuzzer``'s defaults)
NATIVE_SHAPE = dict(pgmaps=1, pages=4, cpus=2, procs=2, addrs=4, files=2, file_pages=2, tasks=4)


def native_entry(entry: bytes) -> tuple[bytes, Shape, frozenset[str]]:
    """A native-engine corpus entry (``NativeFuzzer.take_new_entries``:
    format byte 1, the device types as bits of ``DEVICE_TYPES``, the swarm's
    kind set as 16 little-endian bytes, then the program bytes) as the
    program bytes, the machine shape and the kinds the engine decoded them
    with."""
    if len(entry) < 18 or entry[0] != 1:
        raise ValueError(f"not a native corpus entry (format byte {entry[:1].hex() or 'missing'})")
    types = [t for i, t in enumerate(DEVICE_TYPES) if entry[1] >> i & 1]
    mask = int.from_bytes(entry[2:18], "little")
    kinds = frozenset(k.name for i, k in enumerate(KINDS) if mask >> i & 1)
    shape = Shape(types=types, **NATIVE_SHAPE)
    shape.apply_memory_defaults(ram_set=False, order_set=False)
    return entry[18:], shape, kinds


class NativePool:
    """Programs the native engine found interesting, per rules: refilled by
    running a fresh engine (seeded from ``rng``) for ``execs`` programs
    whenever the pool for those rules runs dry."""

    def __init__(self, execs: int = 3000) -> None:
        self.execs = execs
        self.pool: dict[str, list[bytes]] = {}
        self.runs = 0

    def draw(self, rng: random.Random, rules: str, types: Sequence[str] | None) -> tuple[bytes, Shape, frozenset[str]]:
        key = f"{rules}|{','.join(types or ())}"
        if not self.pool.get(key):
            # every type of the era when none are given (coherent from e3 on)
            shape = _rust().Shape(types=list(types) if types else era_types(rules))
            f = _rust().NativeFuzzer(rules, shape=shape, seed=rng.randrange(1 << 32))
            f.run(max_execs=self.execs)
            entries = f.take_new_entries()
            rng.shuffle(entries)
            self.pool[key] = entries
            self.runs += 1
        return native_entry(self.pool[key].pop())


def _rules_label(rules: str) -> str:
    return Path(rules).stem if rules.endswith(".toml") else rules


def bytes_outcomes(data: bytes, rules: str, shape: Shape) -> tuple[Outcome, Outcome]:
    """The same byte program through both ``run_bytes``."""
    r = _rust().Machine(rules=rules, shape=rust_shape(shape)).run_bytes(data, trace=True)
    ref = Machine(rules=rules, shape=shape).run_bytes(data, trace=True)
    return _verdict(r), _verdict(ref)


# -- shrinking --------------------------------------------------------------------------


def minimize(text: str, rules: str, still_differs: Callable[[str], bool] | None = None) -> str:
    """Drop actions (halves, then single lines) while the disagreement
    persists; a candidate that stops being valid on *both* sides is skipped."""
    if still_differs is None:

        def still_differs(t: str) -> bool:
            return first_difference(rust_outcome(t, rules), reference_outcome(t, rules)) is not None

    p = parse_program(text)
    header = (
        f"rules {p.rules}\nconfig types={','.join(p.shape.types)}"
        + "".join(f" {k}={v}" for k, v in p.shape.header_fields())
        + "\n"
    )
    ops = [op_to_text(o) for o in p.ops]

    def render(xs: list[str]) -> str:
        return header + "".join(x + "\n" for x in xs)

    # passes until nothing more can go: removing an action can make an
    # earlier removal possible (a `step` of a task whose spawn was kept only
    # because the step needed it)
    while True:
        before = len(ops)
        chunk = max(len(ops) // 2, 1)
        while chunk >= 1:
            i = 0
            while i < len(ops):
                cand = ops[:i] + ops[i + chunk :]
                t = render(cand)
                ro, fo = rust_outcome(t, rules), reference_outcome(t, rules)
                if not ("error" in ro and "error" in fo) and still_differs(t):
                    ops = cand
                else:
                    i += chunk
            chunk //= 2
        if len(ops) == before:
            return render(ops)


# -- the long run ---------------------------------------------------------------------------


@dataclass
class Stats:
    programs: int = 0
    actions: int = 0
    byte_programs: int = 0
    native_programs: int = 0
    disagreements: int = 0


def check_one(
    rng: random.Random,
    rules: str,
    types: Sequence[str] | None,
    nbytes: int,
    stats: Stats,
    out: Path | None,
    seeds: Sequence[Program] = (),
    native: NativePool | None = None,
    native_share: float = 0.0,
) -> str | None:
    """Generate and compare one program (as text, and as bytes); a report of
    the disagreement, if any (the minimized program is written to ``out``).
    With ``native``, a ``native_share`` of the programs come from the native
    engine's corpus. Given ``types`` are narrowed to those the era has
    (MEMORY_DEVICE_COHERENT from e3 on)."""
    have = era_types(rules)
    if types is not None:
        types = [t for t in types if t in have] or None
    if native is not None and rng.random() < native_share:
        data, shape, kinds = native.draw(rng, rules, types)
        text = program_text(data, rules, shape, kinds)
        stats.native_programs += 1
        return _compare(text, data, rules, shape, stats, out)
    shape = random_shape(rng, types, rules)
    data = rng.randbytes(nbytes)
    how = rng.random()
    seed = rng.choice(seeds) if seeds else None
    if "coherent" in shape.types and how < 0.45:
        # anonymous memory in coherent pages first, then a random walk
        prefix = coherent_prefix(rng, shape)
        text = random_walk(rng, rules, shape, rng.randint(0, max(nbytes // 2, 1)), prefix=prefix)
    elif "private" in shape.types and 0.3 <= how < 0.45:
        # device-private pages mapped into a process and a GUP that faults
        # one back to system RAM, then a random walk
        prefix = private_prefix(rng, shape)
        text = random_walk(rng, rules, shape, rng.randint(0, max(nbytes // 2, 1)), prefix=prefix)
    elif (
        seed is not None
        and how < 0.3
        and (types is None or seed.shape.types == list(types))
        and all(t in have for t in seed.shape.types)
    ):
        # a seed program cut at a random point, then a random walk from there
        shape = seed.shape
        prefix = seed.ops[: rng.randint(0, len(seed.ops))]
        text = random_walk(rng, rules, shape, rng.randint(0, max(nbytes // 2, 1)), prefix=prefix)
    elif how < 0.65:
        # a random walk (rare kinds as likely as common ones)
        text = random_walk(rng, rules, shape, max(nbytes // 2, 1))
    else:
        # the bytes decoded under a random swarm of kinds
        text = program_text(data, rules, shape, random_kinds(rng))
    return _compare(text, data, rules, shape, stats, out)


def _compare(text: str, data: bytes, rules: str, shape: Shape, stats: Stats, out: Path | None) -> str | None:
    """Run ``text`` on both sides (and ``data`` through both ``run_bytes``);
    a report of the first disagreement, minimized and written to ``out``."""
    ro, fo = rust_outcome(text, rules), reference_outcome(text, rules)
    stats.programs += 1
    stats.actions += len(ro.get("trace", ()))
    diff = first_difference(ro, fo)
    if diff is None and len(SUPPORTED_KINDS) == len(KINDS):
        rb, fb = bytes_outcomes(data, rules, shape)
        stats.byte_programs += 1
        stats.actions += len(rb["trace"])
        d = first_difference(rb, fb)
        if d is not None:
            diff = "run_bytes: " + d
            text = _rust().Program.from_bytes(data, rules=rules, shape=rust_shape(shape)).to_text()
    if diff is None:
        return None
    stats.disagreements += 1
    small = (
        minimize(text, rules) if first_difference(rust_outcome(text, rules), reference_outcome(text, rules)) else text
    )
    # the account of the minimized program (the original may diverge elsewhere first)
    diff = first_difference(rust_outcome(small, rules), reference_outcome(small, rules)) or diff
    report = f"== disagreement under {rules}\n{diff}\n-- minimized program:\n{small}"
    if diff.startswith("run_bytes") and small == text:
        report += f"-- (the disagreement is in decoding: bytes {data.hex()})\n"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"disagreement-{_rules_label(rules)}-{stats.disagreements}.zdf"
        comment = (
            f"# rust and reference disagree under rules {rules}; replay both sides with\n"
            f"#   zdfuzz_reference.diff.first_difference(rust_outcome(text, rules), reference_outcome(text, rules))\n"
            + "".join(f"# {line}\n" for line in diff.splitlines())
        )
        path.write_text(comment + small)
        report += f"-- written to {path}\n"
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zdfuzz_reference.diff", description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", type=float, default=60.0, help="seconds to run (default 60)")
    ap.add_argument(
        "--programs",
        type=int,
        default=None,
        help="stop after this many programs, whatever the time (with --seed: an exactly reproducible run)",
    )
    ap.add_argument(
        "--rules", default=",".join(PRESETS), help="comma-separated presets or .toml files (default: every preset)"
    )
    ap.add_argument("--types", default=None, help="comma-separated device types (default: a random subset each)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    ap.add_argument("--bytes", type=int, default=120, help="bytes per random program (default 120)")
    ap.add_argument("--out", default="diff-out", help="where minimized disagreements are written")
    ap.add_argument("--max-reports", type=int, default=5, help="stop after this many disagreements")
    ap.add_argument(
        "--native-share",
        type=float,
        default=0.25,
        help="share of programs taken from the native engine's corpus (default 0.25)",
    )
    ap.add_argument(
        "--seeds",
        default="corpus/seeds",
        help="a folder of .zdf programs that some random walks start from (default corpus/seeds, skipped if absent)",
    )
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    rules = [r for r in args.rules.split(",") if r]
    types = None
    if args.types:
        types = [t.strip() for t in args.types.split(",")]
        bad = [t for t in types if t not in DEVICE_TYPES]
        if bad:
            ap.error(f"unknown device types {bad}; types: {', '.join(DEVICE_TYPES)}")
    for r in rules:
        Rules.load(r)  # fail early on a bad name
        if types and not set(types) & set(era_types(r)):
            ap.error(f"rules {r} have none of the types {', '.join(types)}")
    seeds = (
        [parse_program(f.read_text()) for f in sorted(Path(args.seeds).glob("*.zdf"))]
        if Path(args.seeds).is_dir()
        else []
    )
    print(
        f"seed {seed}; {len(seeds)} seed programs; rules {', '.join(rules)}; types {args.types or 'random'}; "
        f"{len(SUPPORTED_KINDS)}/{len(KINDS)} kinds",
        flush=True,
    )
    stats = Stats()
    native = NativePool()
    start = time.monotonic()
    last = start

    limit: int | None = args.programs
    seconds: float = args.time

    def more() -> bool:
        if limit is not None:
            return stats.programs < limit
        return time.monotonic() - start < seconds

    while more() and stats.disagreements < args.max_reports:
        report = check_one(
            rng,
            rng.choice(rules),
            types,
            rng.randint(1, args.bytes),
            stats,
            Path(args.out),
            seeds,
            native,
            args.native_share,
        )
        if report is not None:
            print(report, flush=True)
        if time.monotonic() - last > 10:
            last = time.monotonic()
            el = last - start
            print(
                f"  {el:6.0f}s  {stats.programs} programs ({stats.programs / el:.1f}/s), "
                f"{stats.actions} actions, {stats.disagreements} disagreements",
                flush=True,
            )
    el = time.monotonic() - start
    print(
        f"checked {stats.programs} programs as text ({stats.native_programs} from the native engine's corpus, "
        f"{native.runs} engine run(s)) and {stats.byte_programs} as bytes "
        f"({stats.actions} actions, drain included) in {el:.0f}s: {stats.programs / max(el, 1e-9):.1f} programs/s; "
        f"{stats.disagreements} disagreement(s)"
    )
    return 1 if stats.disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
