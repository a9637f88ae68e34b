"""Lab scenarios: what the guest does, step by step, and which model
actions each step stands for.

A scenario is a ``.lab`` text file, one statement per line, ``#`` comments::

    scenario f1-devdax-unbind-iouring
    title    device-dax unbind while an io_uring fixed buffer pins a page
    setup    devdax                      # guest set-up (setups.py)
    needs    CONFIG_DEV_DAX CONFIG_IO_URING
    config   types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 ram=0 order=0
    model    memremap_pages pgmap=0      # what the set-up is, in the model
    actors   A

    A open path=/dev/dax0.0 as=dax
    A mmap file=dax pages=1 as=m
    A touch map=m page=0                 => dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
    A iouring_register map=m page=0      => pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=0
    A munmap map=m                       => munmap proc=0 addr=0 cpu=0
    - unbind_dax dev=dax0.0              => memunmap_pages pgmap=0 cpu=0
    A iouring_unregister                 => unpin_user_page pfn=0 cpu=0

A step is ``RUNNER OP [key=value...] [@option=value...] [=> ACTION[; ACTION...]]``.
``RUNNER`` is an actor (a process that keeps its files, mappings, pipes
and io_uring across steps; ``fork`` makes a new one) or ``-`` for a one-shot
process (sysfs writes, truncate, commands: a step that blocks in the kernel
blocks nobody else). The actions after ``=>`` are ``.zdf`` actions: the model
runs them under the preset that matches the kernel's version, and its
prediction for the step (returns, fails with an errno, blocks until a later
step) is compared with what the kernel did. Steps without ``=>`` are plumbing
the model does not see (opening a file, creating a mapping).

Step options: ``@unsupported=ERRNO`` — if the kernel refuses this step with
ERRNO and the model did not predict it, the kernel does not offer this path
(the scenario is reported as not applicable on that kernel, with the reason);
``@timeout=SECONDS`` — how long the step may take before it counts as blocked;
``@background=yes`` — the step stays in the kernel by design (an I/O in flight
on a slow device, holding its pin, or a driver's eviction that another
actor races): whether and when it returns is not compared, and a later
``- wait step=N`` waits for it. With ``@timeout=0`` the guest goes on to the
next step at once. The model leaves the kernel tasks such a step starts
where its own actions (``=> ...; step task=N``) leave them until the
``wait``, so the steps between run inside the window.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zdfuzz.lab.errors import ScenarioError

# op -> (runs in an actor?, required args, optional args with types)
INT, BOOL, STR, ARGV = "int", "bool", "str", "argv"
OPS: dict[str, tuple[bool, dict[str, str], dict[str, str]]] = {
    "open": (True, {"path": STR, "as": STR}, {"flags": STR}),
    "close": (True, {"file": STR}, {}),
    "mmap": (True, {"as": STR}, {"file": STR, "pages": INT, "offset": INT, "shared": BOOL}),
    "touch": (True, {"map": STR}, {"page": INT, "pages": INT, "write": BOOL}),
    "munmap": (True, {"map": STR}, {}),
    "vmsplice": (True, {"map": STR, "as": STR}, {"page": INT, "pages": INT}),
    "close_pipe": (True, {"pipe": STR}, {}),
    "iouring_register": (True, {"map": STR}, {"page": INT, "pages": INT, "ring": STR}),
    "iouring_unregister": (True, {}, {"ring": STR}),
    "iouring_close": (True, {}, {"ring": STR}),
    "drop_holdings": (True, {}, {}),
    "dio_read": (True, {"map": STR, "dev": STR}, {"page": INT, "pages": INT}),
    "hmm": (True, {"dev": STR, "cmd": STR, "map": STR}, {"page": INT, "pages": INT}),
    "fork": (True, {"child": STR}, {}),
    "exit": (True, {}, {}),
    "write_sysfs": (False, {"path": STR, "value": STR}, {}),
    "unbind_driver": (False, {"driver": STR}, {"device": STR}),
    "read_file": (False, {"path": STR}, {}),
    "rmmod": (False, {"module": STR}, {}),
    "insmod": (False, {"module": STR}, {"params": STR}),
    "write_file": (False, {"path": STR}, {"pages": INT}),
    "truncate": (False, {"path": STR}, {"size": INT}),
    "punch_hole": (False, {"path": STR}, {"page": INT, "pages": INT}),
    "reflink": (False, {"src": STR, "dst": STR}, {}),
    "mount": (False, {"dev": STR, "dir": STR, "fstype": STR}, {"options": STR}),
    "umount": (False, {"dir": STR}, {}),
    "sleep": (False, {"ms": INT}, {}),
    "sync": (False, {}, {}),
    "exec": (False, {"argv": ARGV}, {}),
    "wait": (False, {}, {"step": INT}),
}

# Convenience names: op -> (agent op, how to build its args)
ALIASES: dict[str, tuple[str, dict[str, str], Any]] = {
    "unbind_dax": (
        "write_sysfs",
        {"dev": STR},
        lambda a: {"path": "/sys/bus/dax/drivers/device_dax/unbind", "value": a["dev"]},
    ),
    "bind_dax": (
        "write_sysfs",
        {"dev": STR},
        lambda a: {"path": "/sys/bus/dax/drivers/device_dax/bind", "value": a["dev"]},
    ),
    "unbind_nvme": (
        "unbind_driver",
        {},
        lambda a: {"driver": "/sys/bus/pci/drivers/nvme"},
    ),
    "unbind_pmem": (
        "unbind_driver",
        {},
        lambda a: {"driver": "/sys/bus/nd/drivers/nd_pmem"},
    ),
    "disable_namespace": (
        "exec",
        {"ns": STR},
        lambda a: {"argv": ["/usr/bin/ndctl", "disable-namespace", a["ns"]]},
    ),
    "enable_namespace": (
        "exec",
        {"ns": STR},
        lambda a: {"argv": ["/usr/bin/ndctl", "enable-namespace", a["ns"]]},
    ),
}

HEADERS = {
    "scenario",
    "title",
    "doc",
    "setup",
    "needs",
    "config",
    "model",
    "actors",
    "kernel",
    "module",
    "timeout",
    "slowdev",
}


@dataclass
class Step:
    line: int
    runner: str
    op: str
    args: dict[str, Any]
    text: str
    model: list[str] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)
    timeout: float | None = None
    background: bool = False

    @property
    def modelled(self) -> bool:
        return bool(self.model)


@dataclass
class Scenario:
    path: str
    name: str = ""
    title: str = ""
    doc: list[str] = field(default_factory=list)
    setup: str = "none"
    needs: list[str] = field(default_factory=list)
    config: str = ""
    prelude: list[tuple[int, str]] = field(default_factory=list)
    actors: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    modules: list[tuple[str, str]] = field(default_factory=list)
    min_kernel: tuple[int, int] | None = None
    timeout: float | None = None
    slowdev_ms: int | None = None

    def program_text(self, rules: str) -> str:
        """The model's side as a ``.zdf`` program (before the lab's settling
        steps are added), for ``zdfuzz explain``."""
        lines = [f"rules {rules}", f"config {self.config}"]
        lines += [t for _, t in self.prelude]
        for s in self.steps:
            lines += [f"{a}    # {s.text}" for a in s.model]
        return "\n".join(lines) + "\n"


def _strip_comment(line: str) -> str:
    quote = ""
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":
            return line[:i]
    return line


def _convert(path: str, lineno: int, key: str, kind: str, raw: str) -> Any:
    if kind == INT:
        try:
            v = int(raw, 0)
        except ValueError:
            raise ScenarioError(path, lineno, f"{key}={raw!r}: expected an integer") from None
        if v < 0:
            raise ScenarioError(path, lineno, f"{key}={raw!r}: expected a non-negative integer")
        return v
    if kind == BOOL:
        if raw.lower() in ("1", "true", "yes", "y"):
            return True
        if raw.lower() in ("0", "false", "no", "n"):
            return False
        raise ScenarioError(path, lineno, f"{key}={raw!r}: expected true or false")
    if kind == ARGV:
        try:
            argv = shlex.split(raw)
        except ValueError as e:
            raise ScenarioError(path, lineno, f"{key}: {e}") from None
        if not argv:
            raise ScenarioError(path, lineno, f"{key}: an empty command")
        return argv
    return raw


def _parse_step(path: str, lineno: int, text: str, guest: str, model: str | None) -> Step:
    try:
        words = shlex.split(guest)
    except ValueError as e:
        raise ScenarioError(path, lineno, f"cannot split the step: {e}") from None
    if len(words) < 2:
        raise ScenarioError(path, lineno, "a step is RUNNER OP [key=value...]: RUNNER is an actor name or '-'")
    runner, op, rest = words[0], words[1], words[2:]
    pairs: dict[str, str] = {}
    options: dict[str, str] = {}
    for w in rest:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise ScenarioError(path, lineno, f"{w!r}: arguments are key=value")
        target = options if k.startswith("@") else pairs
        if k in target:
            raise ScenarioError(path, lineno, f"{k} given twice")
        target[k] = v
    if op in ALIASES:
        agent_op, required, build = ALIASES[op]
        optional: dict[str, str] = {}
        actor_op = False
    elif op in OPS:
        actor_op, required, optional = OPS[op]
        agent_op, build = op, None
    else:
        known = ", ".join(sorted(list(OPS) + list(ALIASES)))
        raise ScenarioError(path, lineno, f"unknown operation {op!r} (known: {known})")
    for k in pairs:
        if k not in required and k not in optional:
            allowed = ", ".join(list(required) + list(optional)) or "none"
            raise ScenarioError(path, lineno, f"{op}: unknown argument {k!r} (arguments: {allowed})")
    for k in required:
        if k not in pairs:
            raise ScenarioError(path, lineno, f"{op}: missing argument {k}=")
    kinds = {**required, **optional}
    args = {k: _convert(path, lineno, k, kinds[k], v) for k, v in pairs.items()}
    if build is not None:
        args = build(args)
    if actor_op and runner == "-":
        raise ScenarioError(path, lineno, f"{op} runs in a process that keeps its state: name an actor, not '-'")
    step = Step(line=lineno, runner=runner, op=agent_op, args=args, text=guest.strip())
    for k, v in options.items():
        if k == "@unsupported":
            step.unsupported = {e.strip() for e in v.split(",") if e.strip()}
            if not all(e.startswith("E") and e.isupper() for e in step.unsupported):
                raise ScenarioError(path, lineno, f"@unsupported={v}: expected errno names such as EOPNOTSUPP")
        elif k == "@background":
            step.background = _convert(path, lineno, k, BOOL, v)
        elif k == "@timeout":
            try:
                step.timeout = float(v)
            except ValueError:
                raise ScenarioError(path, lineno, f"@timeout={v!r}: expected seconds") from None
            if not step.timeout >= 0:
                raise ScenarioError(path, lineno, f"@timeout={v}: expected seconds, 0 or more")
        else:
            raise ScenarioError(path, lineno, f"unknown step option {k} (@unsupported, @timeout, @background)")
    if model is not None:
        step.model = [a.strip() for a in model.split(";") if a.strip()]
        if not step.model:
            raise ScenarioError(path, lineno, "nothing after '=>': name the model actions or drop the arrow")
    return step


def parse(text: str, path: str = "<scenario>") -> Scenario:
    sc = Scenario(path=path)
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        rest = rest.strip()
        if head in HEADERS:
            if sc.steps and head not in ("doc",):
                raise ScenarioError(path, lineno, f"{head!r} must come before the first step")
            if head in seen and head not in ("model", "doc", "module", "needs"):
                raise ScenarioError(path, lineno, f"{head!r} given twice")
            seen.add(head)
            if not rest and head not in ("doc",):
                raise ScenarioError(path, lineno, f"{head!r} needs a value")
            if head == "scenario":
                if not all(c.isalnum() or c in "-_." for c in rest):
                    raise ScenarioError(path, lineno, f"scenario name {rest!r}: use letters, digits, '-', '_', '.'")
                sc.name = rest
            elif head == "title":
                sc.title = rest
            elif head == "doc":
                sc.doc.append(rest)
            elif head == "setup":
                sc.setup = rest
            elif head == "needs":
                for opt in rest.split():
                    if not opt.startswith("CONFIG_"):
                        raise ScenarioError(path, lineno, f"needs {opt}: expected CONFIG_ options")
                    sc.needs.append(opt)
            elif head == "config":
                sc.config = rest
            elif head == "model":
                sc.prelude.append((lineno, rest))
            elif head == "actors":
                sc.actors = rest.split()
                for a in sc.actors:
                    if a == "-" or not a.isidentifier():
                        raise ScenarioError(path, lineno, f"actor name {a!r}: use an identifier such as A or parent")
            elif head == "module":
                name, _, params = rest.partition(" ")
                sc.modules.append((name, params.strip()))
            elif head == "kernel":
                op, _, ver = rest.partition(" ")
                parts = ver.strip().split(".")
                if op != ">=" or len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
                    raise ScenarioError(path, lineno, "kernel: expected `kernel >= MAJOR.MINOR`")
                sc.min_kernel = (int(parts[0]), int(parts[1]))
            elif head == "slowdev":
                sc.slowdev_ms = _convert(path, lineno, "slowdev", INT, rest)
            elif head == "timeout":
                try:
                    sc.timeout = float(rest)
                except ValueError:
                    raise ScenarioError(path, lineno, f"timeout {rest!r}: expected seconds") from None
            continue
        guest, arrow, model = line.partition("=>")
        step = _parse_step(path, lineno, raw.strip(), guest, model if arrow else None)
        if (
            step.runner != "-"
            and step.runner not in sc.actors
            and not any(s.op == "fork" and s.args.get("child") == step.runner for s in sc.steps)
        ):
            raise ScenarioError(
                path, lineno, f"runner {step.runner!r} is not an actor (list it in `actors`, or fork it first)"
            )
        if step.op == "fork" and (step.args["child"] in sc.actors or step.args["child"] == "-"):
            raise ScenarioError(path, lineno, f"fork child={step.args['child']}: that actor already exists")
        step.text = guest.strip()
        sc.steps.append(step)
    if not sc.name:
        raise ScenarioError(path, 0, "no `scenario NAME` line")
    if not sc.steps:
        raise ScenarioError(path, 0, "no steps")
    if any(s.modelled for s in sc.steps) and not sc.config:
        raise ScenarioError(path, 0, "steps name model actions but there is no `config` line")
    return sc


def load(path: Path) -> Scenario:
    try:
        if not path.is_file():
            raise ScenarioError(str(path), 0, "not a regular file")
        data = path.read_bytes()
    except OSError as e:
        raise ScenarioError(str(path), 0, f"cannot read: {e.strerror}") from e
    if len(data) > 1 << 20:
        raise ScenarioError(str(path), 0, "larger than 1 MiB: not a scenario")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ScenarioError(str(path), line, "not UTF-8 text") from e
    return parse(text, str(path))


def builtin_dir() -> Path:
    return Path(__file__).resolve().parent / "scenarios"


def builtin() -> list[Path]:
    """The conformance suite shipped with zdfuzz, in file-name order."""
    return sorted(builtin_dir().glob("*.lab"))


def find(name: str) -> Path:
    """A scenario by file path or by the name of a built-in one."""
    p = Path(name)
    if p.suffix == ".lab" or p.exists():
        return p
    for b in builtin():
        if b.stem == name:
            return b
        try:
            if load(b).name == name:
                return b
        except ScenarioError:
            continue
    known = ", ".join(b.stem for b in builtin())
    raise ScenarioError(name, 0, f"no such scenario file or built-in scenario (built-in: {known})")
