#!/usr/bin/env python3
"""The Rust core against the pure-Python reference model, on the same byte programs.

    python benchmarks/core_speed.py [--actions 64 1024] [--seconds 3] [--rules e3]

Both ``zdfuzz.Machine.run_bytes`` and ``zdfuzz_reference.Machine.run_bytes``
run the same list of byte programs, back to back in this process. Every
program decodes to exactly N actions under both implementations (checked
before timing), the way ``rust/core/examples/speed.rs`` builds them: random
bytes, decoded, cut to the first N actions, re-encoded. "ns per action"
divides by those N program actions; the drain each run ends with comes on
top and is reported as steps.

Rates are per CPU-second of this process (user + system), so other work on a
shared machine does not count against either side; the ratio of the two is
the figure to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from typing import Any

import zdfuzz
import zdfuzz_reference as reference

#: both Machines' default preset (rules=None)
RULES = "e3"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def exact_programs(n_actions: int, count: int, rules: str = RULES, seed: int = 1) -> list[bytes]:
    """``count`` byte programs of the default shape that decode to exactly
    ``n_actions`` actions in the core and in the reference."""
    rng = random.Random(seed)
    ref = reference.Machine(rules=rules)
    out: list[bytes] = []
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 200 * count + 1000:
            raise RuntimeError(f"no {n_actions}-action programs under {rules} after {tries} tries")
        # ~3.5 bytes decode to an action; 6 per action leaves room. Decoding
        # stops at the first violation, so some programs come out shorter.
        p = zdfuzz.Program.from_bytes(rng.randbytes(n_actions * 6), rules=rules)
        if len(p) < n_actions:
            continue
        data = p.select(list(range(n_actions))).to_bytes()
        # the canonical bytes of enabled actions decode back to them, in both
        # implementations (the differential tests check this in general; the
        # benchmark checks its own inputs)
        if len(zdfuzz.Program.from_bytes(data, rules=rules)) != n_actions:
            continue
        if len(ref.decode_program(data)) != n_actions:
            raise AssertionError(f"the reference decodes a {n_actions}-action program differently: {data.hex()}")
        out.append(data)
    return out


def _time(run: Any, programs: list[bytes], seconds: float, min_programs: int) -> dict[str, float]:
    """Run ``programs`` round-robin for ``seconds`` (and at least
    ``min_programs`` runs); returns runs, steps, wall and CPU seconds."""
    runs = steps = 0
    c0, w0 = cpu_seconds(), time.perf_counter()
    i = 0
    while runs < min_programs or time.perf_counter() - w0 < seconds:
        steps += run(programs[i]).steps
        runs += 1
        i = (i + 1) % len(programs)
    return {"programs": runs, "steps": steps, "wall_s": time.perf_counter() - w0, "cpu_s": cpu_seconds() - c0}


def compare(n_actions: int, seconds: float, rules: str = RULES, count: int = 200) -> dict[str, Any]:
    """Core and reference on the same ``count`` programs of ``n_actions``
    actions, ``seconds`` each (the reference runs every program at least once
    when the budget allows ~1 s: its numbers then cover the same inputs)."""
    programs = exact_programs(n_actions, count, rules)
    core = zdfuzz.Machine(rules=rules)
    ref = reference.Machine(rules=rules)
    # same verdicts and step counts: the two measure the same work
    for p in programs[:20]:
        a, b = core.run_bytes(p), ref.run_bytes(p)
        ia = a.violation.invariant if a.violation else None
        ib = b.violation.invariant if b.violation else None
        if (ia, a.steps) != (ib, b.steps):
            raise AssertionError(f"core and reference disagree on {p.hex()}")
    out: dict[str, Any] = {"rules": rules, "actions": n_actions, "distinct_programs": len(programs)}
    for name, m in (("core", core), ("reference", ref)):
        r = _time(m.run_bytes, programs, seconds, min_programs=len(programs) if name == "core" else 3)
        actions = r["programs"] * n_actions
        r.update(
            actions=actions,
            actions_per_cpu_s=actions / r["cpu_s"],
            actions_per_wall_s=actions / r["wall_s"],
            ns_per_action=r["cpu_s"] * 1e9 / actions,
            ns_per_step=r["cpu_s"] * 1e9 / r["steps"],
            steps_per_program=r["steps"] / r["programs"],
        )
        out[name] = r
    out["ratio"] = out["core"]["actions_per_cpu_s"] / out["reference"]["actions_per_cpu_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actions", type=int, nargs="+", default=[64, 1024])
    ap.add_argument("--seconds", type=float, default=3.0, help="per implementation and length")
    ap.add_argument("--rules", default=RULES)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    rows = [compare(n, args.seconds, args.rules) for n in args.actions]
    for r in rows:
        c, f = r["core"], r["reference"]
        print(
            f"{r['rules']}, {r['actions']} actions: core {c['actions_per_cpu_s']:,.0f} actions/s "
            f"({c['ns_per_action']:.0f} ns/action), reference {f['actions_per_cpu_s']:,.0f} actions/s "
            f"({f['ns_per_action']:,.0f} ns/action): core x{r['ratio']:.0f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
