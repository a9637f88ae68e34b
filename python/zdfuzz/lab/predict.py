"""What the model predicts for a scenario, step by step.

The model runs the scenario's actions under the preset that matches the
kernel. After each lab step it *settles* the way a running kernel would
between two user-space steps: every kernel task that can make progress does
(``step task=N``), and RCU grace periods elapse while a callback is pending;
a task that cannot go on (``wait_for_completion``, ``wait_page_idle``) stays
where it waits. So for each step the model says what user space sees:

* ``ok`` — the call returns;
* ``error:ERRNO`` — it fails (the model notes ``-> -EOPNOTSUPP``);
* ``blocks`` — it is still in the kernel, and ``completes_at`` says after
  which later step the model lets it finish (or never, within the scenario);

and the first invariant the program breaks, if any, with the lab step it
broke at. The settled program is a plain ``.zdf`` program: ``zdfuzz lab
model SCENARIO`` prints it for ``zdfuzz explain``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zdfuzz
from zdfuzz.lab.errors import LabError, ScenarioError
from zdfuzz.lab.scenario import Scenario

_ERRNO_NOTE = re.compile(r"-> -(E[A-Z0-9]+)")


@dataclass
class StepPrediction:
    index: int
    outcome: str  # ok | error:ERRNO | blocks | unmodelled | not-run | refused
    completes_at: int | None = None
    notes: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    refused: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "", [])}


@dataclass
class ModelViolation:
    invariant: str
    category: str
    message: str
    step: int | None  # lab step; None = found by the end-of-program drain
    action: str
    # The first lab step at which the kernel may show it: the step itself,
    # or, for a violation in a task a @background step started, that step
    # (the guest does not wait for it, so it can happen during any later one).
    observable_from: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Prediction:
    rules: str
    steps: list[StepPrediction]
    violation: ModelViolation | None
    program: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            "steps": [s.to_json() for s in self.steps],
            "violation": self.violation.to_json() if self.violation else None,
        }


def _violation(v: Any, step: int | None) -> ModelViolation:
    return ModelViolation(v.invariant, v.category, v.message, step, v.action)


def load_rules(rules: str) -> zdfuzz.Rules:
    """A preset name or a TOML rules file."""
    try:
        return zdfuzz.Rules.resolve(rules)
    except (zdfuzz.ZdfuzzError, OSError) as e:
        raise LabError(f"rules {rules}: {e}") from None


def rules_label(rules: str) -> str:
    """How a table names the rules: a preset's name, or a file's stem."""
    return Path(rules).stem if rules.endswith(".toml") else rules


def predict(sc: Scenario, rules: str) -> Prediction:
    header = f"rules {rules}\nconfig {sc.config}\n"
    rules_obj = load_rules(rules)
    try:
        shape_prog = zdfuzz.Program.parse(header)
    except zdfuzz.ProgramError as e:
        raise ScenarioError(sc.path, 0, f"config: {e.message}") from None
    m = zdfuzz.Machine.for_program(shape_prog, rules=rules_obj)
    program: list[tuple[str, int | None]] = []  # (action, lab step or None for the prelude)
    steps = [StepPrediction(i, "unmodelled") for i in range(len(sc.steps))]
    violation: ModelViolation | None = None

    def do(action: str, lab: int | None, line: int) -> bool:
        """Run one action; False once the model has found a violation."""
        nonlocal violation
        try:
            m.step(action)
        except zdfuzz.InvariantViolation as e:
            program.append((action, lab))
            violation = _violation(e.violation, lab)
            return False
        except zdfuzz.ProgramError as e:
            raise ScenarioError(sc.path, line, f"model action {action!r}: {e.message}") from None
        program.append((action, lab))
        return True

    for line, action in sc.prelude:
        if not do(action, None, line):
            raise ScenarioError(sc.path, line, f"the prelude already breaks {violation.invariant if violation else ''}")

    owner: dict[int, int] = {}  # live task id -> lab step that spawned it

    def tasks() -> list[tuple[int, str, Any]]:
        return [(int(t[0]), str(t[1]), t[2]) for t in m.state()["tasks"]]

    def finished(lab: int) -> None:
        # A task that is gone has returned (also when its last step is the
        # one that broke an invariant: teardown under a pin still returns).
        ids = {t[0] for t in tasks()}
        for tid in [t for t in owner if t not in ids]:
            steps[owner.pop(tid)].completes_at = lab

    # Lab steps marked @background whose kernel tasks are held where the
    # step's own actions left them, until a `wait` for that step: the guest
    # does not wait for such a step, so what the next steps do can land
    # between the task's steps (a race the scenario sets up on purpose).
    held: set[int] = set()

    def settle(lab: int) -> bool:
        for _ in range(10_000):
            live = tasks()
            for tid, _desc, blocked in live:
                if blocked is None and owner.get(tid) not in held:
                    if not do(f"step task={tid}", lab, 0):
                        if violation is not None and tid in owner and sc.steps[owner[tid]].background:
                            violation.observable_from = owner[tid]
                        finished(lab)
                        return False
                    break
            else:
                if any(str(a) == "rcu_grace_period" for a in m.enabled_actions()):
                    if not do("rcu_grace_period", lab, 0):
                        finished(lab)
                        return False
                    continue
                break
            finished(lab)
        return True

    stopped = False
    for i, st in enumerate(sc.steps):
        if stopped:
            steps[i].outcome = "not-run"
            continue
        if st.op == "wait":
            target = st.args.get("step")
            held.difference_update(held if target is None else {target})
        if not st.model:
            if not settle(i):
                stopped = True
            continue
        steps[i].actions = list(st.model)
        before = {t[0] for t in tasks()}
        ok = True
        for action in st.model:
            try:
                why = m.why_not(action)
            except zdfuzz.ProgramError as e:
                raise ScenarioError(sc.path, st.line, f"model action {action!r}: {e.message}") from None
            if why is not None:
                steps[i].outcome = "refused"
                steps[i].refused = why
                ok = False
                break
            if not do(action, i, st.line):
                ok = False
                stopped = True
                break
        for tid in {t[0] for t in tasks()} - before:
            owner[tid] = i
        if st.background:
            held.add(i)
        if steps[i].outcome == "refused":
            stopped = True
            continue
        steps[i].outcome = "ok"
        if ok and not settle(i):
            stopped = True
        if any(o == i for o in owner.values()):
            steps[i].outcome = "blocks"
        elif steps[i].completes_at == i:
            steps[i].completes_at = None  # returned within its own step
    if violation is None and not stopped:
        verdict = m.finish()
        if verdict.violation is not None:
            violation = _violation(verdict.violation, None)

    text = "\n".join(
        [f"rules {rules}", f"config {sc.config}"]
        + [a if lab is None else f"{a:<48} # lab step {lab}: {sc.steps[lab].text}" for a, lab in program]
    )
    # The notes of each action (a GUP's -> -EOPNOTSUPP, a task's progress) from
    # one traced run of the same program.
    traced = zdfuzz.Program.parse(header + "\n".join(a for a, _ in program) + "\n")
    verdict = zdfuzz.Machine.for_program(traced, rules=rules_obj).run(traced, trace=True)
    for row in verdict.trace:
        k = int(row["step"])
        if row.get("drain") or k >= len(program):
            continue
        lab = program[k][1]
        if lab is None:
            continue
        notes = [str(n) for n in row.get("notes", [])]
        steps[lab].notes += notes
        if program[k][0] in sc.steps[lab].model:
            for n in notes:
                mm = _ERRNO_NOTE.search(n)
                if mm and steps[lab].outcome == "ok":
                    steps[lab].outcome = f"error:{mm.group(1)}"
    return Prediction(rules, steps, violation, text + "\n")
