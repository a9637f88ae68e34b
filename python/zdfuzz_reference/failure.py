"""Failure injection: kernel calls that fail when the program says so.

Mirrors ``rust/core/src/failure.rs``. ``fail_next site=S nth=N`` arms site
S so that its N-th next call fails (``vm_insert``: ``vm_insert_page`` /
``vmf_insert_*``; ``try_grab``: GUP's ``try_grab_folio``); the error paths
then run the way each era's code runs them. Only shapes with ``faults=1``
allow it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference.ops import SITE_NAMES

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def fail_next(m: Machine, site: int, nth: int) -> None:
    m.s.armed[site] = nth


def inject(m: Machine, site: int) -> bool:
    """Does this call at ``site`` fail? Consumes one call of an armed site."""
    a = m.s.armed[site]
    if a == 0:
        return False
    m.s.armed[site] = a - 1
    if a - 1 > 0:
        return False
    m.trace_note(lambda: f"injected failure: {SITE_NAMES[site]}")
    return True


def fail_next_enabled(m: Machine, site: int) -> str | None:
    if not m.layout.faults:
        return "this shape injects no failures (config faults=1 turns them on)"
    if m.s.armed[site] != 0:
        return "a failure is already armed at this site"
    return None
