"""The compact byte encoding's *total* decoder.

Mirrors ``rust/core/src/program/bytes.rs``: every byte string is a valid
program. An action is one kind byte followed by one byte per operand (two,
little-endian, for a domain larger than 256): the kind is ``byte % kinds``,
each operand ``byte % domain size``. If that action is not enabled now, the
decoder takes the next enabled operand combination of the same kind (an
odometer, last operand fastest, wrapping), then the next kind that has one —
so nothing is ever rejected and a small mutation changes the program a
little. Decoding ends with the data, or when no action at all is found. The
search tries at most ``DECODE_PROBES`` combinations per kind of the operands
that decide whether an action is enabled (all but a trailing ``cpu``, and
GUP's ``flags``), then moves on to the next kind.

``mask`` restricts the decoder to a subset of kinds (a swarm "kind mask"):
masked kinds are skipped exactly like kinds with no enabled combination. With
every kind enabled (``mask`` None) this is the Rust decoder, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from zdfuzz_reference import memory_failure, pgmap, sched
from zdfuzz_reference.ops import KIND_INDEX, KINDS, MAX_ARGS, Op, dim_index, dim_size, dim_value

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def kind_mask(kinds: Iterable[str] | None) -> frozenset[int] | None:
    """The kind indices a decoder may produce (None: all of them)."""
    if kinds is None:
        return None
    bad = [k for k in kinds if k not in KIND_INDEX]
    if bad:
        raise ValueError(f"unknown action kinds: {', '.join(bad)}")
    return frozenset(KIND_INDEX[k] for k in kinds)


def _width(dim: str, m: Machine) -> int:
    return 2 if dim_size(dim, m.layout) > 256 else 1


def _kind_possible(m: Machine, kind: str) -> bool:
    """A cheap necessary condition for any action of ``kind`` to be enabled
    (the Rust decoder's shortcut; it never changes the result)."""
    s = m.s
    lay = m.layout
    led = s.ledger.pages
    if kind == "fail_next":
        return lay.faults and 0 in s.armed
    if kind in ("hmm_range_fault", "hmm_fault"):
        live_private = any(
            lay.pgmap_type[g] == "private" and s.pgmaps[g].state == pgmap.LIVE for g in range(lay.npgmaps)
        )
        return live_private and sched.free_task_slot(m) and any(s.alive)
    if kind == "memory_failure":
        return lay.faults and sched.free_task_slot(m) and not memory_failure.running(m)
    if kind == "step":
        return any(t is not None for t in s.tasks)
    if kind == "rcu_grace_period":
        return pgmap.any_switch_pending(m)
    if kind == "put_dev_pagemap":
        return any(n > 0 for n in s.ledger.kernel_pgmap_refs)
    if kind in ("free_device_page", "lock_page", "unlock_page", "migrate_vma_insert_page"):
        return any(h.driver for h in led)
    if kind in ("pci_free_p2pmem", "get_page"):
        return any(n > 0 for n in s.ledger.p2p_allocs)
    if kind == "put_page":
        return any(h.gup_gets > 0 or h.kernel_gets > 0 for h in led)
    if kind in ("unpin_user_page", "dma_write"):
        return any(h.gup_pins > 0 for h in led)
    if kind in ("dax_associate_entry", "dax_iomap_fault", "truncate", "dax_writeback"):
        return lay.nfiles > 0
    if kind in ("munmap", "get_user_pages", "pin_user_pages", "cpu_write", "do_swap_page"):
        return any(e.has_pfn() for e in s.ptes) or any(e.has_pfn() for e in s.pmds)
    if kind in ("split_huge_pmd", "mbind"):
        return any(e.has_pfn() for e in s.pmds)
    if kind in ("do_anonymous_page", "do_huge_pmd_anonymous_page"):
        return lay.npfns > lay.ndev
    if kind == "split_huge_page":
        return lay.order > 0
    return True


#: the most combinations of deciding operands tried per kind for one action
DECODE_PROBES = 1 << 12


def deciding_args(kind: str, dims: list[str]) -> int:
    """How many leading operands decide whether an action is enabled."""
    n = len(dims)
    while n > 0 and dims[n - 1] == "cpu":
        n -= 1
    if kind in ("get_user_pages", "pin_user_pages"):
        n -= 1  # flags
    return n


def decode_op(m: Machine, data: bytes, pos: int, mask: frozenset[int] | None = None) -> tuple[Op | None, int]:
    """Decode the next action at ``pos``: (the action or None, the new pos)."""
    if pos >= len(data):
        return None, pos
    nkinds = len(KINDS)
    k0 = data[pos] % nkinds
    pos += 1

    def byte() -> int:
        nonlocal pos
        b = data[pos] if pos < len(data) else 0
        pos += 1
        return b

    first = [0] * MAX_ARGS
    for i, (_, d) in enumerate(KINDS[k0].args):
        v = byte()
        if _width(d, m) == 2:
            v |= byte() << 8
        first[i] = v % max(dim_size(d, m.layout), 1)
    for dk in range(nkinds):
        ki = (k0 + dk) % nkinds
        info = KINDS[ki]
        if (mask is not None and ki not in mask) or not _kind_possible(m, info.name):
            continue
        sizes = [dim_size(d, m.layout) for _, d in info.args]
        total = 1
        for n in sizes:
            total *= n
        if total == 0:
            continue
        idx = [first[i] if dk == 0 else 0 for i in range(len(sizes))]
        ndec = deciding_args(info.name, [dim for _, dim in info.args])
        last: list[int] | None = None
        budget = DECODE_PROBES
        for _ in range(total):
            if idx[:ndec] != last:
                # a new combination of the deciding operands: one probe
                if budget == 0:
                    break  # the next kind
                budget -= 1
                last = idx[:ndec]
            op = Op.new(info.name, *(dim_value(info.args[i][1], idx[i]) for i in range(len(sizes))))
            if m.enabled(op) is None:
                return op, pos
            # the odometer: last operand fastest, wrapping
            i = len(sizes)
            while i > 0:
                i -= 1
                idx[i] += 1
                if idx[i] < sizes[i]:
                    break
                idx[i] = 0
    return None, pos


def encode_op(m: Machine, op: Op) -> bytes:
    """The bytes that decode to ``op`` (when it is enabled)."""
    out = bytearray([KIND_INDEX[op.kind]])
    for i, (_, d) in enumerate(op.info().args):
        idx = dim_index(d, op.args[i], m.layout) or 0
        out.append(idx & 0xFF)
        if _width(d, m) == 2:
            out.append(idx >> 8)
    return bytes(out)
