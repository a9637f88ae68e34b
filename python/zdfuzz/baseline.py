"""What a change of rules breaks and fixes: findings judged against a baseline.

A finding is a program that breaks an invariant under the rules it was found
under (the *change*). Replayed under the *baseline* it either breaks the same
way — same signature up to the rules name: (invariant, action kind, device
type) — and is **shared** (the baseline had that bug already), or it does not
(clean, a different violation, or actions the baseline does not have) and is
**new**. A finding of the baseline that does not break the same way under
the change is **fixed**.

``compare(a, b)`` judges by signature rather than by program: every
reproducer either side found is replayed under both rule sets, and a
signature is *unchanged* when some program breaks it under both, *broken by
B* when it breaks only under B, *fixed by B* when only under A.

The explorer stops at the first violation it finds, so a change over a
buggy era would only ever show the era's own shortest bug. With a baseline,
:func:`explore_new` explores past every counterexample the baseline shares
(``zdfuzz.explore(..., ignore=...)``) until it finds one new to the change.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zdfuzz
from zdfuzz.corpus import Corpus, Signature

NEW, SHARED, FIXED = "new", "shared", "fixed"
#: the order a summary lists labels in: what the change breaks first
LABEL_ORDER = {NEW: 0, FIXED: 1, SHARED: 2}


def bug(sig: Signature | tuple[str, ...]) -> tuple[str, str, str]:
    """A signature without its rules: what "the same bug" is across rule sets."""
    return (sig[0], sig[1], sig[2])


def default_baseline(rules: zdfuzz.Rules) -> str | None:
    """The rule set a change is judged against: the ``base`` it overrides."""
    return rules.base


@dataclass
class Replay:
    """A program replayed under some rules."""

    rules: str
    signature: Signature | None
    #: why it could not run (an action the rules do not have), else None
    error: str | None = None

    def describe(self) -> str:
        if self.error is not None:
            return f"does not run under {self.rules}: {self.error}"
        if self.signature is None:
            return f"clean under {self.rules}"
        return f"{self.signature.invariant} {self.signature.kind} {self.signature.device} under {self.rules}"


def replay(program: zdfuzz.Program, rules: zdfuzz.Rules) -> Replay:
    """Run ``program`` under ``rules`` (not its own ``rules`` line)."""
    try:
        v = zdfuzz.Machine.for_program(program, rules=rules).run(program, trace=False)
    except zdfuzz.ZdfuzzError as e:
        return Replay(rules.name, None, e.message)
    return Replay(rules.name, Signature(*v.signature) if v.signature else None)


def label(
    sig: Signature, program: zdfuzz.Program, baseline: zdfuzz.Rules, *, of_baseline: bool = False
) -> tuple[str, Replay]:
    """The label of a finding of the change (``of_baseline``: of the
    baseline, replayed under the change): shared when the other rules break
    the same way, else new (fixed for a baseline finding)."""
    r = replay(program, baseline)
    same = r.signature is not None and bug(r.signature) == bug(sig)
    if same:
        return SHARED, r
    return (FIXED if of_baseline else NEW), r


# ---------------------------------------------------------------------------
# rules: overrides and differences
# ---------------------------------------------------------------------------


def preset_file(name: str) -> Path | None:
    """The TOML file a rule set comes from: a path, or a built-in preset's file."""
    p = Path(name)
    if p.suffix == ".toml" and p.is_file():
        return p
    try:
        canonical = zdfuzz.Rules.resolve(name).name
    except zdfuzz.ZdfuzzError:
        return None
    f = Path(__file__).parent / "presets" / f"{canonical}.toml"
    return f if f.is_file() else None


