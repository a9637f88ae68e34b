"""Reading a finding: ``zdfuzz explain``.

For each step of a reproducer: the action, the kernel function it models
(for a task's ``step``, which step of which kernel function runs), the CPU
it runs on, and the refcount / mapcount / pgmap-reference changes it made;
then the violated invariant in plain words with its id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import zdfuzz
from zdfuzz.corpus import Signature
from zdfuzz.term import sanitize


@dataclass
class Step:
    step: int
    action: str
    cpu: int
    models: str
    changes: list[str]
    notes: list[str]
    drain: bool


@dataclass
class Explanation:
    program: zdfuzz.Program
    rules: str
    steps: list[Step] = field(default_factory=list)
    violation: zdfuzz.Violation | None = None
    signature: Signature | None = None

    def lines(self) -> list[str]:
        return list(self.iter_lines())

    def write(self, out: IO[str]) -> None:
        """The narrative as plain text, control characters escaped; in time
        linear in the program (no per-line terminal rendering)."""
        chunk: list[str] = []
        for line in self.iter_lines():
            chunk.append(sanitize(line))
            if len(chunk) >= 4096:
                out.write("\n".join(chunk) + "\n")
                chunk.clear()
        if chunk:
            out.write("\n".join(chunk) + "\n")
        out.flush()

    def iter_lines(self) -> Iterator[str]:
        shape = self.program.shape.to_dict()
        yield (
            f"rules {self.rules}; machine: {', '.join(shape['types'])} "
            + " ".join(f"{k}={v}" for k, v in shape.items() if k != "types")
        )
        for s in self.steps:
            yield f"{s.step:>4}  cpu {s.cpu}  {'(drain) ' if s.drain else ''}{s.action}"
            yield f"        models: {s.models}"
            if s.changes:
                yield f"        changes: {'; '.join(s.changes)}"
            for n in s.notes:
                yield f"        note: {n}"
        v = self.violation
        if v is None:
            yield f"no violation under {self.rules}"
            return
        out: list[str] = []
        out.append(f"{v.invariant} ({v.category}) at step {v.step}: {v.action}")
        out.append(f"  what happened: {v.message}")
        if v.doc:
            out.append(f"  invariant {v.invariant}: {v.doc}")
        if v.expected or v.actual:
            out.append(f"  expected {v.expected}, actual {v.actual}")
        if v.category == "conformance":
            out.append(
                "  (conformance: the counters disagree with the preset's own description — a zdfuzz or preset "
                "problem, not a finding about the kernel design)"
            )
        if self.signature is not None:
            out.append(f"  signature: {self.signature}")
        yield from out


def explain(program: zdfuzz.Program, rules: str | zdfuzz.Rules | None = None) -> Explanation:
    """Replay ``program`` (raises ``zdfuzz.ProgramError`` when an action is
    not enabled) and describe every step."""
    docs = {name: doc for name, _args, doc in zdfuzz.action_kinds()}
    # the traced run first: a program that does not replay fails here, with
    # the line of the action at fault
    verdict = zdfuzz.Machine.for_program(program, rules=rules).run(program, trace=True)
    machine = zdfuzz.Machine.for_program(program, rules=rules)
    # pass 1, one action at a time: which task each `step` runs and where
    # (Machine.tasks: the few live tasks, not a snapshot of every object)
    task_cpu: dict[int, int] = {}
    step_models: list[tuple[str, int]] = []
    now = {slot: what for slot, what, _blocked in machine.tasks()}
    for a in program.actions:
        before = now
        cpu = a.args.get("cpu")
        cpu_n = cpu if isinstance(cpu, int) else 0
        if a.name == "step":
            slot = a.args["task"]
            assert isinstance(slot, int)
            what = before.get(slot, "no such task")
            step_models.append((f"{what} ({docs['step']})", task_cpu.get(slot, 0)))
        else:
            step_models.append((docs.get(a.name, ""), cpu_n))
        try:
            machine.step(a)
        except zdfuzz.InvariantViolation:
            break
        now = {slot: what for slot, what, _blocked in machine.tasks()}
        for slot in now:
            if slot not in before:
                task_cpu[slot] = cpu_n
    steps: list[Step] = []
    for t in verdict.trace:
        i = int(t["step"])
        name = str(t["action"]).split(" ", 1)[0]
        if not t["drain"] and i < len(step_models):
            models, cpu = step_models[i]
        else:
            models, cpu = docs.get(name, ""), int(t["cpu"])
        steps.append(Step(i, str(t["action"]), cpu, models, list(t["changes"]), list(t["notes"]), bool(t["drain"])))
    rules_name = machine.rules.name
    sig = Signature(*verdict.signature) if verdict.signature else None
    return Explanation(program, rules_name, steps, verdict.violation, sig)
