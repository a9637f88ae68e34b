"""FS-DAX filesystems and device-dax.

Mirrors fs/dax.c and its ext4/xfs callers: ``dax_associate_entry`` (a pmem
block becomes file data), ``dax_iomap_fault`` (E1-E3: a devmap PTE with no
page reference; E4: one reference and one mapcount per mapping), and
truncate as the filesystem does it — break layouts
(``dax_layout_busy_page_range``: unmap, then scan for a busy page: E1-E3
refcount > 1, E4 refcount - mapcount > 0; wait until idle; retry), then
``dax_disassociate_entry`` and free the block (I-X2). Faults on the file wait
meanwhile. Device-dax (drivers/dax/device.c): ``dev_dax_huge_fault`` maps a
pfn of the device (E1-E3 ``vmf_insert_mixed``, E4 refcounted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import failure, folio, page, pagetable, process, sched
from zdfuzz_reference.flags import MAPPING_FILE, MAPPING_NONE
from zdfuzz_reference.ops import SITE_VM_INSERT
from zdfuzz_reference.oracle import SAFETY
from zdfuzz_reference.pte import PMD, PTE

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def dax_entry(m: Machine, file: int, index: int) -> int | None:
    """The pfn of DAX entry (file, index), if associated."""
    v = m.s.dax[m.layout.entry_slot(file, index)]
    return v - 1 if v > 0 else None


def dax_associate_entry(m: Machine, file: int, index: int, p: int) -> None:
    """The block at ``p`` becomes file data: ``mapping`` on every page of
    the entry; a PMD entry's pages become one compound folio from v6.15
    (``dax_folio_init``)."""
    m.s.dax[m.layout.entry_slot(file, index)] = p + 1
    nr = m.layout.dax_entry_nr(p)
    for q in range(p, p + nr):
        m.touch_page(q)
        m.s.mapping[q] = MAPPING_FILE + file
        m.s.ledger.pages[q].fs = True
    if nr > 1 and m.rules.dax.fsdax_compound:
        order = m.layout.order
        m.trace_note(lambda: f"dax_folio_init: pfn {p}..{p + nr - 1} becomes a folio of order {order}")
        folio.prep_compound(m, p, order)


def insert_device_mapping(m: Machine, proc: int, addr: int, p: int, what: str) -> None:
    """Map a page into a process the way the type's fault path does: one
    PTE, or on a PMD-aligned device-dax device one PMD for the block of
    ``addr`` mapping the ``1 << order`` pages from ``p``. E1-E3 map devmap
    entries without a reference; E4 on take a reference and a mapcount (the
    entire mapcount for a PMD: ``vmf_insert_folio_pmd``, VM_FAULT_SIGBUS for
    a folio that is not PMD-sized)."""
    t = m.layout.type_of(p)
    if t is None:
        return
    if failure.inject(m, SITE_VM_INSERT):
        # vmf_insert_* failed before it touched the page: nothing mapped or taken
        m.trace_note(lambda: f"{what}: vmf_insert_* failed -> VM_FAULT_OOM, nothing mapped")
        return
    if m.layout.is_dax_pmd(p):
        level, at, nr = PMD, pagetable.block_start(m, addr), m.layout.nr_huge()
    else:
        level, at, nr = PTE, addr, 1
    tr = m.rules.of(t)
    if tr.map_refcounted and level == PMD and page.folio_nr(m, page.head_of(m, p)) != nr:
        m.trace_note(lambda: f"{what}: vmf_insert_folio_pmd: folio not PMD-sized -> VM_FAULT_SIGBUS")
        return
    if not tr.map_refcounted and page.page_torn_down(m, p, what):
        return
    # a 0-based type's first mapping takes the first reference
    minimum = 0 if tr.init_rc == 0 else 1
    pagetable.install_entry(m, proc, at, level, pagetable.present(p, True, tr.map_refcounted), minimum, what)
    for i in range(nr):
        m.s.ledger.vcontent[m.layout.pte_slot(proc, at + i)] = m.s.content[p + i]


def dax_iomap_fault(m: Machine, proc: int, addr: int, file: int, index: int) -> None:
    p = dax_entry(m, file, index)
    if p is not None:
        insert_device_mapping(m, proc, addr, p, "dax_iomap_fault")


def dev_dax_huge_fault(m: Machine, proc: int, addr: int, p: int) -> None:
    insert_device_mapping(m, proc, addr, p, "dev_dax_huge_fault")


def dax_busy(m: Machine, p: int) -> bool:
    """``dax_busy_page`` on the entry whose first page is ``p``: E1-E3 test
    every page of the entry (refcount > 1), E4 the entry's folio (refcount
    - ``folio_mapcount`` > 0)."""
    tr = m.rules.of("fsdax")
    for q in range(p, p + m.layout.dax_entry_nr(p)):
        if page.head_of(m, q) != q:
            continue
        mapped = folio.folio_mapcount(m, q) if tr.map_refcounted else 0
        if m.s.rc[q] - mapped > tr.init_rc:
            return True
    return False


def _fs_files(m: Machine, g: int) -> range:
    """The files of the filesystem on pgmap ``g`` (none if not FS-DAX)."""
    lay = m.layout
    if g not in lay.fs_pgmap:
        return range(0)
    k = lay.fs_pgmap.index(g)
    return range(k * lay.files_per_fs, (k + 1) * lay.files_per_fs)


def _file_mapped(m: Machine, file: int) -> bool:
    """``mapping_mapped``: does any process map a page of the file?"""
    for i in range(m.layout.file_pages):
        p = dax_entry(m, file, i)
        if p is not None and m.s.ledger.pages[p].maps > 0:
            return True
    return False


def truncating(m: Machine, file: int) -> bool:
    """Is a truncate running on ``file``? (faults are excluded meanwhile)"""
    return any(t is not None and isinstance(t.kind, sched.Truncate) and t.kind.file == file for t in m.s.tasks)


def dax_entry_locked(m: Machine, file: int, index: int) -> bool:
    """Is DAX entry (file, index) locked? Only a writeback task holds an
    entry lock across steps."""
    return any(
        t is not None and isinstance(t.kind, sched.DaxWriteback) and (t.kind.file, t.kind.index) == (file, index)
        for t in m.s.tasks
    )


def truncate_step(m: Machine, file: int, index: int, pc: int, cpu: int) -> int | None:
    """One step of the truncate task."""
    p = dax_entry(m, file, index)
    if p is None:
        return None
    if pc == sched.TR_SCAN:
        if m.rules.dax.busy_scan_needs_mapping and not _file_mapped(m, file):
            m.trace_note(lambda: "dax_layout_busy_page_range: !mapping_mapped -> NULL")
            return sched.TR_FREE
        process.zap_pfn_mappings(m, p, cpu)  # unmap_mapping_pages
        if dax_entry_locked(m, file, index):
            if m.rules.dax.scan_waits_on_locked_entry:
                return sched.TR_ENTRY_WAIT  # wait_entry_unlocked_exclusive
            # get_unlocked_entry looks for the next present entry: this
            # one's page is never tested
            m.trace_note(lambda: f"dax_layout_busy_page_range: entry {index} locked -> get_unlocked_entry skips it")
            return sched.TR_FREE
        return _test_busy(m, p)
    if pc == sched.TR_ENTRY_WAIT:
        return _test_busy(m, p)  # runnable once unlocked
    if pc == sched.TR_WAIT:
        return sched.TR_SCAN  # runnable once the page is idle: rescan
    _dax_free_block(m, file, index, p)
    return None


def _test_busy(m: Machine, p: int) -> int:
    """``dax_busy_page`` on the scanned entry's page."""
    if dax_busy(m, p):
        m.trace_note(lambda: f"dax_layout_busy_page -> pfn {p} busy")
        return sched.TR_WAIT
    return sched.TR_FREE


