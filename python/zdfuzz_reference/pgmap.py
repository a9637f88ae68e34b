"""struct dev_pagemap: registration, teardown and lookups.

Mirrors mm/memremap.c: ``memremap_pages`` (``percpu_ref_init`` of
``pgmap->ref`` with a release that completes ``pgmap->done``,
``memmap_init_zone_device``, one init reference per page where the era takes
them); ``memunmap_pages`` as a task with the steps the kernel blocks between —
shut user access down (nothing to zap for the device-private and coherent
pages a driver migrates back itself), ``percpu_ref_kill``, drop the init
references (E1: ``put_page`` on every pfn; E2+: ``percpu_ref_put_many``; E3+
device-private and coherent: none), wait for ``pgmap->done``, tear down
(``percpu_ref_exit`` then ``pageunmap_range`` after ``synchronize_rcu``); and
``get_dev_pagemap(pfn, cached)`` as a task whose two steps are the
RCU-protected ``xa_load`` and the tryget. Every percpu_ref operation's misuse
events and its release go to the oracle here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import dax, page, process, sched
from zdfuzz_reference.flags import PG_FREE_LIST, PG_INIT_REF
from zdfuzz_reference.oracle import KILLED, LOCK_NONE, REGISTERED, SAFETY, TORN_DOWN, Holders
from zdfuzz_reference.percpu_ref import EVENTS, Effects, PercpuRef
from zdfuzz_reference.rules import DRIVER_ALLOCATED

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine

# the driver's view of its pgmap
UNUSED = "unused"
LIVE = "live"
UNBINDING = "unbinding"
GONE = "gone"

# steps of the memunmap_pages task
MU_SHUTDOWN = 0
MU_KILL = 1
MU_DROP = 2
MU_WAIT = 3
MU_TEARDOWN = 4


class Pgmap:
    """One ``struct dev_pagemap``."""

    def __init__(self, cpus: int) -> None:
        self.state = UNUSED
        self.pref = PercpuRef(cpus)  # pgmap->ref
        self.done = False  # pgmap->done, completed by the release callback
        self.init_dropped = False  # memunmap_pages dropped the init refs (put_many)


def pref_effects(m: Machine, g: int, fx: Effects, what: str) -> None:
    """Feed a percpu_ref operation's effects to the oracle."""
    for e in fx.ordered_events():
        value = fx.value
        m.violate(
            EVENTS[e],
            SAFETY,
            [("pgmap", g)],
            lambda: (
                f"percpu_ref misuse on pgmap {g}'s ref during {what}: {e}",
                "no WARN",
                f"{e} (count {value})" if value != 0 else e,
            ),
        )
    if fx.released:
        _on_release(m, g)


def _on_release(m: Machine, g: int) -> None:
    """The release callback: ``complete(&pgmap->done)``; nobody may still own
    a pgmap reference (I-R3)."""
    m.s.pgmaps[g].done = True
    m.s.ledger.released[g] = True
    m.trace_note(lambda: f"pgmap {g}: percpu_ref release -> complete(&pgmap->done)")
    lg = m.s.ledger
    users = lg.pgmap_users(g)
    if users > 0:
        k, p = lg.kernel_pgmap_refs[g] + lg.inflight_pgmap_refs[g], lg.p2p_allocs[g]
        m.violate(
            "I-R3",
            SAFETY,
            [("pgmap", g)],
            lambda: (
                f"pgmap {g}'s ref was released while {k} get_dev_pagemap reference(s) and {p} P2P allocation(s) "
                "still use it",
                "0 users",
                f"{users} users",
            ),
        )


def _pgmap_gone(m: Machine, g: int, what: str) -> bool:
    if m.s.ledger.life[g] == TORN_DOWN:
        m.violate(
            "I-L3",
            SAFETY,
            [("pgmap", g)],
            lambda: (f"{what} touches pgmap {g} after memunmap_pages freed it", "live pgmap", "freed"),
        )
        return True
    return False


