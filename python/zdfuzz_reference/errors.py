"""The reference model's own exceptions (it never imports ``zdfuzz``, whose
package loads the Rust extension).

They mirror ``zdfuzz``'s: one base class, a ``ValueError``, with ``message``,
``file``, ``line`` and ``col``; ``InvariantViolation`` (not a ``ValueError``)
for ``Machine.step``.
"""

from __future__ import annotations

from typing import Any


class ReferenceError_(ValueError):
    """Base class of the reference's errors for bad input."""

    def __init__(self, message: str, file: str = "", line: int = 0, col: int = 0) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        if file and line:
            text = f"{file}:{line}:{col}: {message}"
        elif line:
            text = f"line {line}, column {col}: {message}"
        elif file:
            text = f"{file}: {message}"
        else:
            text = message
        super().__init__(text)


class RulesError(ReferenceError_):
    """Rules that cannot be loaded: an unknown preset or a bad TOML file."""


class ConfigError(ReferenceError_):
    """A machine shape out of range."""


class InvariantViolation(Exception):  # noqa: N818 (zdfuzz's name)
    """Raised by ``Machine.step`` when an action breaks an invariant;
    ``violation`` holds it."""

    violation: Any