def truncate_blocked(m: Machine, file: int, index: int, pc: int) -> str | None:
    """Why the truncate of (file, index) cannot take step ``pc`` now."""
    if pc == sched.TR_WAIT:
        p = dax_entry(m, file, index)
        if p is not None and dax_busy(m, p):
            return "wait_page_idle: waits for the DAX page to become idle"
        return None
    if pc == sched.TR_ENTRY_WAIT and dax_entry_locked(m, file, index):
        return "wait_entry_unlocked_exclusive: waits for the DAX entry lock"
    if pc == sched.TR_FREE and dax_entry_locked(m, file, index):
        return "dax_delete_mapping_entry: waits for the DAX entry lock"
    return None


def dax_writeback(m: Machine, file: int, index: int, cpu: int) -> None:
    """``dax_writeback_one``: ``dax_lock_entry``, then (the task) the flush."""
    m.trace_note(lambda: f"dax_writeback_one: dax_lock_entry(file {file}, index {index})")
    sched.spawn(m, sched.DaxWriteback(file, index), cpu)


def dax_writeback_done(m: Machine, file: int, index: int) -> None:
    """The flush (no page reference involved), then ``dax_unlock_entry``."""
    m.trace_note(lambda: f"dax_writeback_one: dax_unlock_entry(file {file}, index {index})")


def _dax_free_block(m: Machine, file: int, index: int, p: int) -> None:
    """dax_disassociate_entry + the filesystem freeing the block: no page of
    the entry may still be held (I-X2)."""
    for q in range(p, p + m.layout.dax_entry_nr(p)):
        _check_block_idle(m, file, index, q)
    _dax_drop_entry(m, file, index, p)
    # from v6.15 dax_folio_put splits a compound PMD folio back into order-0
    # pages once its last entry lets go
    nr = page.folio_nr(m, p)
    if nr > 1:
        m.trace_note(lambda: f"dax_folio_put: the folio at pfn {p} is split back into order-0 pages")
        folio.restore_order0(m, p, nr)


def _check_block_idle(m: Machine, file: int, index: int, q: int) -> None:
    """I-X2 on one page of the block being freed."""
    h = m.s.ledger.pages[q]
    if h.extra_refs() > 0 or h.maps > 0:
        m.violate(
            "I-X2",
            SAFETY,
            [("file", file), ("pfn", q)],
            lambda: (
                f"truncate frees the block of file {file} index {index} (pfn {q}) while it is held by {h.describe()}",
                "idle page",
                h.describe(),
            ),
        )


def _dax_drop_entry(m: Machine, file: int, index: int, p: int) -> None:
    """``dax_disassociate_entry``: every page of the entry forgets its file."""
    m.s.dax[m.layout.entry_slot(file, index)] = 0
    nr = m.layout.dax_entry_nr(p)
    for q in range(p, p + nr):
        m.touch_page(q)
        m.s.mapping[q] = MAPPING_NONE
        m.s.ledger.pages[q].fs = False


def dax_drop_filesystem(m: Machine, g: int) -> None:
    """The filesystem on pgmap ``g`` shuts down before its device goes: its
    entries are dropped (the blocks are not freed: the data stays; a
    compound folio is not split — the kernel's entries stay until eviction,
    which waits for idle pages first)."""
    for file in _fs_files(m, g):
        for index in range(m.layout.file_pages):
            p = dax_entry(m, file, index)
            if p is not None:
                _dax_drop_entry(m, file, index, p)
