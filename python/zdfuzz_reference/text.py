"""The ``.zdf`` text format: one action per line, a header naming the rules
and the machine shape.

Mirrors ``rust/core/src/program/text.rs``::

    rules p20
    config types=generic pgmaps=1 pages=4 cpus=2 ...
    memremap_pages pgmap=0
    get_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=1   # a comment

Operands may come in any order; ``cpu`` defaults to 0 and ``cached`` to
``none``. The text of an action (:func:`op_to_text`) is what traces and
violations show, so it must match the Rust side character for character.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zdfuzz_reference.config import Shape
from zdfuzz_reference.errors import ReferenceError_
from zdfuzz_reference.ops import (
    BY,
    BY_GUP,
    BY_KERNEL,
    CACHED,
    CPU,
    FLAGS,
    FOLL_LONGTERM,
    FOLL_PCI_P2PDMA,
    GUP_FAST,
    KIND_INDEX,
    KINDS,
    MAX_ARGS,
    SELECT,
    SELECT_COMPOUND,
    SELECT_DEVICE_COHERENT,
    SELECT_DEVICE_PRIVATE,
    SELECT_SYSTEM,
    SELECT_VALUES,
    SITE,
    SITE_NAMES,
    Op,
)
from zdfuzz_reference.rules import DEVICE_TYPES, device_type


class ProgramError(ReferenceError_):
    """A program that cannot be read or run: names the line and column."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message, line=line, col=col)


def flags_text(v: int) -> str:
    parts = []
    if v & FOLL_LONGTERM:
        parts.append("FOLL_LONGTERM")
    if v & FOLL_PCI_P2PDMA:
        parts.append("FOLL_PCI_P2PDMA")
    if v & GUP_FAST:
        parts.append("GUP_FAST")
    return "|".join(parts) if parts else "0"


def select_text(v: int) -> str:
    parts = []
    if v & SELECT_SYSTEM:
        parts.append("SYSTEM")
    if v & SELECT_DEVICE_PRIVATE:
        parts.append("DEVICE_PRIVATE")
    if v & SELECT_DEVICE_COHERENT:
        parts.append("DEVICE_COHERENT")
    if v & SELECT_COMPOUND:
        parts.append("COMPOUND")
    return "|".join(parts)


def op_to_text(op: Op) -> str:
    """One action as a line of text (no newline)."""
    s = op.kind
    for i, (name, dim) in enumerate(op.info().args):
        v = op.args[i]
        if dim == CACHED:
            s += f" {name}=none" if v == 0 else f" {name}={v - 1}"
        elif dim == BY:
            s += f" {name}={'gup' if v == BY_GUP else 'kernel'}"
        elif dim == FLAGS:
            s += f" {name}={flags_text(v)}"
        elif dim == SELECT:
            s += f" {name}={select_text(v)}"
        elif dim == SITE:
            s += f" {name}={SITE_NAMES[v] if v < len(SITE_NAMES) else '?'}"
        else:
            s += f" {name}={v}"
    return s


@dataclass
class Program:
    """Rules name, machine shape and actions (``lines``: source line of each)."""

    rules: str = "e3"
    shape: Shape = field(default_factory=Shape)
    ops: list[Op] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def to_text(self) -> str:
        out = f"rules {self.rules}\nconfig types={','.join(self.shape.types)}"
        for k, v in self.shape.header_fields():
            out += f" {k}={v}"
        out += "\n"
        for op in self.ops:
            out += op_to_text(op) + "\n"
        return out


def _parse_value(dim: str, text: str) -> int | None:
    if dim == CACHED:
        if text == "none":
            return 0
        return int(text) + 1 if text.isdigit() and int(text) < 0xFFFF else None
    if dim == BY:
        return {"gup": BY_GUP, "kernel": BY_KERNEL}.get(text)
    if dim == FLAGS:
        if text.isdigit():
            v = int(text)
            return v if v < 8 else None
        v = 0
        for part in text.split("|"):
            bit = {
                "FOLL_LONGTERM": FOLL_LONGTERM,
                "longterm": FOLL_LONGTERM,
                "FOLL_PCI_P2PDMA": FOLL_PCI_P2PDMA,
                "p2pdma": FOLL_PCI_P2PDMA,
                "GUP_FAST": GUP_FAST,
                "fast": GUP_FAST,
            }.get(part.strip())
            if bit is None:
                return None
            v |= bit
        return v
    if dim == SITE:
        return SITE_NAMES.index(text) if text in SITE_NAMES else None
    if dim == SELECT:
        v = 0
        for part in text.split("|"):
            p = part.strip()
            p = p[len("MIGRATE_VMA_SELECT_") :] if p.startswith("MIGRATE_VMA_SELECT_") else p
            bit = {
                "SYSTEM": SELECT_SYSTEM,
                "system": SELECT_SYSTEM,
                "DEVICE_PRIVATE": SELECT_DEVICE_PRIVATE,
                "device_private": SELECT_DEVICE_PRIVATE,
                "DEVICE_COHERENT": SELECT_DEVICE_COHERENT,
                "device_coherent": SELECT_DEVICE_COHERENT,
                "COMPOUND": SELECT_COMPOUND,
                "compound": SELECT_COMPOUND,
            }.get(p)
            if bit is None:
                return None
            v |= bit
        return v if v in SELECT_VALUES else None
    return int(text) if text.isdigit() and int(text) <= 0xFFFF else None


