"""Reading what the guest said: the agent's JSON lines, and kernel messages
sorted into the kinds of report a kernel developer acts on.

Kernel log classes (the first line of each report; the lines after it, up to
the next report or ``---[ end trace``, are its context):

* ``oops`` — "BUG: unable to handle page fault", "general protection fault",
  "Oops:": the kernel touched memory it must not (here, typically a struct
  page whose memmap was removed).
* ``kasan`` / ``kfence`` — "BUG: KASAN: use-after-free in f" and friends.
* ``bad-page`` — "BUG: Bad page state", "Bad page map" (mm/page_alloc.c,
  mm/memory.c).
* ``vm-bug`` — "kernel BUG at mm/...", VM_BUG_ON dumps ("page dumped because").
* ``warning`` — "WARNING: CPU: n PID: n at FILE:LINE FUNC" (WARN_ON and friends).
* ``refcount`` — "refcount_t: underflow", "percpu ref (...) <= 0 ... after
  switching to atomic" (lib/percpu-refcount.c).
* ``hung-task``, ``rcu-stall``, ``panic``, ``bug`` (any other "BUG:").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# (class, pattern of the report's first line); first match wins.
_HEADERS: list[tuple[str, re.Pattern[str]]] = [
    ("kasan", re.compile(r"BUG: KASAN: (?P<what>[\w-]+) in (?P<func>[\w.]+)")),
    ("kfence", re.compile(r"BUG: KFENCE: (?P<what>[\w -]+?) in (?P<func>[\w.]+)")),
    ("bad-page", re.compile(r"BUG: Bad page (state|map)")),
    (
        "oops",
        re.compile(r"BUG: unable to handle (page fault|kernel)|general protection fault|BUG: kernel NULL pointer"),
    ),
    ("vm-bug", re.compile(r"kernel BUG at (?P<file>[\w/.-]+):(?P<line>\d+)|page dumped because")),
    ("warning", re.compile(r"WARNING: CPU: \d+ PID: \d+ at (?P<file>[\w/.-]+):(?P<line>\d+) (?P<func>[\w.]+)")),
    ("refcount", re.compile(r"refcount_t: \w+|percpu ref \(.*\) <= 0")),
    ("hung-task", re.compile(r"INFO: task .* blocked for more than")),
    ("rcu-stall", re.compile(r"rcu: INFO: .*(stall|detected stalls)")),
    ("panic", re.compile(r"Kernel panic - not syncing")),
    ("bug", re.compile(r"BUG: ")),
]
_RIP = re.compile(r"RIP: \d+:(?P<func>[\w.]+)\+0x")
_OOPS_LINE = re.compile(r"^Oops: ")
_END = re.compile(r"---\[ end trace|---\[ end Kernel panic")

SEVERE = {"oops", "kasan", "kfence", "bad-page", "vm-bug", "panic", "bug", "refcount"}


@dataclass
class KernelEvent:
    kind: str
    summary: str
    func: str = ""
    where: str = ""
    after: str = ""  # the step (or phase) after which the agent read it
    context: list[str] = field(default_factory=list)

    @property
    def signature(self) -> str:
        return f"{self.kind} {self.func or self.where or self.summary[:60]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "summary": self.summary,
            "func": self.func,
            "where": self.where,
            "after": self.after,
            "context": self.context[:40],
        }


def _strip_ts(line: str) -> str:
    return re.sub(r"^\[\s*\d+\.\d+\]\s?", "", line.rstrip("\r\n"))


def classify(lines: list[tuple[str, str]]) -> list[KernelEvent]:
    """Kernel reports in ``lines`` (``(after, text)`` pairs, in order)."""
    events: list[KernelEvent] = []
    current: KernelEvent | None = None
    for after, raw in lines:
        text = _strip_ts(raw)
        header = None
        for kind, rx in _HEADERS:
            m = rx.search(text)
            if m:
                header = (kind, m)
                break
        if header and not (current and current.kind == "oops" and _OOPS_LINE.match(text)):
            kind, m = header
            gd = m.groupdict()
            where = f"{gd['file']}:{gd['line']}" if gd.get("file") else ""
            current = KernelEvent(kind, text.strip(), gd.get("func") or "", where, after)
            events.append(current)
            continue
        if current is None:
            continue
        if _END.search(text):
            current.context.append(text)
            current = None
            continue
        current.context.append(text)
        rip = _RIP.search(text)
        if rip and not current.func:
            current.func = rip.group("func")
    return events


def kmsg_lines(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for r in records:
        if r.get("t") == "kmsg":
            after = str(r.get("after", ""))
            for ln in r.get("lines", []):
                out.append((after, str(ln.get("text", ""))))
    return out


def console_events(console: str) -> list[KernelEvent]:
    """Reports in the console log (what the kernel printed even when the
    agent could no longer read /dev/kmsg: a panic, a hang)."""
    return classify([("console", ln) for ln in console.splitlines()])


@dataclass
class StepObservation:
    index: int
    status: str  # ok | error | blocked | died | skipped | missing
    errno: str = ""
    detail: str = ""
    completed_during: int | None = None  # for a blocked step that returned later
    late_status: str = ""
    late_errno: str = ""
    stack: str = ""
    page: dict[str, Any] | None = None
    output: str = ""
    elapsed_ms: int | None = None

    @property
    def outcome(self) -> str:
        """``ok``, ``error:ERRNO``, ``blocked``, ``died``, ... (the immediate result)."""
        return f"error:{self.errno}" if self.status == "error" else self.status

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if v not in (None, "", [])}
        return d


@dataclass
class Observation:
    steps: list[StepObservation]
    events: list[KernelEvent]
    setup_failed: str = ""
    fatal: str = ""
    modules_failed: str = ""


def observe(records: list[dict[str, Any]], n_steps: int, console: str = "") -> Observation:
    """What the kernel did at each step, from the agent's records."""
    steps = [StepObservation(i, "missing") for i in range(n_steps)]
    setup_failed = fatal = modules_failed = ""
    for r in records:
        t = r.get("t")
        i = r.get("i")
        if t == "step" and isinstance(i, int) and 0 <= i < n_steps:
            s = steps[i]
            s.status = str(r.get("status", "missing"))
            s.errno = str(r.get("errno", ""))
            s.detail = str(r.get("detail", ""))
            s.stack = str(r.get("stack", ""))
            s.output = str(r.get("output", ""))
            s.elapsed_ms = r.get("elapsed_ms") if isinstance(r.get("elapsed_ms"), int) else None
            page = r.get("page")
            s.page = page if isinstance(page, dict) else None
        elif t == "late" and isinstance(i, int) and 0 <= i < n_steps:
            s = steps[i]
            during = r.get("during")
            s.completed_during = during if isinstance(during, int) else n_steps
            s.late_status = str(r.get("status", ""))
            s.late_errno = str(r.get("errno", ""))
            if s.late_status == "died":
                s.detail = str(r.get("detail", s.detail))
        elif t == "setup" and r.get("status") != "ok":
            setup_failed = f"{r.get('detail', '')}: {str(r.get('output', '')).strip()[:300]}"
        elif t == "module" and r.get("status") != "ok":
            modules_failed = f"module {r.get('name')}: {r.get('detail', '')}"
        elif t == "fatal":
            fatal = str(r.get("detail", ""))
    for s in steps:
        # An oops kills the task that hit it; if it held locks or an io_uring
        # it may never finish exiting, so the agent sees it as blocked with
        # do_exit on its stack.
        if s.status == "blocked" and re.search(r"\b(make_task_dead|do_exit|rewind_stack_and_make_dead)\b", s.stack):
            s.status = "died"
            s.detail = "the kernel killed the task (oops); it is stuck exiting"
    events = classify(kmsg_lines(records))
    seen = {(e.kind, e.summary) for e in events}
    for e in console_events(console):
        if (e.kind, e.summary) not in seen:
            events.append(e)
    return Observation(steps, events, setup_failed, fatal, modules_failed)
