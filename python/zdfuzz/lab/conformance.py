"""Comparing the model's prediction with what the kernel did.

Two things are compared, and a row of the conformance table agrees only when
both do:

* **The mechanics**, step by step: did the call return, fail with the same
  errno, or block — and if it blocked, after which step did it return (a
  truncate that waits for a pin returns after the step that drops the pin;
  an unbind that does not wait returns at once). These are what user space
  can see on any kernel, so they are compared up to the step at which the
  model reports a violation (after it the model says the kernel is broken and
  predicts nothing more).
* **The verdict**: a model violation against the kernel's reports (oops,
  KASAN, Bad page state, WARN...). A clean model and a kernel report
  disagree. A model violation and a kernel report after that step agree and
  the row is *confirmed*; a model violation and no report agree on the
  mechanics only — a stock kernel without KASAN often cannot show a use after
  free, and the row says so.

Result of a row: ``agree``, ``disagree``, ``n/a`` (the kernel does not offer
a path the scenario needs: a step marked ``@unsupported`` failed with that
errno; or the kernel lacks a config option or is too old), or ``error``
(the scenario could not run: set-up failed, the guest did not boot).
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zdfuzz.lab.console import SEVERE, KernelEvent, Observation, StepObservation
from zdfuzz.lab.predict import Prediction, StepPrediction, rules_label
from zdfuzz.lab.scenario import Scenario


@dataclass
class Row:
    scenario: str
    title: str
    kernel: str
    rules: str
    result: str  # agree | disagree | n/a | error
    model: str  # one-line model verdict
    observed: str  # one-line kernel summary
    confirmed: bool = False
    explained: str = ""  # a finding in docs/findings.md that explains a disagreement
    reasons: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    events: list[KernelEvent] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "kernel_release": self.kernel,
            "rules": self.rules,
            "result": self.result,
            "confirmed": self.confirmed,
            "explained_by": self.explained,
            "model": self.model,
            "kernel_observed": self.observed,
            "reasons": self.reasons,
            "steps": self.steps,
            "kernel_events": [e.to_json() for e in self.events],
        }


KNOWN = Path(__file__).with_name("known.toml")

# Which kernel reports are evidence of which model invariant, so a row
# compares like with like: a use after teardown (I-L2/I-L3) shows as a fault
# on the removed memmap, a KASAN or KFENCE report, or a page-state check; a
# block freed under DMA (I-X2) as the WARN in dax_disassociate_entry or a Bad
# page state; a refcount underflow (I-F1, I-R1) as a refcount or page-state
# warning. An invariant not listed takes any severe report.
USE_AFTER_FREE = {"oops", "kasan", "kfence", "bad-page", "vm-bug"}
EVIDENCE: dict[str, set[str]] = {
    "I-L2": USE_AFTER_FREE,
    "I-L3": USE_AFTER_FREE,
    "I-D1": USE_AFTER_FREE,
    "I-F9": USE_AFTER_FREE | {"warning"},
    "I-F1": {"vm-bug", "bad-page", "refcount", "warning", "kasan"},
    "I-R1": {"refcount", "warning"},
    "I-R3": USE_AFTER_FREE | {"refcount"},
    "I-X2": {"warning", "bad-page", "vm-bug"},
    "I-M6": {"warning", "vm-bug", "bad-page"},
    "I-L4": {"hung-task"},
    # a walk of a freed anon_vma: KASAN (with CONFIG_SLUB_RCU_DEBUG) or an oops
    "I-M10": {"kasan", "kfence", "oops"},
    "I-D3": {"hung-task", "rcu-stall"},
}


def evidence_for(invariant: str, events: list[KernelEvent]) -> list[KernelEvent]:
    kinds = EVIDENCE.get(invariant, SEVERE | {"warning"})
    return [e for e in events if e.kind in kinds]


def known_disagreements() -> list[dict[str, str]]:
    """Explained disagreements (known.toml): kernel behaviour recorded in
    docs/findings.md, each with the scenario that shows it."""
    with KNOWN.open("rb") as f:
        return [dict(k) for k in tomllib.load(f).get("known", [])]


def explain(row: Row) -> None:
    """Mark a disagreement that a recorded finding explains."""
    if row.result != "disagree":
        return
    for k in known_disagreements():
        if k["scenario"] == row.scenario and fnmatch.fnmatch(row.kernel, k["kernel"]):
            row.explained = k["finding"]
            row.reasons.append(f"explained by {k['finding']} (docs/findings.md): {k['summary']}")
            return


def describe_prediction(p: StepPrediction) -> str:
    if p.outcome == "blocks":
        return "blocks" + (
            f", returns after step {p.completes_at}" if p.completes_at is not None else ", never returns"
        )
    return p.outcome


def describe_observation(o: StepObservation) -> str:
    if o.status == "blocked":
        if o.completed_during is None:
            return "blocked, never returned"
        late = (
            f" ({o.late_status}{':' + o.late_errno if o.late_errno else ''})" if o.late_status not in ("", "ok") else ""
        )
        return f"blocked, returned after step {o.completed_during}{late}"
    return o.outcome


def _event_step(e: KernelEvent) -> int | None:
    try:
        return int(e.after)
    except ValueError:
        return None


def relevant_events(obs: Observation, n_steps: int) -> list[KernelEvent]:
    """Kernel reports the scenario's steps caused: those read after a step
    (not at boot or set-up), plus console-only severe reports (a panic the
    agent could not read)."""
    out = []
    for e in obs.events:
        if _event_step(e) is not None or e.after in ("end", "exit"):
            out.append(e)
        elif e.after == "console" and e.kind in SEVERE:
            out.append(e)
    return out


def compare(sc: Scenario, pred: Prediction, obs: Observation, kernel: str, run_status: str, run_message: str) -> Row:
    n = len(sc.steps)
    v = pred.violation
    model_line = (
        f"{v.invariant} ({v.category}) at step {v.step if v.step is not None else 'end'}: {v.message}" if v else "clean"
    )
    row = Row(sc.name, sc.title, kernel, rules_label(pred.rules), "agree", model_line, "")
    events = relevant_events(obs, n)
    row.events = events
    reports = [e for e in events if e.kind in SEVERE | {"warning", "hung-task", "rcu-stall"}]

    if obs.modules_failed or obs.setup_failed or obs.fatal:
        row.result = "error"
        row.reasons.append(obs.modules_failed or obs.setup_failed or obs.fatal)
    elif run_status in ("boot-timeout", "qemu-failed"):
        row.result = "error"
        row.reasons.append(run_message)
    elif all(s.status == "missing" for s in obs.steps) and not reports:
        row.result = "error"
        row.reasons.append(f"no step ran: {run_message or run_status}")

    na: list[str] = []
    mismatches: list[str] = []
    for i, (st, p, o) in enumerate(zip(sc.steps, pred.steps, obs.steps, strict=True)):
        row.steps.append(
            {
                "step": i,
                "guest": st.text,
                "model": describe_prediction(p),
                "kernel": describe_observation(o),
                "actions": p.actions,
                "detail": o.detail,
                "stack": o.stack.strip().splitlines()[:12],
            }
        )
        if row.result == "error":
            continue
        if o.status == "missing":
            if p.outcome not in ("not-run",):
                why = "the guest stopped before this step" if run_status != "done" else "no report for this step"
                if not reports:
                    mismatches.append(f"step {i} ({st.text}): {why} ({run_message or run_status})")
            continue
        if p.outcome == "not-run":
            continue
        if st.background and o.status in ("blocked", "ok"):
            continue
        if o.status == "error" and o.errno in st.unsupported and p.outcome != f"error:{o.errno}":
            na.append(f"step {i} ({st.text}): this kernel refuses it with {o.errno} (a path it does not offer)")
            break
        if p.outcome == "refused":
            na.append(f"step {i} ({st.text}): the model does not allow {p.actions} here: {p.refused}")
            break
        if p.outcome == "unmodelled":
            if o.status in ("error", "skipped"):
                row.result = "error"
                row.reasons.append(f"step {i} ({st.text}) failed: {o.outcome} {o.detail}".strip())
            elif o.status == "died" and not reports:
                row.result = "error"
                row.reasons.append(f"step {i} ({st.text}): the process died: {o.detail}")
            continue
        if o.status == "died":
            if v is None or (v.step is not None and i < v.step):
                mismatches.append(
                    f"step {i} ({st.text}): model {describe_prediction(p)}, kernel: the process died ({o.detail})"
                )
            continue
        want, got = describe_prediction(p), describe_observation(o)
        if o.status == "blocked" and p.outcome == "blocks":
            if o.completed_during != p.completes_at:
                mismatches.append(f"step {i} ({st.text}): model {want}; kernel {got}")
        elif (o.status == "ok" and p.outcome == "ok") or (o.status == "error" and p.outcome == f"error:{o.errno}"):
            pass
        else:
            mismatches.append(f"step {i} ({st.text}): model {want}; kernel {got}")
        if v is not None and v.step == i:
            break

    if row.result != "error":
        if na:
            row.result = "n/a"
            row.reasons += na
        else:
            if mismatches:
                row.result = "disagree"
                row.reasons += mismatches
            if v is None and reports:
                row.result = "disagree"
                row.reasons.append(
                    "the model saw no violation, the kernel reported: " + "; ".join(e.summary for e in reports[:3])
                )
            elif v is not None:
                since = v.step if v.observable_from is None else v.observable_from
                after = [
                    e for e in reports if (_event_step(e) is None or since is None or (_event_step(e) or 0) >= since)
                ]
                evidence = evidence_for(v.invariant, after)
                if evidence:
                    row.confirmed = row.result == "agree"
                    row.reasons.append(
                        f"the kernel reported it: {evidence[0].summary}"
                        + (f" in {evidence[0].func}" if evidence[0].func else "")
                    )
                elif after and row.result == "agree":
                    row.reasons.append(
                        f"the mechanics agree; the kernel reported {after[0].kind} ({after[0].summary}), "
                        f"which is not the kind of report {v.invariant} would give"
                    )
                elif row.result == "agree":
                    row.reasons.append(
                        "the mechanics agree; this kernel printed no report of the violation itself "
                        "(a stock kernel has no KASAN or DEBUG_VM)"
                    )
    parts = []
    notable = [s for s in obs.steps if s.status in ("blocked", "error", "died", "skipped")]
    if notable:
        parts.append(", ".join(f"step {s.index} {describe_observation(s)}" for s in notable))
    if reports:
        parts.append("; ".join(f"{e.kind}: {e.summary}" for e in reports[:2]))
    if run_status not in ("done",) and run_status:
        parts.append(run_status)
    row.observed = "; ".join(parts) or "every step returned, no kernel report"
    if row.observed and all(s.status == "missing" for s in obs.steps):
        row.observed = "no step ran" + (f" ({run_status})" if run_status else "")
    explain(row)
    return row
