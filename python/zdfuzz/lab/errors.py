"""The lab's one exception type: a message a person can act on.

Every failure the lab can foresee (a kernel that cannot be fetched, a host
tool that is missing, a scenario file with a mistake, a guest that hangs)
raises ``LabError`` with one line saying what happened and what to do; the
CLI prints it and exits with status 2.
"""

from __future__ import annotations


class LabError(ValueError):
    """A lab failure with a one-line, actionable message."""


class ScenarioError(LabError):
    """A mistake in a scenario file, with the file and line it is on."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
