"""The data oracle: what each page holds, and what each virtual page must
read back.

Mirrors ``rust/core/src/data.rs``. Every physical page carries a content
token; a CPU write, a device write to its device-private page and a DMA write
into a pinned page make a fresh token; a migration's copy copies it.
Independently the ledger remembers, per virtual page, the last token written
to *that virtual page*. I-W1 ("no lost write") holds when every live mapping
shows its virtual page's latest token: checked where a mapping is
re-established after a migration, before every CPU write, and at every zap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import pagetable, ram
from zdfuzz_reference.oracle import SAFETY
from zdfuzz_reference.pte import PTE

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def _new_token(m: Machine) -> int:
    t = m.s.next_token
    m.s.next_token = max((t + 1) & 0xFFFFFFFF, 1)
    return t


def _write_page(m: Machine, p: int, extra_v: int | None) -> int:
    """A write of a new token into page ``p``, seen by every virtual page that
    maps it or has a migration entry for it, and by ``extra_v``."""
    t = _new_token(m)
    m.touch_page(p)
    m.s.content[p] = t
    lay = m.layout
    for proc in range(lay.procs):
        for a in range(lay.addrs):
            e = pagetable.entry(m, proc, a)[0]
            if e.has_pfn() and e.pfn == p:
                m.s.ledger.vcontent[lay.pte_slot(proc, a)] = t
    if extra_v is not None:
        m.s.ledger.vcontent[extra_v] = t
    return t


def check_vpage(m: Machine, proc: int, addr: int, when: str) -> None:
    """I-W1 for (proc, addr): a live mapping shows the last value written."""
    e, _ = pagetable.entry(m, proc, addr)
    if not e.is_mapping():
        return
    p = e.pfn
    want, got = m.s.ledger.vcontent[m.layout.pte_slot(proc, addr)], m.s.content[p]
    if want != got:
        m.violate(
            "I-W1",
            SAFETY,
            [("proc", proc), ("addr", addr), ("pfn", p)],
            lambda: (
                f"lost write: {when}, process {proc} address {addr} maps pfn {p}, which holds data version {got}, but "
                f"the last write to that address was version {want}",
                f"version {want}",
                f"version {got}",
            ),
        )


def cpu_write(m: Machine, proc: int, addr: int, cpu: int) -> None:
    """The process stores through its mapping (after ``do_wp_page`` if the
    page is a shared anonymous one); the hardware sets the dirty bit."""
    check_vpage(m, proc, addr, "before a CPU write")
    if not pagetable.entry(m, proc, addr)[0].writable():
        ram.do_wp_page(m, proc, addr, cpu)
    e, level = pagetable.entry(m, proc, addr)
    if e.kind != pagetable.PRESENT:
        return
    if level == PTE:
        s = m.layout.pte_slot(proc, addr)
        m.s.ptes[s] = m.s.ptes[s]._replace(dirty=True)
    else:
        s = m.layout.pmd_slot(proc, addr)
        m.s.pmds[s] = m.s.pmds[s]._replace(dirty=True)
    t = _write_page(m, e.pfn, None)
    m.trace_note(lambda: f"pfn {e.pfn} <- data version {t}")


def device_write(m: Machine, p: int) -> None:
    """The device writes its device-private page."""
    t = _write_page(m, p, None)
    m.trace_note(lambda: f"pfn {p} <- data version {t} (device)")


def dma_write(m: Machine, p: int) -> None:
    """The device a GUP caller pinned ``p`` for writes it; the write belongs
    to the virtual page the pin was taken through."""
    v = m.s.ledger.pin_vpage[p]
    t = _write_page(m, p, v - 1 if v > 0 else None)
    m.trace_note(lambda: f"pfn {p} <- data version {t} (DMA)")
