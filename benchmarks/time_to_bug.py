#!/usr/bin/env python3
"""Time to bug: how long each engine takes to find each known regression.

    python benchmarks/run.py --time-to-bug [--regressions DIR] [--cap 60] [--seeds 5]
                                           [--engines native,hypothesis,atheris]

For every reproducer ``DIR/<preset>/<name>.zdf`` (default
``corpus/regressions``), found at run time, with its metadata
``<name>.json`` beside it (the signature fields ``invariant``, ``kind``,
``device``, ``rules``, flat or under ``"signature"``; without them the
signature comes from replaying the reproducer under the directory's preset),
each engine runs a fresh campaign (``zdfuzz.campaign.run``, exactly what
``zdfuzz fuzz`` runs) per seed, on that preset and the reproducer's device
types, capped at ``--cap`` seconds. The campaign stops at the first finding
of the reproducer's signature (``Config.stop_on``); its time is the
campaign's own time to find (``Found.seconds``: from the engine's start, the
atheris build excluded, earlier findings' minimization included, as a user
sees it). The table shows the median over seeds, ">CAP" when fewer than half
found it, "not found" when none did.

The engines run on the default machine shape for those types (as ``zdfuzz
fuzz`` does); a reproducer needing more (more pgmaps, CPUs, ...) says so in
the "beyond default shape" column, since no engine can find it then.
"""

from __future__ import annotations

import io
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

import zdfuzz
from zdfuzz import campaign
from zdfuzz.corpus import CorpusError, Signature, load_program

ENGINES = campaign.ENGINES
SIGNATURE_FIELDS = Signature._fields


@dataclass
class Regression:
    """One reproducer and what to look for."""

    zdf: Path
    preset: str
    signature: Signature
    types: tuple[str, ...]
    actions: int
    #: shape fields where the reproducer needs more than the default machine
    #: of its types (the engines run that default: they cannot reach these)
    beyond_default: dict[str, Any] = field(default_factory=dict)
    #: the reproducer replays to its signature under its rules
    replays: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.zdf.parent.name}/{self.zdf.name}"


def _meta_signature(meta: dict[str, Any]) -> Signature | None:
    for d in (meta.get("signature"), meta):
        if isinstance(d, dict) and all(isinstance(d.get(k), str) for k in SIGNATURE_FIELDS):
            return Signature(*(d[k] for k in SIGNATURE_FIELDS))
    return None


def discover(root: Path) -> tuple[list[Regression], list[str]]:
    """Every ``root/<preset>/*.zdf`` (sorted), and a note per file skipped."""
    regs: list[Regression] = []
    skipped: list[str] = []
    if not root.is_dir():
        return regs, skipped
    for zdf in sorted(root.glob("*/*.zdf")):
        preset = zdf.parent.name
        notes: list[str] = []
        try:
            program = load_program(zdf)
        except CorpusError as e:
            skipped.append(f"{zdf}: {e}")
            continue
        meta: dict[str, Any] = {}
        js = zdf.with_suffix(".json")
        if js.is_file():
            try:
                meta = json.loads(js.read_text())
            except ValueError as e:
                notes.append(f"unreadable {js.name}: {e}")
        else:
            notes.append(f"no {js.name}")
        sig = _meta_signature(meta)
        rules_name = sig.rules if sig else preset
        try:
            rules = zdfuzz.Rules.resolve(rules_name)
        except zdfuzz.RulesError as e:
            skipped.append(f"{zdf}: {e}")
            continue
        try:
            verdict = zdfuzz.Machine.for_program(program, rules=rules).run(program, trace=False)
        except zdfuzz.ZdfuzzError as e:
            skipped.append(f"{zdf}: does not run under {rules.name}: {e}")
            continue
        replayed = Signature(*verdict.signature) if verdict.signature else None
        if sig is None:
            if replayed is None:
                skipped.append(f"{zdf}: no signature in its metadata and clean under {rules.name}")
                continue
            sig = replayed
            notes.append("signature from a replay (none in the metadata)")
        # campaigns name the rules by their canonical name (an alias
        # directory such as v6.15 finds signatures under e4)
        sig = sig._replace(rules=rules.name)
        shape = program.shape.to_dict()
        types = tuple(shape["types"])
        default = zdfuzz.Machine(rules=rules, shape=zdfuzz.Shape(types=list(types))).shape.to_dict()
        # minimized reproducers are usually smaller than the default shape,
        # which is fine (the default machine contains them); larger is not
        diff = {k: v for k, v in shape.items() if k != "types" and v > default[k]}
        regs.append(Regression(zdf, preset, sig, types, len(program), diff, replayed == sig, notes))
    return regs, skipped


def time_to_signature(
    engine: str, rules: str, types: Iterable[str], target: Signature, seed: int, cap: float
) -> float | None:
    """Seconds a fresh ``engine`` campaign takes to find ``target`` (None:
    not within ``cap``)."""
    with tempfile.TemporaryDirectory(prefix="zdfuzz-ttb-") as d:
        cfg = campaign.Config(
            rules=rules,
            types=tuple(types),
            engine=engine,
            seconds=cap,
            corpus=Path(d),
            seed=seed,
            stop_on=frozenset({target}),
        )
        c = campaign.run(cfg, Console(file=io.StringIO(), width=200))
        for f in c.found:
            if f.signature == target:
                return f.seconds
        return None


def median_seconds(times: list[float | None]) -> float:
    """Median with "not found" as infinity (so a median over 5 seeds is
    finite when at least 3 found it)."""
    return statistics.median([math.inf if t is None else t for t in times])


def verdict_text(times: list[float | None], cap: float) -> str:
    found = [t for t in times if t is not None]
    if not found:
        return "not found"
    med = median_seconds(times)
    return f">{cap:g}" if math.isinf(med) else fmt_seconds(med)


def fmt_seconds(t: float) -> str:
    # two decimals below 10 s: the native engine finds most bugs in well under one
    return f"{t:.2f}" if t < 10 else f"{t:.1f}"


def measure(
    regs: list[Regression],
    engines: Iterable[str],
    seeds: Iterable[int],
    cap: float,
    progress: Callable[[str], None] = lambda s: None,
) -> list[dict[str, Any]]:
    """Run every (regression, engine, seed); one result dict per regression."""
    engines, seeds = list(engines), list(seeds)
    out = []
    for reg in regs:
        row: dict[str, Any] = {
            "reproducer": reg.name,
            "preset": reg.preset,
            "signature": reg.signature._asdict(),
            "types": list(reg.types),
            "actions": reg.actions,
            "beyond_default_shape": reg.beyond_default,
            "replays": reg.replays,
            "notes": reg.notes,
            "engines": {},
        }
        for engine in engines:
            times: list[float | None] = []
            error = None
            for seed in seeds:
                t0 = time.monotonic()
                try:
                    t = time_to_signature(engine, reg.signature.rules, reg.types, reg.signature, seed, cap)
                except Exception as e:  # noqa: BLE001 - e.g. atheris not installed: say so, go on
                    error = f"{type(e).__name__}: {e}"
                    break
                times.append(t)
                progress(
                    f"{reg.name} {engine} seed {seed}: "
                    f"{'not found' if t is None else f'{t:.1f}s'} (ran {time.monotonic() - t0:.1f}s)"
                )
            med = median_seconds(times) if times and error is None else math.inf
            row["engines"][engine] = {
                "seeds": seeds[: len(times)],
                "seconds": times,
                "found": sum(t is not None for t in times),
                "median_s": None if math.isinf(med) else med,
                "result": f"error: {error}" if error else verdict_text(times, cap),
            }
        out.append(row)
    return out