def pgmap_put(m: Machine, g: int, cpu: int, n: int, what: str) -> None:
    """``percpu_ref_put_many(&pgmap->ref, n)`` on ``cpu``."""
    if _pgmap_gone(m, g, what):
        return
    m.touch_pgmap(g)
    pref_effects(m, g, m.s.pgmaps[g].pref.put_many(cpu, n), what)


def pgmap_get(m: Machine, g: int, cpu: int, n: int, what: str) -> None:
    """``percpu_ref_get_many(&pgmap->ref, n)`` on ``cpu``."""
    if _pgmap_gone(m, g, what):
        return
    m.touch_pgmap(g)
    pref_effects(m, g, m.s.pgmaps[g].pref.get_many(cpu, n), what)


def pgmap_tryget_live(m: Machine, g: int, cpu: int, what: str) -> bool:
    """``percpu_ref_tryget_live(&pgmap->ref)``."""
    if _pgmap_gone(m, g, what):
        return False
    m.touch_pgmap(g)
    ok, fx = m.s.pgmaps[g].pref.tryget_live(cpu)
    pref_effects(m, g, fx, what)
    return ok


def pgmap_tryget_many(m: Machine, g: int, cpu: int, n: int, what: str) -> bool:
    """``percpu_ref_tryget_many(&pgmap->ref, n)`` (ignores DEAD)."""
    if _pgmap_gone(m, g, what):
        return False
    m.touch_pgmap(g)
    ok, fx = m.s.pgmaps[g].pref.tryget_many(cpu, n)
    pref_effects(m, g, fx, what)
    return ok


def memremap_pages(m: Machine, g: int) -> None:
    """``memremap_pages``: init the ref, ``memmap_init_zone_device``, and
    (where the era does) one pgmap reference per page."""
    t = m.layout.pgmap_type[g]
    tr = m.rules.of(t)
    pg = m.s.pgmaps[g]
    pg.state = LIVE
    pg.done = False
    pg.init_dropped = False
    pg.pref.init(0)
    m.s.ledger.life[g] = REGISTERED
    m.s.ledger.released[g] = False
    for p in m.layout.pfns_of(g):
        m.s.rc[p] = tr.init_rc
        m.s.mc[p] = 0
        m.s.mapping[p] = 0
        m.s.flags[p] = PG_INIT_REF if tr.init_pgmap_refs else 0
        m.s.head[p] = p
        m.s.order[p] = 0
        m.s.pincount[p] = 0
        m.s.emc[p] = 0
        m.s.ledger.locker[p] = LOCK_NONE
        if t in DRIVER_ALLOCATED:
            m.s.flags[p] |= PG_FREE_LIST
        m.s.ledger.init_rc[p] = tr.init_rc
        m.s.ledger.pages[p] = Holders()
        m.touch_page(p)
    shift = vmemmap_shift(m, g)
    if shift:
        # memmap_init_compound: every page points at its folio's head, the
        # head keeps the initial refcount, the tails are at 0
        nr = 1 << shift
        for h in range(m.layout.pfns_of(g).start, m.layout.pfns_of(g).stop, nr):
            m.s.order[h] = shift
            for p in range(h + 1, h + nr):
                m.s.head[p] = h
                m.s.rc[p] = 0
                m.s.ledger.init_rc[p] = 0
                m.s.flags[p] &= ~PG_INIT_REF  # the folio's one init reference is its head's
    if tr.init_pgmap_refs:
        # percpu_ref_get_many(&pgmap->ref, pfn_len): one per folio
        pgmap_get(m, g, 0, init_pgmap_refs(m, g), "memremap_pages")
    m.touch_pgmap(g)


def vmemmap_shift(m: Machine, g: int) -> int:
    """``pgmap->vmemmap_shift``: the order of the compound pages
    ``memremap_pages`` builds (a PMD-aligned device-dax device from v5.17),
    0 for order-0 pages."""
    devdax = m.layout.pgmap_type[g] == "generic" and m.layout.devdax_pmd
    return m.layout.order if devdax and m.rules.dax.devdax_compound else 0


