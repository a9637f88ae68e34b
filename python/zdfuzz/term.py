"""Printing text that came from users: no markup, no terminal control.

Preset names, file names, metadata read from a corpus and messages that
quote a user's input reach the terminal. Rich would read ``[...]`` in them
as markup (and fail on ``[/x]``), and a terminal obeys escape sequences
(``\\x1b[2J`` clears it, OSC sequences set its title or links). A
:class:`SafeConsole` interprets no markup and replaces every control
character but newline and tab in the text it renders with a visible
``\\xNN`` escape; styles are given as ``style=`` or as ``Text`` spans, never
inside the text.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.text import Text

# C0 controls except \t and \n, DEL, and the C1 controls (which some
# terminals take as escape sequences on their own)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def sanitize(text: str) -> str:
    """``text`` with every control character but newline and tab escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class SafeConsole(Console):
    """A rich ``Console`` for text users wrote: markup off by default, and
    every string it renders (``print`` arguments, table cells, ``Text``)
    sanitized."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)
        super().__init__(*args, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(sanitize(text), **kwargs)


def styled(text: str, style: str) -> Text:
    """``text`` (sanitized) in ``style``."""
    return Text(sanitize(text), style=style)