def _dotted(d: dict[str, Any], prefix: str = "") -> Iterable[str]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _dotted(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def overrides(name: str) -> dict[str, str | None]:
    """The switches a rule set sets over its base, each with the base's
    value (None when the rule set has no base): every switch its TOML file
    names, and every switch whose value differs from the base's."""
    r = zdfuzz.Rules.resolve(name)
    mine = {k: v for k, v, _ in r.switches()}
    base = {k: v for k, v, _ in zdfuzz.Rules.resolve(r.base).switches()} if r.base else {}
    out: dict[str, str | None] = {}
    f = preset_file(name)
    if f is not None:
        try:
            data = tomllib.loads(f.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            data = {}
        for k in _dotted(data):
            if k in mine:
                out[k] = base.get(k)
    if r.base:
        for k, v in mine.items():
            if base.get(k) != v:
                out[k] = base.get(k)
    return out


@dataclass
class SwitchDiff:
    switch: str
    a: str
    b: str
    doc: str


def rules_diff(a: str, b: str) -> list[SwitchDiff]:
    """Every switch whose value differs between rule sets ``a`` and ``b``."""
    ra, rb = zdfuzz.Rules.resolve(a), zdfuzz.Rules.resolve(b)
    va = {k: (v, d) for k, v, d in ra.switches()}
    out = []
    for k, v, d in rb.switches():
        if k in va and va[k][0] != v:
            out.append(SwitchDiff(k, va[k][0], v, d))
    return out


# ---------------------------------------------------------------------------
# exploring past a baseline's bugs
# ---------------------------------------------------------------------------


@dataclass
class Skipped:
    """A counterexample the search explored past."""

    signature: Signature
    program: zdfuzz.Program
    why: str


@dataclass
class ExploreNew:
    """The result of :func:`explore_new`: the last search and what it skipped."""

    result: zdfuzz.ExploreResult
    skipped: list[Skipped] = field(default_factory=list)
    #: the counterexample's signature and its replay under the baseline
    signature: Signature | None = None
    baseline_replay: Replay | None = None


def explore_new(
    rules: zdfuzz.Rules,
    *,
    baseline: zdfuzz.Rules | None,
    ignore: Iterable[tuple[str, ...]] = (),
    max_rounds: int = 64,
    on_skip: Callable[[Skipped], None] | None = None,
    **kwargs: Any,
) -> ExploreNew:
    """The shortest counterexample under ``rules`` that is neither in
    ``ignore`` nor shared with ``baseline``: explore; while the
    counterexample breaks the baseline the same way, ignore its signature
    and explore again. ``kwargs`` go to ``zdfuzz.explore``."""
    ignored: list[tuple[str, ...]] = [tuple(s) for s in ignore]
    skipped: list[Skipped] = []
    for _ in range(max_rounds):
        result = zdfuzz.explore(rules, ignore=ignored, **kwargs)
        program = result.counterexample
        if program is None:
            return ExploreNew(result, skipped)
        verdict = zdfuzz.Machine.for_program(program, rules=rules).run(program, trace=False)
        assert verdict.signature is not None
        sig = Signature(*verdict.signature)
        if baseline is None:
            return ExploreNew(result, skipped, sig)
        lab, r = label(sig, program, baseline)
        if lab == NEW:
            return ExploreNew(result, skipped, sig, r)
        s = Skipped(sig, program, f"shared with {baseline.name}: {r.describe()}")
        skipped.append(s)
        if on_skip is not None:
            on_skip(s)
        ignored.append(bug(sig))
        if result.stop == "interrupted":
            return ExploreNew(result, skipped)
    return ExploreNew(result, skipped)


# ---------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------

BROKEN, UNCHANGED = "broken", "unchanged"
VERDICT_ORDER = {BROKEN: 0, FIXED: 1, UNCHANGED: 2}


@dataclass
class Witness:
    """A reproducer and what it does under each rule set."""

    path: Path
    program: zdfuzz.Program
    found_under: str
    engine: str
    under_a: Replay
    under_b: Replay


@dataclass
class Row:
    """One bug (signature without rules) and its verdict."""

    bug: tuple[str, str, str]
    verdict: str
    reproducer: Witness
    #: what the reproducer does under the other rule set
    other: Replay

    @property
    def invariant(self) -> str:
        return self.bug[0]


def compare_rows(a: zdfuzz.Rules, b: zdfuzz.Rules, witnesses: list[Witness]) -> list[Row]:
    """Verdict per bug: broken by B (breaks only under B), fixed by B (only
    under A), unchanged (some reproducer breaks it under both)."""
    in_a: dict[tuple[str, str, str], Witness] = {}
    in_b: dict[tuple[str, str, str], Witness] = {}
    both: dict[tuple[str, str, str], Witness] = {}
    # shorter reproducers first: each row shows the shortest witness
    for w in sorted(witnesses, key=lambda w: (len(w.program), str(w.path))):
        sa = bug(w.under_a.signature) if w.under_a.signature else None
        sb = bug(w.under_b.signature) if w.under_b.signature else None
        if sa is not None:
            in_a.setdefault(sa, w)
        if sb is not None:
            in_b.setdefault(sb, w)
        if sa is not None and sa == sb:
            both.setdefault(sa, w)
    rows: list[Row] = []
    for k in sorted(set(in_a) | set(in_b)):
        if k in in_a and k in in_b:
            w = both.get(k) or in_b[k]
            rows.append(Row(k, UNCHANGED, w, w.under_a if w.found_under == b.name else w.under_b))
        elif k in in_b:
            w = in_b[k]
            rows.append(Row(k, BROKEN, w, w.under_a))
        else:
            w = in_a[k]
            rows.append(Row(k, FIXED, w, w.under_b))
    rows.sort(key=lambda r: (VERDICT_ORDER[r.verdict], r.bug))
    return rows


def witnesses(corpus: Corpus, a: zdfuzz.Rules, b: zdfuzz.Rules) -> list[Witness]:
    """Every reproducer in ``corpus`` found under ``a`` or ``b``, replayed under both."""
    from zdfuzz.corpus import load_program

    out = []
    for f in corpus.findings():
        if f.signature.rules not in (a.name, b.name):
            continue
        program = load_program(f.zdf)
        out.append(
            Witness(
                f.zdf,
                program,
                f.signature.rules,
                str(f.meta.get("engine", "?")),
                replay(program, a),
                replay(program, b),
            )
        )
    return out


def explore_shape(device: str) -> zdfuzz.Shape:
    """The machine ``compare`` explores exhaustively for one device type:
    one pgmap of one page, one process with one address, one kernel task
    (and one page of system RAM for device-private migration)."""
    return zdfuzz.Shape(
        types=[device],
        pgmaps=1,
        pages=1,
        cpus=2,
        procs=1,
        addrs=1,
        files=1,
        file_pages=1,
        tasks=1,
        ram=1 if device == "private" else 0,
        order=0,
    )


def explore_all(
    rules: zdfuzz.Rules, shape: zdfuzz.Shape, depth: int, *, max_rounds: int = 16, max_seconds: float = 60.0
) -> list[tuple[Signature, zdfuzz.Program]]:
    """The shortest counterexample of every signature reachable within
    ``depth``: explore, ignore what was found, explore again, until clean."""
    found: list[tuple[Signature, zdfuzz.Program]] = []
    for _ in range(max_rounds):
        r = zdfuzz.explore(rules, shape=shape, depth=depth, ignore=[bug(s) for s, _ in found], max_seconds=max_seconds)
        program = r.counterexample
        if program is None:
            break
        v = zdfuzz.Machine.for_program(program, rules=rules).run(program, trace=False)
        assert v.signature is not None
        found.append((Signature(*v.signature), program))
    return found


@dataclass
class Comparison:
    a: zdfuzz.Rules
    b: zdfuzz.Rules
    rows: list[Row]
    corpus: Path
    seconds: float
    depth: int
    types: tuple[str, ...]
    #: (rules, engine) -> signatures that engine found
    found_by: dict[str, int] = field(default_factory=dict)

    def by(self, verdict: str) -> list[Row]:
        return [r for r in self.rows if r.verdict == verdict]


def compare(
    a: zdfuzz.Rules,
    b: zdfuzz.Rules,
    *,
    seconds: float,
    depth: int,
    types: tuple[str, ...],
    corpus: Path,
    seed: int,
    console: Any,
    sources: tuple[str, str] | None = None,
) -> Comparison:
    """Both engines on both rule sets, then every reproducer judged under
    both: one verdict per bug (see the module docstring)."""
    import time

    from zdfuzz import campaign

    store = Corpus(corpus)
    store.create()
    found_by: dict[str, int] = {}
    src_a, src_b = sources or (a.name, b.name)
    for rules, source in ((a, src_a), (b, src_b)):
        if seconds > 0:
            # each campaign labels its findings against the other rule set:
            # B's new or shared, A's fixed or shared
            cfg = campaign.Config(
                rules=source,
                types=types,
                seconds=seconds,
                corpus=corpus,
                seed=seed,
                stats_interval=1.0,
                baseline=src_a if rules is b else None,
            )
            c = campaign._run_one(cfg, console, judge=b if rules is a else None)
            found_by[f"{rules.name} native"] = len(c.found)
        known = {f.signature: f for f in store.findings()}
        n = written = 0
        for device in types:
            t0 = time.monotonic()
            for sig, program in explore_all(rules, explore_shape(device), depth):
                n += 1
                mine = known.get(sig)
                if mine is not None and (mine.meta.get("actions") or 1 << 30) <= len(program):
                    continue
                meta = {
                    "engine": "explore",
                    "depth": depth,
                    "shape": program.shape.to_dict(),
                    "time_to_find": round(time.monotonic() - t0, 3),
                    "minimized": True,
                    "actions": len(program),
                    "shortest": True,
                }
                store.write_finding(sig, program, meta)
                written += 1
        found_by[f"{rules.name} explore"] = n
        console.print(
            f"explore {rules.name}: {n} signature(s) within depth {depth}, "
            f"{written} reproducer(s) shorter than the corpus had",
            highlight=False,
        )
    rows = compare_rows(a, b, witnesses(store, a, b))
    return Comparison(a, b, rows, corpus, seconds, depth, types, found_by)
