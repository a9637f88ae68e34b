"""The clean-era soak: long campaigns on the newest presets.

``zdfuzz soak --minutes N`` runs one campaign of N minutes for every
(preset, device type, engine) — by default the newest eras ``e4`` and ``e5``,
the four device types, and the three engines — each in its own corpus
directory ``DIR/<preset>/<type>/<engine>``, so every engine's discoveries are
recorded on their own. After each campaign the summary ``DIR/soak.json`` is
rewritten atomically; a killed soak started again skips the campaigns it
already finished. The final table lists every signature found, by whom and
how fast: each one must be fixed as a model bug or written up in
``docs/findings.md``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import zdfuzz
from zdfuzz.corpus import Corpus, atomic_write

PRESETS = ("e4", "e5")
TYPES = tuple(zdfuzz.DEVICE_TYPES)
ENGINES = ("native", "hypothesis", "atheris")


@dataclass
class Plan:
    minutes: float
    corpus: Path
    presets: tuple[str, ...] = PRESETS
    types: tuple[str, ...] = TYPES
    engines: tuple[str, ...] = ENGINES
    seed: int = 1
    jobs: int = 1
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def summary_path(self) -> Path:
        return self.corpus / "soak.json"


def _key(preset: str, t: str, engine: str) -> str:
    return f"{preset}/{t}/{engine}"


def load(plan: Plan) -> dict[str, dict[str, Any]]:
    """Campaigns a previous (perhaps killed) soak already finished."""
    if not plan.summary_path.is_file():
        return {}
    data = json.loads(plan.summary_path.read_text())
    return {r["key"]: r for r in data.get("runs", []) if r.get("minutes") == plan.minutes}


def save(plan: Plan, done: dict[str, dict[str, Any]]) -> None:
    data = {
        "minutes": plan.minutes,
        "presets": list(plan.presets),
        "types": list(plan.types),
        "engines": list(plan.engines),
        "seed": plan.seed,
        "runs": list(done.values()),
    }
    atomic_write(plan.summary_path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def run(plan: Plan, console: Console) -> dict[str, dict[str, Any]]:
    from zdfuzz import campaign

    done = load(plan)
    for preset in plan.presets:
        for t in plan.types:
            for engine in plan.engines:
                key = _key(preset, t, engine)
                if key in done:
                    console.print(f"{key}: done earlier, skipped", highlight=False)
                    continue
                cfg = campaign.Config(
                    rules=preset,
                    types=(t,),
                    engine=engine,
                    seconds=plan.minutes * 60,
                    jobs=plan.jobs,
                    corpus=plan.corpus / preset / t / engine,
                    seed=plan.seed,
                )
                t0 = time.monotonic()
                c = campaign.run(cfg, console)
                found = []
                for f in Corpus(cfg.corpus).findings():
                    found.append(
                        {
                            "signature": str(f.signature),
                            "reproducer": str(f.zdf),
                            "seconds": f.meta.get("time_to_find"),
                            "actions": f.meta.get("actions"),
                        }
                    )
                done[key] = {
                    "key": key,
                    "preset": preset,
                    "type": t,
                    "engine": engine,
                    "minutes": plan.minutes,
                    "wall_seconds": round(time.monotonic() - t0, 1),
                    "execs": int(sum(x.get("execs", 0) for x in c.stats.values())),
                    "findings": found,
                }
                save(plan, done)
    return done


def table(done: dict[str, dict[str, Any]]) -> Table:
    """Signatures found, with the engines that found them and their times."""
    by: dict[str, list[str]] = {}
    for r in done.values():
        for f in r["findings"]:
            secs = f["seconds"]
            by.setdefault(f["signature"], []).append(
                f"{r['engine']} {secs:.1f}s" if isinstance(secs, int | float) else r["engine"]
            )
    t = Table(title="soak findings (each must be a model fix or a docs/findings.md entry)")
    t.add_column("signature")
    t.add_column("found by")
    for sig in sorted(by):
        t.add_row(sig, ", ".join(sorted(by[sig])))
    if not by:
        t.add_row("none", "")
    return t
