//! The data oracle: what each page holds, and what each virtual page must
//! read back.
//!
//! Every physical page carries a content token. A CPU write through a
//! present mapping, a device write to its device-private page (through its
//! mirror of the process's page tables, which collect invalidates via the
//! `MMU_NOTIFY_MIGRATE` notifier), and a DMA write by a device into a page a
//! GUP caller pinned for it each make a fresh token; a migration's copy
//! (the driver's DMA between `migrate_vma_setup` and `migrate_vma_pages`)
//! copies it.
//!
//! Independently, the ledger remembers per virtual page (process × address)
//! the last token written *to that virtual page* — a pinned buffer's DMA is a
//! write to the user's buffer, whatever page backs it by then. I-W1 ("no lost
//! write") holds when every live mapping shows its virtual page's latest
//! token: checked where a mapping is re-established after a migration
//! (`remove_migration_ptes`), before every CPU write (a read-modify-write),
//! and when a mapping is zapped (the last chance anything reads it).

use crate::machine::{ok, Machine};
use crate::oracle::Obs;
use crate::pagetable::Pte;

impl Machine {
    fn new_token(&mut self) -> u32 {
        let t = self.s.next_token;
        self.s.next_token = t.wrapping_add(1).max(1);
        t
    }

    /// A write of a new token into physical page `p`, seen by every virtual
    /// page that maps it or has a migration entry for it, and by `extra_v`.
    fn write_page(&mut self, p: usize, extra_v: Option<usize>) -> u32 {
        let t = self.new_token();
        self.touch_page(p);
        self.s.content[p] = t;
        let l = &self.layout;
        for proc in 0..l.procs {
            for a in 0..l.addrs {
                if self.entry(proc, a).0.pfn() == Some(p) {
                    let v = self.layout.pte_slot(proc, a);
                    self.s.ledger.vcontent[v] = t;
                }
            }
        }
        if let Some(v) = extra_v {
            self.s.ledger.vcontent[v] = t;
        }
        t
    }

    /// I-W1 for virtual page (proc, addr): a live mapping shows the last
    /// value written to it.
    pub(crate) fn check_vpage(&mut self, proc: usize, addr: usize, when: &str) {
        let (e, _) = self.entry(proc, addr);
        if !e.is_mapping() {
            return;
        }
        let Some(p) = e.pfn() else { return };
        let got = self.s.content[p];
        self.observe(Obs::Read { proc, addr, pfn: p, got, when });
    }

    /// `cpu_write`: the process stores through its mapping (after
    /// `do_wp_page` if the page is a shared anonymous one).
    pub(crate) fn cpu_write(&mut self, proc: usize, addr: usize, cpu: usize) {
        self.check_vpage(proc, addr, "before a CPU write");
        if !self.entry(proc, addr).0.writable() {
            self.do_wp_page(proc, addr, cpu);
        }
        let (e, level) = self.entry(proc, addr);
        let Pte::Present { pfn, .. } = e else { return };
        // the hardware sets the dirty bit of the entry it wrote through
        let slot = match level {
            crate::pagetable::Level::Pte => &mut self.s.ptes[self.layout.pte_slot(proc, addr)],
            crate::pagetable::Level::Pmd => &mut self.s.pmds[self.layout.pmd_slot(proc, addr)],
        };
        if let Pte::Present { dirty, .. } = slot {
            *dirty = true;
        }
        let t = self.write_page(pfn as usize, None);
        self.trace_note(|| format!("pfn {pfn} <- data version {t}"));
    }

    /// `device_write`: the device writes its device-private page.
    pub(crate) fn device_write(&mut self, p: usize) {
        let t = self.write_page(p, None);
        self.trace_note(|| format!("pfn {p} <- data version {t} (device)"));
    }

    /// `dma_write`: the device a GUP caller pinned `p` for writes it. The
    /// write belongs to the virtual page the pin was taken through.
    pub(crate) fn dma_write(&mut self, p: usize) {
        let v = self.s.ledger.pin_vpage[p].checked_sub(1).map(|v| v as usize);
        let t = self.write_page(p, v);
        self.trace_note(|| format!("pfn {p} <- data version {t} (DMA)"));
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::program::op::Op;

impl Machine {
    /// Is `CpuWrite` allowed now (the actor's contract)?
    pub(crate) fn cpu_write_enabled(&self, op: &Op) -> Result<(), &'static str> {
        self.mm_ok(op.a(0), op.a(1))?;
        ok(
            matches!(self.entry_at(op.a(0), op.a(1)), Pte::Present { .. }),
            "no present mapping (a device-private entry \
           faults: use do_swap_page)",
        )?;
        ok(!self.write_needs_copy(op.a(0), op.a(1)) || self.ram_fit(0).is_some(), "no memory for the COW copy")
    }

    /// Is `DeviceWrite` allowed now (the actor's contract)?
    pub(crate) fn device_write_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let p = op.a(0);
        ok(self.layout.is_private(p), "not a device-private page")?;
        let mapped_w = (0..self.layout.procs).any(|proc| {
            (0..self.layout.addrs)
                .any(|x| matches!(self.entry_at(proc, x), Pte::DevicePrivate { pfn, write: true } if pfn as usize == p))
        });
        ok(
            mapped_w || (self.s.ledger.pages[self.head_of(p)].driver),
            "the device reaches the page only through a writable device-private mapping or its own allocation",
        )
    }

    /// Is `DmaWrite` allowed now (the actor's contract)?
    pub(crate) fn dma_write_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.ledger.pages[op.a(0)].gup_pins > 0, "no GUP pin on this page")
    }
}