def _words(line: str) -> list[tuple[int, str]]:
    """(1-based column, word) pairs of a line, comment dropped."""
    body = line.split("#", 1)[0]
    out = []
    start: int | None = None
    for i, c in enumerate(body):
        if c.isspace():
            if start is not None:
                out.append((start + 1, body[start:i]))
                start = None
        elif start is None:
            start = i
    if start is not None:
        out.append((start + 1, body[start:]))
    return out


def _parse_op(ws: list[tuple[int, str]], line: int) -> Op:
    col, name = ws[0]
    if name not in KIND_INDEX:
        close = [k.name for k in KINDS if name in k.name or k.name in name]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ProgramError(line, col, f"unknown action `{name}`{hint}")
    info = KINDS[KIND_INDEX[name]]
    args = [0] * MAX_ARGS
    seen = [False] * MAX_ARGS
    for c, w in ws[1:]:
        if "=" not in w:
            raise ProgramError(line, c, f"expected key=value, got `{w}`")
        k, v = w.split("=", 1)
        idx = next((i for i, (n, _) in enumerate(info.args) if n == k), None)
        if idx is None:
            known = ", ".join(n for n, _ in info.args) or "none"
            raise ProgramError(line, c, f"`{info.name}` takes no operand `{k}` (operands: {known})")
        if seen[idx]:
            raise ProgramError(line, c, f"operand `{k}` given twice")
        val = _parse_value(info.args[idx][1], v)
        if val is None:
            raise ProgramError(line, c + len(k) + 1, f"bad value `{v}` for `{k}`")
        args[idx] = val
        seen[idx] = True
    for i, (n, dim) in enumerate(info.args):
        if not seen[i] and dim not in (CPU, CACHED):
            raise ProgramError(line, col, f"`{info.name}` needs operand `{n}`")
    return Op.new(name, *args)


def parse_action(text: str) -> Op:
    ws = _words(text)
    if not ws:
        raise ProgramError(1, 1, "empty action")
    return _parse_op(ws, 1)


def parse_program(text: str) -> Program:
    """Parse ``.zdf`` text (the rules default to e3, the shape to the default)."""
    p = Program()
    ram_set = order_set = False
    for i, raw in enumerate(text.splitlines()):
        line = i + 1
        ws = _words(raw)
        if not ws:
            continue
        head = ws[0][1]
        if head in ("rules", "config") and p.ops:
            raise ProgramError(line, ws[0][0], f"`{head}` must come before the first action")
        if head == "rules":
            if len(ws) != 2:
                raise ProgramError(line, ws[0][0], "expected `rules NAME`")
            p.rules = ws[1][1]
        elif head == "config":
            for c, w in ws[1:]:
                if "=" not in w:
                    raise ProgramError(line, c, f"expected key=value, got `{w}`")
                k, v = w.split("=", 1)
                if k == "types":
                    types = []
                    for t in v.split(","):
                        dt = device_type(t)
                        if dt is None:
                            raise ProgramError(line, c + 6, f"unknown device type `{t}` ({', '.join(DEVICE_TYPES)})")
                        types.append(dt)
                    p.shape.types = types
                elif k in dict(p.shape.fields()) or k in ("faults", "devdax_pmd", "fsdax_pmd"):
                    if not v.isdigit():
                        raise ProgramError(line, c + len(k) + 1, f"`{k}` needs a number, got `{v}`")
                    setattr(p.shape, k, int(v))
                    ram_set |= k == "ram"
                    order_set |= k == "order"
                else:
                    raise ProgramError(
                        line,
                        c,
                        f"unknown config key `{k}` (types, pgmaps, pages, cpus, procs, addrs, files, file_pages, tasks, ram, order, faults, devdax_pmd, fsdax_pmd)",
                    )
        else:
            p.ops.append(_parse_op(ws, line))
            p.lines.append(line)
    p.shape.apply_memory_defaults(ram_set, order_set)
    return p