def init_pgmap_refs(m: Machine, g: int) -> int:
    """The init references of pgmap ``g``: ``pfn_len``, one per page
    shifted by ``vmemmap_shift`` (one per folio)."""
    return m.layout.pages >> vmemmap_shift(m, g)


def spawn_memunmap(m: Machine, g: int, cpu: int) -> None:
    """The driver unbinds: the pgmap is Unbinding from now on."""
    m.s.pgmaps[g].state = UNBINDING
    sched.spawn(m, sched.Memunmap(g), cpu)


def memunmap_step(m: Machine, g: int, pc: int, cpu: int) -> int | None:
    """One step of the memunmap_pages task; the next pc, or None when done."""
    t = m.layout.pgmap_type[g]
    tr = m.rules.of(t)
    if pc == MU_SHUTDOWN:
        # make the memory unreachable from user space first
        if t in ("generic", "p2pdma"):
            process.zap_pgmap_mappings(m, g, cpu)
        elif t == "fsdax":
            process.zap_pgmap_mappings(m, g, cpu)
            dax.dax_drop_filesystem(m, g)
        # device-private and coherent pages: nothing to unmap (their driver
        # migrates its pages back itself)
        return MU_KILL
    if pc == MU_KILL:
        m.touch_pgmap(g)
        fx = m.s.pgmaps[g].pref.kill()
        m.s.ledger.life[g] = KILLED
        pref_effects(m, g, fx, "memunmap_pages: percpu_ref_kill")
        return MU_DROP
    if pc == MU_DROP:
        sched.check_pgmap_leaks(m, g)
        if tr.init_pgmap_refs:
            if tr.memunmap_put == "every_page":
                # one put per struct page, or per folio where they are compound
                pfns = m.layout.pfns_of(g)
                for p in range(pfns.start, pfns.stop, 1 << vmemmap_shift(m, g)):
                    page.put_page_refs(m, p, 1, cpu, "memunmap_pages: put_page")
            elif tr.memunmap_put == "put_many":
                m.s.pgmaps[g].init_dropped = True
                for p in m.layout.pfns_of(g):
                    m.s.flags[p] &= ~PG_INIT_REF
                pgmap_put(m, g, cpu, init_pgmap_refs(m, g), "memunmap_pages: percpu_ref_put_many")
        return MU_WAIT
    if pc == MU_WAIT:
        return MU_TEARDOWN  # runnable only once pgmap->done completed
    _memunmap_teardown(m, g)
    return None


def memunmap_blocked(m: Machine, g: int, pc: int) -> str | None:
    """Why a memunmap_pages task cannot take its next step, if it cannot."""
    # no era waits for FS-DAX pages at unbind: dax_break_layout_final runs
    # only from ->evict_inode (see rust/core/src/pgmap.rs)
    if pc == MU_WAIT and m.rules.pgmap.memunmap_waits and not m.s.pgmaps[g].done:
        return "wait_for_completion(&pgmap->done): waits for pgmap->ref to reach zero"
    if pc == MU_TEARDOWN and m.rules.pgmap.teardown_syncs_rcu and rcu_reader_active(m):
        return "synchronize_rcu: waits for get_dev_pagemap lookups in their RCU read section"
    return None


