//! get_user_pages / pin_user_pages on ZONE_DEVICE mappings (mm/gup.c).
//!
//! FOLL_GET adds one reference, FOLL_PIN adds `GUP_PIN_COUNTING_BIAS` (1024)
//! to a small folio; `unpin_user_page` undoes exactly that through the put
//! path (E1–E3 still offer it to the devmap-managed hook, so a 2→1 wakes
//! FS-DAX waiters). In E1–E3 a devmap PTE is only followed after
//! `get_dev_pagemap` succeeds (`tryget_live`: fails once the pgmap is
//! killed), and that pgmap reference is dropped again before GUP returns: the
//! page reference outlives it. A device-private entry is not present: GUP
//! faults it back to system RAM (`faultin_page` → `do_swap_page` →
//! `migrate_to_ram`, a task: `fault.rs`) and grabs the RAM page when the
//! fault returns. Refusals per type: FS-DAX refuses FOLL_LONGTERM, P2P pages
//! need FOLL_PCI_P2PDMA and refuse FOLL_LONGTERM (v6.2+); a coherent page
//! is moved to system RAM before a FOLL_LONGTERM pin (v6.0+). The oracle
//! re-checks each grant from the ledger: a granted longterm FS-DAX pin
//! (I-X4), device-private page (I-G3), flagless P2P page (I-G4) or longterm
//! coherent pin (I-G5) is a violation
//! whatever the rules said.

use crate::machine::{ok, Machine};
use crate::oracle::Obs;
use crate::pagetable::{Level, Pte};
use crate::program::op::{FOLL_LONGTERM, FOLL_PCI_P2PDMA, GUP_FAST, SITE_TRY_GRAB};
use crate::rules::DeviceType;

/// Why GUP refused (the errno it returns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GupError {
    /// -EFAULT: nothing mapped (a device-private entry is faulted in: a
    /// task of its own, `fault.rs`)
    Fault,
    /// -EOPNOTSUPP: FOLL_LONGTERM on FS-DAX, or FOLL_LONGTERM|FOLL_PCI_P2PDMA
    NotSupported,
    /// -EREMOTEIO: a P2P page without FOLL_PCI_P2PDMA
    RemoteIo,
    /// NULL from get_dev_pagemap: the pgmap is dying
    PgmapDying,
    /// -ENOMEM: `try_grab_folio` refused (an injected failure: the
    /// refcount-overflow guard)
    NoMem,
    /// -EBUSY: a FOLL_LONGTERM GUP could not migrate a coherent page to
    /// system RAM (`migrate_device_coherent_page` failed)
    Busy,
}

impl GupError {
    pub fn errno(self) -> &'static str {
        match self {
            GupError::Fault => "-EFAULT",
            GupError::NotSupported => "-EOPNOTSUPP",
            GupError::RemoteIo => "-EREMOTEIO",
            GupError::PgmapDying => "-EFAULT (get_dev_pagemap: pgmap dying)",
            GupError::NoMem => "-ENOMEM (try_grab_folio)",
            GupError::Busy => "-EBUSY (migrate_device_coherent_page)",
        }
    }
}

