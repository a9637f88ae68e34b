"""``zdfuzz lab fuzz``: model-guided fuzzing of a real kernel.

The native engine searches the model; its findings and the programs it
found interesting (new abstract transitions) are translated into guest
scenarios (``translate.py``: the drivable prefix of each), run in batches
of several per boot, and judged by the kernel: a kernel report (KASAN, BUG,
Oops, WARN, Bad page state, a hung task) makes a *kernel finding*. A finding
is stored like a campaign finding — atomically, one per report signature
(the report's kind and function), with the scenario, the console, the model's
verdict for the same steps and for the program it came from — and is then
minimized on the kernel: steps are removed while the same report recurs.

A batch stops at the first item after which the kernel is suspect (it
printed a report, or a process could not be killed); the rest of the batch
runs in a fresh guest. Every scenario that ran is recorded in ``OUT/ran``,
so a killed campaign resumes where it was.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zdfuzz
from zdfuzz.corpus import atomic_write
from zdfuzz.lab import guest, scenario
from zdfuzz.lab.conformance import compare
from zdfuzz.lab.console import SEVERE, KernelEvent, observe
from zdfuzz.lab.errors import LabError, ScenarioError
from zdfuzz.lab.kernels import Kernel
from zdfuzz.lab.predict import Prediction, predict, rules_label
from zdfuzz.lab.run import agent_scenario, setup_of
from zdfuzz.lab.translate import NotDrivable, translate

REPORT_KINDS = SEVERE | {"warning", "hung-task", "rcu-stall"}
TEARDOWN = {"devdax": [], "fsdax-ext4": [["/bin/umount", "/mnt"]]}


def report_signature(e: KernelEvent) -> str:
    """What "the same kernel report" means: its kind and the function it
    names (offsets and addresses dropped)."""
    where = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "", e.func or e.where or "")
    if not where:
        where = re.sub(r"[0-9a-fx]{6,}", "", e.summary)[:60].strip()
    return f"{e.kind} {where}".strip()


@dataclass
class Candidate:
    key: str
    text: str
    origin: str  # where the program came from
    program: str  # the .zdf program it was translated from
    program_verdict: str
    modelled: int


@dataclass
class Stats:
    programs: int = 0
    translated: int = 0
    undrivable: int = 0
    scenarios: int = 0
    steps: int = 0
    boots: int = 0
    clean: int = 0
    disagreements: int = 0
    findings: int = 0
    minimize_boots: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class KernelFinding:
    signature: str
    path: Path
    steps_before: int
    steps_after: int


def _verdict_of(program: zdfuzz.Program, rules: zdfuzz.Rules) -> str:
    v = zdfuzz.Machine.for_program(program, rules=rules).run(program)
    return f"{v.violation.invariant} at step {v.violation.step}: {v.violation.message}" if v.violation else "clean"


def candidates_from(
    programs: list[tuple[str, zdfuzz.Program]], rules: zdfuzz.Rules, stats: Stats, seen: set[str]
) -> list[Candidate]:
    out = []
    for origin, prog in programs:
        stats.programs += 1
        try:
            t = translate(prog)
        except NotDrivable:
            stats.undrivable += 1
            continue
        key = hashlib.sha256(t.text.split("\nscenario", 1)[1].encode()).hexdigest()[:16]
        if key in seen:
            continue
        seen.add(key)
        stats.translated += 1
        modelled = t.text.count("=>")
        out.append(
            Candidate(
                key,
                t.text.replace("scenario fuzz", f"scenario fuzz-{key}"),
                origin,
                prog.to_text(),
                _verdict_of(prog, rules),
                modelled,
            )
        )
    return out


def engine_programs(
    rules_obj: zdfuzz.Rules, types: list[str], seed: int, execs: int
) -> list[tuple[str, zdfuzz.Program]]:
    """The native engine's findings and corpus for one device type at a
    time: the programs it found interesting, decoded as it decoded them."""
    out: list[tuple[str, zdfuzz.Program]] = []
    for t in types:
        f = zdfuzz.NativeFuzzer(rules_obj, shape={"types": [t]}, seed=seed, max_actions=32)
        for finding in f.run(max_execs=execs):
            out.append((f"native finding {finding.signature} (seed {seed})", finding.program))
        for e in f.take_new_entries():
            p = f.entry_program(e)
            if p is not None:
                out.append((f"native corpus entry (seed {seed}, {t})", p))
    return out


def corpus_programs(corpus: Path, rules_obj: zdfuzz.Rules, types: list[str]) -> list[tuple[str, zdfuzz.Program]]:
    """A campaign's findings (``findings/*.zdf``) and native corpus entries
    (``native/*.bin``, decoded by an engine of the same rules: the entry
    records its device types and kinds)."""
    out: list[tuple[str, zdfuzz.Program]] = []
    for p in sorted((corpus / "findings").glob("*.zdf")):
        try:
            out.append((f"finding {p.name}", zdfuzz.Program.parse(p.read_text())))
        except (zdfuzz.ProgramError, OSError, UnicodeDecodeError):
            continue
    engines = [zdfuzz.NativeFuzzer(rules_obj, shape={"types": [t]}) for t in types]
    for p in sorted((corpus / "native").glob("*.bin")):
        try:
            data = p.read_bytes()
        except OSError:
            continue
        prog = next((q for f in engines if (q := f.entry_program(data)) is not None), None)
        if prog is not None:
            out.append((f"corpus entry {p.name}", prog))
    return out


class LabFuzzer:
    def __init__(
        self,
        kernel: Kernel,
        accel: guest.Accel,
        out: Path,
        rules: str,
        batch: int = 6,
        progress: Callable[[str], None] | None = None,
        minimize_boots: int = 24,
    ) -> None:
        self.kernel, self.accel, self.out, self.rules = kernel, accel, out, rules
        self.rules_obj = zdfuzz.Rules.resolve(rules)
        self.batch, self.progress, self.minimize_boots = batch, progress, minimize_boots
        self.stats = Stats()
        (out / "findings").mkdir(parents=True, exist_ok=True)
        self.ran_file = out / "ran"
        self.ran: set[str] = set(self.ran_file.read_text().split()) if self.ran_file.exists() else set()
        self.known = {json.loads(p.read_text()).get("signature", "") for p in (out / "findings").glob("*.json")}
        self.found: list[KernelFinding] = []

    def say(self, msg: str) -> None:
        if self.progress:
            self.progress(msg)

    # -- running scenarios ---------------------------------------------------------------------

    def _boot(self, scs: list[scenario.Scenario]) -> tuple[list[dict[str, Any]], str, str]:
        """One guest for a batch of scenarios (same set-up kind); the records of
        each item, the console, the run status."""
        setups = [setup_of(sc) for sc in scs]
        image = guest.build_image(self.kernel, setups[0], [], None)
        items = []
        for sc, setup in zip(scs, setups, strict=True):
            spec = agent_scenario(sc, setup, image, self.accel.name)
            spec.pop("modules")
            spec["teardown"] = TEARDOWN.get(setup.name, [])
            items.append(spec)
        first = agent_scenario(scs[0], setups[0], image, self.accel.name)
        batch = {
            "name": "lab-fuzz",
            "step_timeout_ms": first["step_timeout_ms"],
            "settle_ms": first["settle_ms"],
            "modules": first["modules"],
            "batch": items,
        }
        self.stats.boots += 1
        run = guest.run_guest(
            self.kernel,
            image,
            batch,
            self.accel,
            cmdline_extra=setups[0].cmdline,
            setup=setups[0],
            idle_timeout=120,
            total_timeout=180 + sum(len(sc.steps) for sc in scs) * first["step_timeout_ms"] / 400,
        )
        return run.records, run.console, run.status

    def run_batch(self, scs: list[scenario.Scenario]) -> list[tuple[scenario.Scenario, Any, list[KernelEvent]]]:
        """Run scenarios (several per boot, a fresh guest after a suspect
        item); each scenario's comparison row and its kernel reports."""
        results = []
        pending = list(scs)
        while pending:
            records, console, status = self._boot(pending)
            ran = sorted({r["item"] for r in records if isinstance(r.get("item"), int)})
            tainted = next((r["item"] for r in records if r.get("t") == "tainted"), None)
            last = tainted if tainted is not None else (max(ran) if ran else -1)
            if status != "done" and ran:
                last = max(ran)  # the guest died during this item: its console tells why
            for k in range(last + 1):
                sc = pending[k]
                recs = [r for r in records if r.get("item") == k]
                tail = console if k == last and status != "done" else ""
                obs = observe(recs, len(sc.steps), tail)
                row = compare(sc, predict(sc, self.rules), obs, self.kernel.release, "done" if not tail else status, "")
                reports = [e for e in row.events if e.kind in REPORT_KINDS]
                results.append((sc, row, reports))
            if last < 0:
                raise LabError(
                    f"the guest ran none of the batch ({status}): " + " | ".join(console.strip().splitlines()[-5:])
                )
            pending = pending[last + 1 :]
        return results

    # -- findings ----------------------------------------------------------------------------

    def reproduces(self, text: str, signature: str) -> bool:
        """Does this smaller scenario still make the kernel print the same
        report? Only a scenario that stays meaningful counts: the model can
        run every step's actions (nothing refused), and the agent ran every
        step it was given (no missing file, mapping or pipe)."""
        try:
            sc = scenario.parse(text, "candidate.lab")
            pred = predict(sc, self.rules)
        except ScenarioError:
            return False
        if any(p.outcome == "refused" for p in pred.steps):
            return False
        self.stats.minimize_boots += 1
        [(_, row, reports)] = self.run_batch([sc])
        broken = any(s["kernel"] in ("error:EINVAL", "error:ESRCH", "skipped") for s in row.steps)
        return not broken and any(report_signature(e) == signature for e in reports)

    def minimize(self, text: str, signature: str) -> str:
        """Remove steps while the same report recurs (one boot per try, at
        most ``minimize_boots``): ddmin over the step lines."""
        head, steps = _split(text)
        budget = self.minimize_boots
        n = 2
        while len(steps) >= 2 and budget > 0:
            chunk = max(1, len(steps) // n)
            reduced = False
            for i in range(0, len(steps), chunk):
                if budget <= 0:
                    break
                trial = steps[:i] + steps[i + chunk :]
                if not any("=>" in s for s in trial):
                    continue
                budget -= 1
                self.say(f"minimizing {signature}: {len(steps)} steps, trying {len(trial)}")
                if self.reproduces(_join(head, trial), signature):
                    steps, n, reduced = trial, max(n - 1, 2), True
                    break
            if not reduced:
                if chunk == 1:
                    break
                n = min(len(steps), n * 2)
        return _join(head, steps)

    def record(self, c: Candidate, row: Any, reports: list[KernelEvent], pred: Prediction) -> None:
        new = [e for e in reports if report_signature(e) not in self.known]
        if not new:
            return
        e = new[0]
        sig = report_signature(e)
        self.known.add(sig)
        slug = re.sub(r"[^\w.-]+", "_", sig)[:80]
        before = c.text.count("\n")
        meta: dict[str, Any] = {
            "signature": sig,
            "kernel": self.kernel.release,
            "rules": rules_label(self.rules),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "report": e.to_json(),
            "reports": [x.to_json() for x in reports],
            "model_verdict": row.model,
            "result": row.result,
            "reasons": row.reasons,
            "origin": c.origin,
            "program": c.program,
            "program_verdict": c.program_verdict,
            "minimized": False,
        }
        path = self.out / "findings" / f"{slug}.lab"
        atomic_write(path, c.text)
        atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=1))
        self.say(f"kernel finding: {sig} ({row.model}); minimizing")
        small = self.minimize(c.text, sig)
        if small != c.text:
            atomic_write(path, small)
            sc = scenario.parse(small, str(path))
            meta["model_verdict_minimized"] = (
                lambda p: f"{p.violation.invariant}: {p.violation.message}" if p.violation else "clean"
            )(predict(sc, self.rules))
        meta["minimized"] = True
        atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=1))
        self.stats.findings += 1
        self.found.append(KernelFinding(sig, path, before, small.count("\n")))

    # -- the campaign --------------------------------------------------------------------------

    def run(
        self, seconds: float, types: list[str], seed: int, corpus: Path | None = None, engine_execs: int = 4000
    ) -> Stats:
        deadline = time.monotonic() + seconds
        rng = random.Random(seed)
        seen = set(self.ran)
        queue: list[Candidate] = []
        if corpus is not None:
            queue += candidates_from(corpus_programs(corpus, self.rules_obj, types), self.rules_obj, self.stats, seen)
        round_seed = seed
        while time.monotonic() < deadline:
            if not queue:
                self.say(f"asking the native engine for programs (seed {round_seed})")
                queue += candidates_from(
                    engine_programs(self.rules_obj, types, round_seed, engine_execs), self.rules_obj, self.stats, seen
                )
                round_seed += 1
                # findings first, then the programs with the most modelled steps
                queue.sort(key=lambda c: (not c.origin.startswith(("native finding", "finding")), -c.modelled))
                if not queue:
                    continue
            kind = "devdax" if "setup    devdax" in queue[0].text else "fsdax"
            take = [c for c in queue if (("setup    devdax" in c.text) == (kind == "devdax"))][: self.batch]
            for c in take:
                queue.remove(c)
            scs = [scenario.parse(c.text, f"{c.key}.lab") for c in take]
            self.say(
                f"boot {self.stats.boots + 1}: {len(scs)} {kind} scenarios "
                f"({self.stats.scenarios} run, {self.stats.findings} findings)"
            )
            results = self.run_batch(scs)
            for c, (sc, row, reports) in zip(take, results, strict=False):
                self.stats.scenarios += 1
                self.stats.steps += len(sc.steps)
                self.ran.add(c.key)
                with self.ran_file.open("a") as f:
                    f.write(c.key + "\n")
                if row.result == "disagree":
                    self.stats.disagreements += 1
                    atomic_write(
                        self.out / "disagreements" / f"{c.key}.lab", c.text + "".join(f"# {r}\n" for r in row.reasons)
                    )
                if reports:
                    self.record(c, row, reports, predict(sc, self.rules))
                else:
                    self.stats.clean += 1
            rng.shuffle(queue)
        return self.stats


def _split(text: str) -> tuple[list[str], list[str]]:
    lines = text.splitlines()
    head = [ln for ln in lines if not ln or ln.startswith("#") or ln.split(" ", 1)[0] in scenario.HEADERS]
    steps = [ln for ln in lines if ln not in head]
    return head, steps


def _join(head: list[str], steps: list[str]) -> str:
    return "\n".join(head + steps) + "\n"
