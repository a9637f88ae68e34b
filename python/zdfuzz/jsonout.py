"""``--json`` output: one versioned document per command.

Every document is one JSON object whose ``"schema"`` names the command and
the version of its layout (``"zdfuzz.fuzz/1"``); a field is only ever
added within a version, and a change that removes or retypes one bumps it.
The JSON Schema of each command is ``zdfuzz/schemas/<command>.json`` (in
the package), and ``docs/json.md`` describes the fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zdfuzz

if TYPE_CHECKING:
    from zdfuzz.baseline import ExploreNew, Replay, Row
    from zdfuzz.campaign import Campaign, Found
    from zdfuzz.corpus import Signature, StoredFinding

SCHEMA_DIR = Path(__file__).parent / "schemas"
#: command -> current schema version
VERSIONS = {
    "fuzz": 1,
    "replay": 1,
    "explain": 1,
    "minimize": 1,
    "explore": 1,
    "compare": 1,
    "corpus-list": 1,
    "rules-list": 1,
    "rules-show": 1,
    "rules-diff": 1,
    # not a command: each line of a campaign's CORPUS/stats/*.jsonl
    "stats": 1,
}


def schema_id(command: str) -> str:
    return f"zdfuzz.{command}/{VERSIONS[command]}"


def schema(command: str) -> dict[str, Any]:
    """The JSON Schema a command's ``--json`` output follows."""
    data: dict[str, Any] = json.loads((SCHEMA_DIR / f"{command}.json").read_text())
    return data


def doc(command: str, **fields: Any) -> dict[str, Any]:
    return {"schema": schema_id(command), "zdfuzz": zdfuzz.__version__, **fields}


def dumps(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=2, sort_keys=True)


def sig_json(sig: Signature | tuple[str, ...] | None) -> dict[str, str] | None:
    if sig is None:
        return None
    return {"invariant": sig[0], "kind": sig[1], "device": sig[2], "rules": sig[3]}


def violation_json(v: zdfuzz.Violation | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "invariant": v.invariant,
        "category": v.category,
        "step": v.step,
        "action": v.action,
        "message": v.message,
        "doc": v.doc,
        "expected": v.expected,
        "actual": v.actual,
        "trace": list(v.trace),
    }


def replay_json(r: Replay | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"rules": r.rules, "signature": sig_json(r.signature), "error": r.error, "text": r.describe()}


def _found(f: Found) -> dict[str, Any]:
    return {
        "signature": sig_json(f.signature),
        "label": f.label,
        "baseline_replay": f.other,
        "reproducer": str(f.path),
        "engine": f.engine,
        "seconds": f.seconds,
        "actions": f.actions,
        "original_actions": f.original_actions,
        "message": f.message,
        "category": f.category,
    }


def _campaign(c: Campaign) -> dict[str, Any]:
    t = c.totals()
    return {
        "rules": c.rules.name,
        "baseline": c.judge.name if c.judge is not None else None,
        "engine": c.cfg.engine,
        "seed": c.cfg.seed,
        "seconds": t["elapsed"],
        "execs": int(t["execs"]),
        "corpus": str(c.corpus.root),
        "stats_file": str(c.stats_path) if c.stats_path is not None else None,
        "earlier_findings": c.earlier,
        "findings": [_found(f) for f in c.found],
        "counts": {k: sum(1 for f in c.found if f.label == k) for k in ("new", "shared", "fixed")},
    }


def fuzz_json(c: Campaign) -> dict[str, Any]:
    return doc("fuzz", **_campaign(c), baseline_run=_campaign(c.baseline_run) if c.baseline_run is not None else None)


def stored_json(f: StoredFinding) -> dict[str, Any]:
    t = f.meta.get("time_to_find")
    return {
        "signature": sig_json(f.signature),
        "reproducer": str(f.zdf),
        "engine": f.meta.get("engine"),
        "time_to_find": t if isinstance(t, int | float) else None,
        "actions": f.meta.get("actions"),
        "minimized": f.minimized,
        "label": f.meta.get("label"),
        "baseline": f.meta.get("baseline"),
        "message": f.meta.get("message"),
    }


def explore_json(r: zdfuzz.ExploreResult, rules: str, new: ExploreNew | None, out: str | None) -> dict[str, Any]:
    program = r.counterexample
    return doc(
        "explore",
        rules=rules,
        baseline=new.baseline_replay.rules if new is not None and new.baseline_replay is not None else None,
        stop=r.stop,
        complete=r.complete,
        states=r.states,
        transitions=r.transitions,
        depth_reached=r.depth_reached,
        depth_limit=r.depth_limit,
        seconds=r.seconds,
        reduction=r.reduction,
        threads=r.threads,
        peak_memory=r.peak_memory,
        coverage=dict(r.coverage),
        levels=[{"depth": d, "new_states": n, "states": s, "transitions": t} for d, n, s, t in r.levels],
        summary=r.summary(),
        counterexample=program.to_text() if program is not None else None,
        signature=sig_json(new.signature) if new is not None else None,
        violation=violation_json(r.violation),
        baseline_replay=replay_json(new.baseline_replay) if new is not None else None,
        skipped=[
            {"signature": sig_json(s.signature), "why": s.why, "program": s.program.to_text()}
            for s in (new.skipped if new is not None else [])
        ],
        written_to=out,
    )


def row_json(r: Row) -> dict[str, Any]:
    w = r.reproducer
    return {
        "verdict": r.verdict,
        "invariant": r.bug[0],
        "kind": r.bug[1],
        "device": r.bug[2],
        "reproducer": str(w.path),
        "found_under": w.found_under,
        "engine": w.engine,
        "actions": len(w.program),
        "under_a": replay_json(w.under_a),
        "under_b": replay_json(w.under_b),
    }