impl Machine {
    /// GUP one address; on success the caller holds a reference or pin.
    pub(crate) fn gup(
        &mut self,
        proc: usize,
        addr: usize,
        flags: u16,
        pin: bool,
        cpu: usize,
    ) -> Result<usize, GupError> {
        let longterm = flags & FOLL_LONGTERM != 0;
        let p2pdma = flags & FOLL_PCI_P2PDMA != 0;
        let fast = flags & GUP_FAST != 0;
        let (pte, level) = self.entry(proc, addr);
        let p = match pte {
            Pte::None | Pte::Migration { .. } => return Err(GupError::Fault),
            Pte::DevicePrivate { pfn, .. } => {
                if self.rules.gup.refuses_device_private {
                    return Err(GupError::Fault);
                }
                pfn as usize
            }
            Pte::Present { pfn, .. } => pfn as usize,
        };
        let Some(t) = self.layout.type_of(p) else {
            // system RAM: an ordinary anonymous page
            if self.inject(SITE_TRY_GRAB) {
                return self.gup_grab_failed(proc, addr, flags, pin, cpu);
            }
            return Ok(self.gup_grab(proc, addr, p, pin, longterm));
        };
        match t {
            DeviceType::P2pdma if self.rules.p2p.gup_needs_flag => {
                if !p2pdma {
                    return Err(GupError::RemoteIo);
                }
                if longterm {
                    return Err(GupError::NotSupported);
                }
            }
            DeviceType::Fsdax if longterm && self.rules.dax.longterm_refused => return Err(GupError::NotSupported),
            _ => {}
        }
        let devmap = matches!(pte, Pte::Present { refcounted: false, .. });
        let g = self.layout.pgmap_of(p);
        let walk_ref = self.rules.of(t).gup_pgmap_ref && devmap;
        if walk_ref && !self.pgmap_tryget_live(g, cpu, "GUP: get_dev_pagemap") {
            return Err(GupError::PgmapDying);
        }
        if self.inject(SITE_TRY_GRAB) {
            // try_grab_folio failed: the slow walk (follow_page_pte's and
            // follow_devmap_pmd's ctx.pgmap) and GUP-fast's PTE level
            // (gup_pte_range's pte_unmap label) put the pgmap reference
            // they took back; GUP-fast's devmap PMD (__gup_device_huge)
            // did not until 6401c4eb57f9
            if walk_ref {
                let leaks = fast && level == Level::Pmd && self.rules.gup.device_huge_grab_failure_leaks_pgmap;
                if leaks {
                    self.trace_note(|| {
                        format!("__gup_device_huge: try_grab_page failed, returns without put_dev_pagemap (pgmap {g})")
                    });
                    self.s.lost_pgmap_refs[g] += 1;
                } else {
                    self.pgmap_put(g, cpu, 1, "GUP: put_dev_pagemap (try_grab_folio failed)");
                }
            }
            return self.gup_grab_failed(proc, addr, flags, pin, cpu);
        }
        if t == DeviceType::Coherent && longterm && self.rules.gup.longterm_migrates_coherent {
            // check_and_migrate_movable_pages: not longterm-pinnable, so the
            // grab becomes a reference the migration to RAM consumes, and
            // GUP retries on the page it moved to (-EAGAIN) or fails
            let moved = self.migrate_device_coherent_page(p, cpu);
            if walk_ref {
                self.pgmap_put(g, cpu, 1, "GUP: put_dev_pagemap");
            }
            if !moved {
                return Err(GupError::Busy);
            }
            return self.gup(proc, addr, flags, pin, cpu);
        }
        self.gup_grab(proc, addr, p, pin, longterm);
        if walk_ref {
            self.pgmap_put(g, cpu, 1, "GUP: put_dev_pagemap");
        }
        self.observe(Obs::GupGranted { pfn: p, ty: Some(t), longterm, p2pdma });
        Ok(p)
    }

    /// After a failed `try_grab_folio`: the slow walk returns -ENOMEM; the
    /// lockless walk of a `_fast` caller took nothing (its undo ran) and
    /// hands the address to the slow walk (`gup_fast_fallback` →
    /// `__gup_longterm_locked`), which tries again.
    fn gup_grab_failed(
        &mut self,
        proc: usize,
        addr: usize,
        flags: u16,
        pin: bool,
        cpu: usize,
    ) -> Result<usize, GupError> {
        if flags & GUP_FAST == 0 {
            return Err(GupError::NoMem);
        }
        self.trace_note(|| "GUP-fast: the lockless walk took nothing, the slow walk retries".into());
        self.gup(proc, addr, flags & !GUP_FAST, pin, cpu)
    }

