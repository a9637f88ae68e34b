//! Conformance: the machine's counters against what the preset in force
//! says they should be.
//!
//! Unlike the oracle (`oracle.rs`), these checks read the rules on purpose:
//! I-F5 (a free page has the preset's free refcount), I-G1 (pin accounting,
//! `GUP_PIN_COUNTING_BIAS`), I-M1 (an anonymous, device-private or coherent folio's
//! refcount is what its holders account for) and I-P1 (`pgmap->ref` is the
//! references the preset accounts for: init references, E3+ allocation
//! references, P2P allocations, `get_dev_pagemap` users). A failure means
//! zdfuzz or a hand-written preset is inconsistent — never a finding about the
//! kernel. They run after each action on the pages and pgmaps it touched, so
//! the cost per action is O(objects touched).

use crate::machine::{Machine, GUP_PIN_COUNTING_BIAS, TOUCH_CAP};
use crate::oracle::{Invariant, Life};
use crate::page::{PG_FREE_LIST, PG_INIT_REF, PG_POOL};
use crate::rules::{AllocPgmapRef, DeviceType, MemunmapPut};

impl Machine {
    pub(crate) fn after_action(&mut self) {
        if self.violation.is_none() && self.conformance.is_none() {
            if self.ntouched > TOUCH_CAP {
                for p in 0..self.layout.npfns {
                    self.check_page_conformance(p);
                }
            } else {
                for i in 0..self.ntouched {
                    let p = self.touched_pages[i] as usize;
                    self.check_page_conformance(p);
                }
            }
            let mut m = self.touched_pgmaps;
            while m != 0 {
                let g = m.trailing_zeros() as usize;
                m &= m - 1;
                self.check_pgmap_conformance(g);
            }
        }
        self.ntouched = 0;
        self.touched_pgmaps = 0;
    }

    fn check_page_conformance(&mut self, p: usize) {
        let t = self.layout.type_of(p);
        if t.is_some() {
            let g = self.layout.pgmap_of(p);
            if self.s.ledger.life[g] != Life::Registered {
                return;
            }
        }
        let h = self.head_of(p);
        if h != p {
            // a tail: its refcount lives on the head (compound_head), by
            // construction of page_get / put_page_refs
            return;
        }
        let nr = self.folio_nr(h);
        let rc = self.s.rc[h];
        let in_use = self.folio_in_use(h);
        let free_rc = t.map_or(0, |t| self.rules.of(t).free_rc as i32);
        if !in_use && rc != free_rc {
            let what = t.map_or("system RAM", |t| t.name());
            self.violate(Invariant::F5, &[("pfn", p as u32)], || {
                (
                    format!(
                        "pfn {p} ({what}) is free but its refcount is {rc}; the preset says free pages of this type \
                          have {free_rc}"
                    ),
                    format!("{free_rc}"),
                    format!("{rc}"),
                )
            });
        }
        let pins: i32 = self.s.ledger.pages[h..h + nr].iter().map(|x| x.gup_pins as i32).sum();
        if nr > 1 {
            let pc = self.s.pincount[h];
            if pc != pins {
                self.violate(Invariant::G1, &[("pfn", p as u32)], || {
                    (
                        format!("the large folio at pfn {p} has {pins} pin(s) but _pincount {pc}"),
                        format!("{pins}"),
                        format!("{pc}"),
                    )
                });
            }
        } else {
            // the kernel's GUP_PIN_COUNTING_BIAS, not the preset's: I-G1
            // checks the preset against the kernel's constant
            let bias = GUP_PIN_COUNTING_BIAS;
            if pins > 0 && rc < bias * pins {
                self.violate(Invariant::G1, &[("pfn", p as u32)], || {
                    (
                        format!("pfn {p} has {pins} pin(s) but refcount {rc} < {pins} x GUP_PIN_COUNTING_BIAS"),
                        format!(">= {}", bias * pins),
                        format!("{rc}"),
                    )
                });
            }
        }
        if in_use && t.map_or(true, DeviceType::driver_allocated) {
            let expected = self.expected_folio_refs(h);
            if rc != expected {
                self.violate(Invariant::M1, &[("pfn", p as u32)], || {
                    (
                        format!(
                            "pfn {p}'s refcount is {rc} but its holders account for {expected} (mappings, collect, \
                              fault, GUP and driver references)"
                        ),
                        format!("{expected}"),
                        format!("{rc}"),
                    )
                });
            }
        }
    }

    /// I-M1: the references the holders of an anonymous or device-private
    /// folio account for (mappings + collect/isolation + fault-path + GUP +
    /// kernel + the allocation reference, + 1 for an E1 1-based device page).
    pub fn expected_folio_refs(&self, h: usize) -> i32 {
        let nr = self.folio_nr(h);
        let bias = if nr > 1 { 1 } else { self.rules.gup.pin_bias as i32 };
        let mut r = self.folio_mapcount(h);
        for x in &self.s.ledger.pages[h..h + nr] {
            r +=
                x.collect as i32 + x.fault as i32 + x.gup_gets as i32 + x.kernel_gets as i32 + bias * x.gup_pins as i32;
            r += (x.driver || x.mig_dst) as i32;
        }
        if self.layout.is_private(h) && self.rules.types.private.free_on_2to1 {
            // E1: an allocated 1-based page keeps its idle reference
            r += 1;
        }
        r
    }

    /// I-P1: pgmap->ref equals the references the preset accounts for.
    pub fn expected_pgmap_refs(&self, g: usize) -> i64 {
        let t = self.layout.pgmap_type[g];
        let tr = self.rules.of(t);
        let pg = &self.s.pgmaps[g];
        let pfns = self.layout.pfns_of(g);
        let mut r: i64 = if pg.pref.is_dying() { 0 } else { 1 };
        if tr.init_pgmap_refs {
            r += match tr.memunmap_put {
                MemunmapPut::EveryPage if tr.put_pgmap_on_zero => {
                    pfns.clone().filter(|&p| self.s.flags[p] & PG_INIT_REF != 0).count() as i64
                }
                _ if pg.init_dropped => 0,
                _ => self.init_pgmap_refs(g) as i64,
            };
        }
        if t.driver_allocated() && self.rules.private.alloc_pgmap_ref != AllocPgmapRef::None {
            r += pfns.clone().filter(|&p| self.s.flags[p] & PG_FREE_LIST == 0).count() as i64;
        }
        r += self.s.split_pgmap_refs[g] as i64 + self.s.lost_pgmap_refs[g] as i64 + self.s.page_pgmap_refs[g];
        if t == DeviceType::P2pdma {
            if self.rules.p2p.alloc_pgmap_ref {
                r += self.s.ledger.p2p_allocs[g] as i64;
            }
            r += pfns.filter(|&p| self.s.flags[p] & PG_POOL != 0 && !self.s.ledger.pages[p].p2p_kernel).count() as i64;
        }
        r + self.s.ledger.kernel_pgmap_refs[g] as i64 + self.s.ledger.inflight_pgmap_refs[g] as i64
    }

    fn check_pgmap_conformance(&mut self, g: usize) {
        if self.s.ledger.life[g] != Life::Registered {
            return;
        }
        let actual = self.s.pgmaps[g].pref.count();
        let expected = self.expected_pgmap_refs(g);
        if actual != expected {
            self.violate(Invariant::P1, &[("pgmap", g as u32)], || {
                (
                    format!(
                        "pgmap {g}'s ref is {actual} but the references the preset accounts for add up to {expected}"
                    ),
                    format!("{expected}"),
                    format!("{actual}"),
                )
            });
        }
    }
}
