"""Reading what a user hands in: program files, and the rules they name.

Every problem is a ``zdfuzz.ZdfuzzError`` naming the file, the line and the
column where known, which each command prints as one line with exit status
2. A path that is not a regular file (a FIFO, ``/dev/zero``, a directory) is
refused before it is opened for reading, so nothing waits for a writer or
reads forever; a file larger than :data:`MAX_PROGRAM_BYTES` is refused
without reading past the limit.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import zdfuzz

#: the largest ``.zdf`` file read (about 1.3 million actions of typical length)
MAX_PROGRAM_BYTES = 32 << 20

_LINES = re.compile(r"\r\n|\r|\n")


def error(
    cls: type[zdfuzz.ZdfuzzError], message: str, file: str = "", line: int = 0, col: int = 0
) -> zdfuzz.ZdfuzzError:
    """An exception of the core's hierarchy, raised from Python."""
    e = cls(f"{file}:{line}:{col}: {message}" if file and line else f"{file}: {message}" if file else message)
    e.message, e.file, e.line, e.col = message, file, line, col
    return e


def error_line(e: zdfuzz.ZdfuzzError) -> str:
    """One line for a user: where (file:line:col when known) and what."""
    message = getattr(e, "message", "") or str(e)
    file = getattr(e, "file", "")
    if file and getattr(e, "line", 0):
        return f"{file}:{e.line}:{e.col}: {message}"
    if file:
        return f"{file}: {message}"
    return message


def read_bytes(path: str | os.PathLike[str], limit: int, cls: type[zdfuzz.ZdfuzzError]) -> bytes:
    """The content of a regular file of at most ``limit`` bytes."""
    name = str(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise error(cls, "cannot read: not a regular file", name)
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, the
        # open does not wait for a writer (and fstat below refuses it)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise error(cls, "cannot read: not a regular file", name)
            data = f.read(limit + 1)
    except OSError as e:
        raise error(cls, f"cannot read: {e.strerror or e}", name) from e
    if len(data) > limit:
        raise error(cls, f"larger than {limit} bytes: refused (the limit protects from endless inputs)", name)
    return data


def decode(data: bytes, name: str, cls: type[zdfuzz.ZdfuzzError]) -> str:
    """UTF-8 text; a bad byte is reported at its line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start].decode("utf-8")
        lines = _LINES.split(before)
        raise error(cls, f"not UTF-8 (byte 0x{data[e.start]:02x})", name, len(lines), len(lines[-1]) + 1) from e


def read_text(path: str | os.PathLike[str], limit: int = MAX_PROGRAM_BYTES) -> str:
    """A text file a user named, as ``Program.parse`` reads text: no newline
    translation (the core accepts ``\\n``, ``\\r\\n`` and ``\\r``)."""
    return decode(read_bytes(path, limit, zdfuzz.ProgramError), str(path), zdfuzz.ProgramError)


def read_program(path: str | os.PathLike[str]) -> zdfuzz.Program:
    """A ``.zdf`` file; errors name the file, the line and the column."""
    return zdfuzz.Program.parse(read_text(path), filename=str(path))


def rules_line(text: str) -> tuple[int, int]:
    """(line, column) of the name on a program's ``rules`` line, (0, 0) if none."""
    for i, raw in enumerate(_LINES.split(text), 1):
        words = raw.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "rules":
            return i, raw.index(words[1], raw.index("rules") + 5) + 1
    return 0, 0


def resolve_rules(
    program: zdfuzz.Program, path: str | os.PathLike[str], override: str | None = None, text: str = ""
) -> zdfuzz.Rules:
    """The rules a program runs under: ``override`` (a ``--rules`` option)
    if given, else its ``rules`` line, whose problems are reported at that
    line of ``path`` (``text``: the program's text, to find the line)."""
    if override is not None:
        return zdfuzz.Rules.resolve(override)
    try:
        return zdfuzz.Rules.resolve(program.rules)
    except zdfuzz.RulesError as e:
        line, col = rules_line(text)
        # a TOML file's own problem keeps its place; "cannot read" is said once
        inner = error_line(e) if e.file and e.line else e.message
        raise error(zdfuzz.RulesError, f"rules {program.rules}: {inner}", str(path), line, col) from e


def load(path: str | os.PathLike[str], override: str | None = None) -> tuple[zdfuzz.Program, zdfuzz.Rules]:
    """A ``.zdf`` file and the rules it runs under (see :func:`resolve_rules`)."""
    text = read_text(path)
    program = zdfuzz.Program.parse(text, filename=str(path))
    return program, resolve_rules(program, path, override, text)


def is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