    /// `try_grab_folio`: a reference (FOLL_GET), or a pin (FOLL_PIN: a
    /// small folio gets GUP_PIN_COUNTING_BIAS references, a large one one
    /// reference and `_pincount` + 1).
    fn gup_grab(&mut self, proc: usize, addr: usize, p: usize, pin: bool, longterm: bool) -> usize {
        let h = self.head_of(p);
        let large = self.folio_nr(h) > 1;
        let n = if pin && !large { self.rules.gup.pin_bias as i32 } else { 1 };
        // GUP-fast grabs the page reference directly (page_ref_add), not
        // through get_page: before v4.11 that skipped get_zone_device_page
        self.in_gup_grab = true;
        self.page_get(p, n, if pin { "pin_user_pages" } else { "get_user_pages" });
        self.in_gup_grab = false;
        if pin && large {
            self.s.pincount[h] += 1;
        }
        let hold = &mut self.s.ledger.pages[p];
        if pin {
            hold.gup_pins += 1;
            if longterm {
                hold.longterm_pins += 1;
            }
            if self.s.ledger.pin_vpage[p] == 0 {
                self.s.ledger.pin_vpage[p] = self.layout.pte_slot(proc, addr) as u16 + 1;
            }
        } else {
            hold.gup_gets += 1;
        }
        p
    }

    pub(crate) fn unpin_user_page(&mut self, p: usize, cpu: usize) {
        let hold = &mut self.s.ledger.pages[p];
        hold.gup_pins -= 1;
        hold.longterm_pins = hold.longterm_pins.min(hold.gup_pins);
        if hold.gup_pins == 0 {
            self.s.ledger.pin_vpage[p] = 0;
        }
        // gup_put_folio
        let h = self.head_of(p);
        let n = if self.folio_nr(h) > 1 {
            self.s.pincount[h] -= 1;
            1
        } else {
            self.rules.gup.pin_bias as i32
        };
        self.put_page_refs(p, n, cpu, "unpin_user_page");
    }

    pub(crate) fn put_user_page(&mut self, p: usize, cpu: usize) {
        self.s.ledger.pages[p].gup_gets -= 1;
        self.put_page_refs(p, 1, cpu, "put_page");
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::program::op::{Op, OpKind, BY_GUP};

impl Machine {
    /// Is `PutPage` allowed now (the actor's contract)?
    pub(crate) fn put_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let h = &self.s.ledger.pages[op.a(0)];
        if op.args[1] == BY_GUP {
            ok(h.gup_gets > 0, "no GUP reference on this page")
        } else {
            ok(h.kernel_gets > 0, "no kernel reference on this page")
        }
    }

    /// Is `GetUserPages / PinUserPages` allowed now (the actor's contract)?
    pub(crate) fn get_user_pages_enabled(&self, op: &Op) -> Result<(), &'static str> {
        self.mm_ok(op.a(0), op.a(1))?;
        ok(!self.slot_is_empty(op.a(0), op.a(1)), "nothing is mapped there")?;
        ok(!self.entry_at(op.a(0), op.a(1)).is_migration(), "GUP waits for the migration to finish")?;
        let e = self.entry_at(op.a(0), op.a(1));
        if matches!(e, Pte::DevicePrivate { .. }) && self.rules.gup.refuses_device_private {
            // GUP faults the page back to system RAM: a task of its own
            ok(self.free_task_slot(), "no free task slot for the fault")?;
            ok(
                op.kind != OpKind::PinUserPages || e.writable(),
                "a FOLL_WRITE pin of a read-only entry breaks COW after the fault (do_swap_page, then cpu_write)",
            )?;
        }
        ok(
            !(op.kind == OpKind::PinUserPages && e.pfn().is_some_and(|p| self.layout.is_cpu_anon(p)) && !e.writable()),
            "a FOLL_WRITE pin of a read-only anonymous page breaks COW first (use cpu_write)",
        )
    }

    /// Is `UnpinUserPage` allowed now (the actor's contract)?
    pub(crate) fn unpin_user_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.ledger.pages[op.a(0)].gup_pins > 0, "no GUP pin on this page")
    }
}