def _memunmap_teardown(m: Machine, g: int) -> None:
    """``percpu_ref_exit`` + ``pageunmap_range``: the struct pages are gone;
    nobody may still use them (I-L2)."""
    m.touch_pgmap(g)
    pref_effects(m, g, m.s.pgmaps[g].pref.exit(), "memunmap_pages: percpu_ref_exit")
    for p in m.layout.pfns_of(g):
        h = m.s.ledger.pages[p]
        if h.in_use():
            m.violate(
                "I-L2",
                SAFETY,
                [("pgmap", g), ("pfn", p)],
                lambda: (
                    f"memunmap_pages tore pgmap {g} down while pfn {p} is still held by {h.describe()}",
                    "no holder",
                    h.describe(),
                ),
            )
            break
    users = m.s.ledger.pgmap_users(g)
    if users > 0:
        m.violate(
            "I-L2",
            SAFETY,
            [("pgmap", g)],
            lambda: (
                f"memunmap_pages tore pgmap {g} down while {users} kernel user(s) hold pgmap references or P2P "
                "allocations",
                "0",
                f"{users}",
            ),
        )
    m.s.ledger.life[g] = TORN_DOWN
    m.s.pgmaps[g].state = GONE


def rcu_reader_active(m: Machine) -> bool:
    """Some get_dev_pagemap lookup is between its xa_load and its tryget."""
    return any(t is not None and t.is_rcu_reader() for t in m.s.tasks)


def rcu_grace_period(m: Machine) -> None:
    """An RCU grace period: every pending percpu_ref switch callback runs."""
    for g in range(m.layout.npgmaps):
        if m.s.pgmaps[g].pref.switch_pending():
            m.touch_pgmap(g)
            pref_effects(m, g, m.s.pgmaps[g].pref.grace_period(), "RCU callback percpu_ref_switch_to_atomic_rcu")


def any_switch_pending(m: Machine) -> bool:
    return any(p.pref.switch_pending() for p in m.s.pgmaps)


def get_dev_pagemap_lookup(m: Machine, pfn: int, cached: int, cpu: int) -> int | None:
    """get_dev_pagemap step 1: the ``cached`` argument, then ``xa_load``.
    The pgmap found (to tryget next), or None when the call is over."""
    lay = m.layout
    if cached > 0:
        c = cached - 1
        m.s.ledger.inflight_pgmap_refs[c] -= 1
        if not lay.is_ram(pfn) and lay.pgmap_of(pfn) == c:
            # covered: the caller's reference comes back, no new one
            m.s.ledger.kernel_pgmap_refs[c] += 1
            m.trace_note(lambda: f"cached pgmap {c} covers pfn {pfn}: reused")
            return None
        # not covering: the caller's reference is consumed
        pgmap_put(m, c, cpu, 1, "get_dev_pagemap: put_dev_pagemap(cached)")
    if lay.is_ram(pfn):
        m.trace_note(lambda: f"xa_load(pfn {pfn}) -> NULL (system RAM)")
        return None
    g = lay.pgmap_of(pfn)
    if m.s.ledger.life[g] in (REGISTERED, KILLED):
        return g
    m.trace_note(lambda: f"xa_load(pfn {pfn}) -> NULL")
    return None


def get_dev_pagemap_ref(m: Machine, g: int, cpu: int, what: str) -> bool:
    """The reference ``get_dev_pagemap`` takes on the pgmap its lookup
    found: ``percpu_ref_tryget_live``, or plain ``tryget`` where the rules
    say so (every caller: a kernel user, memory_failure)."""
    if m.rules.pgmap.get_dev_pagemap_live:
        return pgmap_tryget_live(m, g, cpu, what)
    return pgmap_tryget_many(m, g, cpu, 1, what)


def get_dev_pagemap_tryget(m: Machine, g: int, cpu: int) -> None:
    """get_dev_pagemap step 2: ``percpu_ref_tryget_live`` (or ``tryget``)."""
    ok = get_dev_pagemap_ref(m, g, cpu, "get_dev_pagemap")
    if ok:
        m.s.ledger.kernel_pgmap_refs[g] += 1
    m.trace_note(lambda: f"get_dev_pagemap -> {'pgmap' if ok else 'NULL (dying)'}")


def put_dev_pagemap(m: Machine, g: int, cpu: int) -> None:
    """``put_dev_pagemap(pgmap)`` by a kernel user."""
    m.s.ledger.kernel_pgmap_refs[g] -= 1
    pgmap_put(m, g, cpu, 1, "put_dev_pagemap")
