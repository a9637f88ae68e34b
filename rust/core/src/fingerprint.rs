//! State snapshots and canonical fingerprints, for the explorer.
//!
//! Everything here reads or writes *every* field of [`State`]; each function
//! destructures the structs without `..`, so adding a field to `State`,
//! `Pgmap`, `Ledger`, `Holders` or `Task` breaks compilation here until the
//! new field is stored, restored and fingerprinted. This is the one place to
//! extend when the machine grows (THP folios, migration entries, ...).
//!
//! * [`State::copy_from`] — become a copy of another state without allocating.
//! * [`State::encode`] / [`State::decode`] — a lossless, compact byte form
//!   (LEB128 varints: almost every value is a small number) in which the
//!   explorer keeps its frontier.
//! * [`Canon::fingerprint`] — a 64-bit hash of the state, either of the exact
//!   state ([`Reduction::None`]) or of a canonical representative of its
//!   equivalence class ([`Reduction::Symmetry`]).
//!
//! # What `Reduction::Symmetry` forgets, and why that is sound
//!
//! Two states get the same canonical fingerprint only if no sequence of
//! actions (drain included) can tell them apart: every action enabled in one
//! has a counterpart enabled in the other, leading again to equivalent
//! states, with a violation in one exactly when there is one in the other.
//! Exploring one state per class therefore finds a violation exactly when
//! exploring all states would, at the same depth. docs/model.md §10 gives the
//! argument in full; in short:
//!
//! 1. **CPU identity.** The simulated `pgmap->ref` keeps one counter per CPU,
//!    but the model reads them only as their wrapping sum (the RCU fold,
//!    `count()`, `exit`); nothing compares one CPU's counter with another's,
//!    and an action's CPU is used for nothing else (`Task::cpu` only says
//!    which counter the task's later puts hit). So the fingerprint keeps the
//!    sum of the counters — and only while the bias is in the atomic counter
//!    ([`crate::percpu_ref::PercpuRef::percpu_counters_live`]): without it they are dead values,
//!    zeroed before they are read again — and drops `Task::cpu`. The
//!    percpu_ref's release *counter* is written, never read by the machine
//!    (the RELEASED control bit is what matters), and is dropped too.
//! 2. **The pfn a `get_dev_pagemap` lookup was given** is used only to find its
//!    pgmap; the fingerprint keeps the pgmap. **`Ledger::init_rc`** is derived:
//!    `memremap_pages` sets it to the type's initial refcount and nothing else
//!    writes it, so the pgmap's `life` determines it.
//! 3. **Pages of a device-dax or FS-DAX pgmap are interchangeable.** Nothing
//!    treats two pages of such a pgmap differently by their index: faults and
//!    block allocation take the pfn as an operand, every other use goes
//!    through a page-table entry, a DAX entry or the ledger, and loops over
//!    the pages of a pgmap either commute (each page's update is its own; the
//!    pgmap puts they make are decrements of 1, so the count passes through
//!    the same values in any order) or look for the first page with a
//!    property (the violation exists or not whatever the order). The
//!    fingerprint therefore sorts the pages of each such pgmap by their own
//!    contents and the page-table / DAX entries that point at them, and
//!    renames those pointers accordingly: a canonical form, since two pages
//!    with equal keys are unreferenced and identical.
//!
//!    **Not applied** to device-private pgmaps (the driver allocates the
//!    *lowest* free page, and free pages can differ — a stale mapping, an
//!    init-reference flag) nor to P2P pgmaps (the gen_pool hands out the
//!    first fit of *contiguous* pages: adjacency matters). Pgmaps,
//!    processes, addresses and files are never permuted.
//!
//! `tests/explore.rs` checks the claim empirically: with and without the
//! reduction, every preset reaches a violation at the same depth (or none).

use crate::config::Layout;
use crate::machine::State;
use crate::migrate::{MigCtx, MigEntry, Origin};
use crate::oracle::{Holders, Ledger, Life};
use crate::page::{Pte, PG_BUDDY};
use crate::pagetable::MigKind;
use crate::pgmap::{Pgmap, PgmapState};
use crate::program::op::{Dim, Op, OpKind, KINDS};
use crate::rules::DeviceType;
use crate::sched::{Task, TaskKind};

/// Which states the fingerprint identifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// The exact state: every word, every CPU counter, every page index.
    None,
    /// One fingerprint per symmetry class (module documentation).
    Symmetry,
}

/// A snapshot that does not fit this machine's shape (wrong length, bad tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "state snapshot does not decode: {}", self.0)
    }
}

// ----------------------------------------------------------------------
// Varints
// ----------------------------------------------------------------------

/// LEB128 varints, with runs of zeros (most of a state: idle pages, empty
/// PTEs, no holders) written as `0x00, run length`. A varint of a non-zero
/// value never starts with a 0x00 byte, so the escape is unambiguous.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    zeros: u8,
}

impl Writer<'_> {
    #[inline]
    fn flush(&mut self) {
        if self.zeros > 0 {
            self.out.push(0);
            self.out.push(self.zeros);
            self.zeros = 0;
        }
    }
}

#[inline(always)]
fn put(w: &mut Writer<'_>, mut v: u64) {
    if v == 0 {
        w.zeros += 1;
        if w.zeros == u8::MAX {
            w.flush();
        }
        return;
    }
    w.flush();
    while v >= 0x80 {
        w.out.push(v as u8 | 0x80);
        v >>= 7;
    }
    w.out.push(v as u8);
}

#[inline(always)]
fn put_i(w: &mut Writer<'_>, v: i64) {
    put(w, ((v << 1) ^ (v >> 63)) as u64);
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    /// zeros still to return from the current run
    zeros: u8,
}

impl Reader<'_> {
    #[inline]
    fn get(&mut self) -> Result<u64, DecodeError> {
        if self.zeros > 0 {
            self.zeros -= 1;
            return Ok(0);
        }
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.b.get(self.pos).ok_or(DecodeError("truncated"))?;
            self.pos += 1;
            if shift == 0 && byte == 0 {
                let run = *self.b.get(self.pos).ok_or(DecodeError("truncated"))?;
                self.pos += 1;
                if run == 0 {
                    return Err(DecodeError("empty zero run"));
                }
                self.zeros = run - 1;
                return Ok(0);
            }
            if shift >= 64 {
                return Err(DecodeError("varint too long"));
            }
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }
    #[inline]
    fn get_i(&mut self) -> Result<i64, DecodeError> {
        let u = self.get()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    fn small<T: TryFrom<u64>>(&mut self) -> Result<T, DecodeError> {
        T::try_from(self.get()?).map_err(|_| DecodeError("value out of range"))
    }
    fn int<T: TryFrom<i64>>(&mut self) -> Result<T, DecodeError> {
        T::try_from(self.get_i()?).map_err(|_| DecodeError("value out of range"))
    }
}

// ----------------------------------------------------------------------
// Small enums as numbers (shared by the codec and the fingerprint)
// ----------------------------------------------------------------------

fn pgmap_state_code(s: PgmapState) -> u64 {
    match s {
        PgmapState::Unused => 0,
        PgmapState::Live => 1,
        PgmapState::Unbinding => 2,
        PgmapState::Gone => 3,
    }
}

fn pgmap_state_from(v: u64) -> Result<PgmapState, DecodeError> {
    Ok(match v {
        0 => PgmapState::Unused,
        1 => PgmapState::Live,
        2 => PgmapState::Unbinding,
        3 => PgmapState::Gone,
        _ => return Err(DecodeError("bad pgmap state")),
    })
}

fn life_code(l: Life) -> u64 {
    match l {
        Life::Unregistered => 0,
        Life::Registered => 1,
        Life::Killed => 2,
        Life::TornDown => 3,
    }
}

fn life_from(v: u64) -> Result<Life, DecodeError> {
    Ok(match v {
        0 => Life::Unregistered,
        1 => Life::Registered,
        2 => Life::Killed,
        3 => Life::TornDown,
        _ => return Err(DecodeError("bad pgmap life")),
    })
}

fn mig_kind_code(k: MigKind) -> u64 {
    match k {
        MigKind::Read => 0,
        MigKind::ReadExclusive => 1,
        MigKind::Write => 2,
    }
}

/// A PTE (or PMD) as (tag with flag bits, pfn).
fn pte_code(p: Pte) -> (u64, Option<u16>) {
    match p {
        Pte::None => (0, None),
        Pte::Present { pfn, write, refcounted, dirty } => {
            (1 | (write as u64) << 2 | (refcounted as u64) << 3 | (dirty as u64) << 4, Some(pfn))
        }
        Pte::DevicePrivate { pfn, write } => (2 | (write as u64) << 2, Some(pfn)),
        Pte::Migration { pfn, kind } => (3 | mig_kind_code(kind) << 5, Some(pfn)),
    }
}

fn pte_from(tag: u64, pfn: u16) -> Result<Pte, DecodeError> {
    let write = tag & 4 != 0;
    Ok(match tag & 3 {
        0 => Pte::None,
        1 => Pte::Present { pfn, write, refcounted: tag & 8 != 0, dirty: tag & 16 != 0 },
        2 => Pte::DevicePrivate { pfn, write },
        _ => Pte::Migration {
            pfn,
            kind: match tag >> 5 & 3 {
                0 => MigKind::Read,
                1 => MigKind::ReadExclusive,
                2 => MigKind::Write,
                _ => return Err(DecodeError("bad migration entry kind")),
            },
        },
    })
}

/// `pte_code` without what cannot be observed: the dirty bit of a mapping
/// of a page that never migrates (FS-DAX, device-dax, P2P) — only collect
/// reads dirty bits, and it only collects anonymous and device-private
/// pages.
fn canon_pte_code(p: Pte, l: &Layout) -> (u64, Option<u16>) {
    let (tag, pfn) = pte_code(p);
    match pfn {
        Some(q) if !l.moves(q as usize) => (tag & !16, pfn),
        _ => (tag, pfn),
    }
}

fn holders_flags(h: &Holders) -> u64 {
    let Holders {
        maps: _,
        gup_gets: _,
        gup_pins: _,
        longterm_pins: _,
        kernel_gets: _,
        driver,
        p2p_kernel,
        fs,
        collect: _,
        fault: _,
        mig_dst,
        mig_entries: _,
        dirty_pte,
    } = *h;
    driver as u64 | (p2p_kernel as u64) << 1 | (fs as u64) << 2 | (mig_dst as u64) << 3 | (dirty_pte as u64) << 4
}

/// The counters of a ledger entry that the first two holder words do not
/// carry: collect, fault and migration-entry counts.
fn holders_migration(h: &Holders) -> u64 {
    h.collect as u64 | (h.fault as u64) << 8 | (h.mig_entries as u64) << 16
}

fn origin_code(o: Origin) -> u64 {
    match o {
        Origin::Vma => 0,
        Origin::DeviceRange => 1,
        Origin::Fault => 2,
    }
}

fn origin_from(v: u64) -> Result<Origin, DecodeError> {
    Ok(match v {
        0 => Origin::Vma,
        1 => Origin::DeviceRange,
        2 => Origin::Fault,
        _ => return Err(DecodeError("bad migration origin")),
    })
}

/// A migration context as words (`with_retries`: the refault counter, which
/// the machine reads only to detect a livelock in the drain).
fn mig_ctx_words(m: &MigCtx, pfn: impl Fn(u16) -> u64, with_retries: bool) -> [u64; 3] {
    let MigCtx {
        origin,
        proc,
        addr,
        npages,
        pgmap,
        select,
        fault_pfn,
        orig,
        orig_pmd,
        fault_ref,
        fault_locked,
        retries,
        oom,
        gup,
    } = *m;
    let (otag, opfn) = pte_code(orig);
    [
        origin_code(origin) | (proc as u64) << 8 | (addr as u64) << 16 | (npages as u64) << 32 | (pgmap as u64) << 48,
        select as u64
            | (if fault_pfn == 0 { 0 } else { pfn(fault_pfn - 1) + 1 }) << 8
            | (fault_ref as u64) << 32
            | (fault_locked as u64) << 33
            | (oom as u64) << 34
            | (orig_pmd as u64) << 35
            | if with_retries { (retries as u64) << 40 } else { 0 }
            | (gup as u64) << 48,
        otag << 16 | opfn.map_or(0, |p| pfn(p) + 1),
    ]
}

fn mig_entry_word(e: &MigEntry, pfn: impl Fn(u16) -> u64) -> u64 {
    let MigEntry { src, dst, flags } = *e;
    let rn = |v: u16| if v == 0 { 0 } else { pfn(v - 1) + 1 };
    rn(src) | rn(dst) << 16 | (flags as u64) << 32
}

// ----------------------------------------------------------------------
// Copy, encode, decode
// ----------------------------------------------------------------------

impl State {
    /// Become a copy of `src` (same machine shape) without allocating.
    pub fn copy_from(&mut self, src: &State) {
        let State {
            pgmaps,
            rc,
            mc,
            flags,
            mapping,
            head,
            order,
            pincount,
            emc,
            content,
            next_token,
            ptes,
            pmds,
            ptl,
            mig,
            mig_entries,
            split_pgmap_refs,
            lost_pgmap_refs,
            page_pgmap_refs,
            alive,
            avc,
            dax,
            p2p_len,
            armed,
            tasks,
            ledger,
        } = self;
        head.clone_from(&src.head);
        order.clone_from(&src.order);
        pincount.clone_from(&src.pincount);
        emc.clone_from(&src.emc);
        content.clone_from(&src.content);
        *next_token = src.next_token;
        pmds.clone_from(&src.pmds);
        ptl.clone_from(&src.ptl);
        mig.clone_from(&src.mig);
        mig_entries.clone_from(&src.mig_entries);
        split_pgmap_refs.clone_from(&src.split_pgmap_refs);
        lost_pgmap_refs.clone_from(&src.lost_pgmap_refs);
        page_pgmap_refs.clone_from(&src.page_pgmap_refs);
        for (d, s) in pgmaps.iter_mut().zip(&src.pgmaps) {
            let Pgmap { state, pref, done, init_dropped } = d;
            *state = s.state;
            pref.copy_from(&s.pref);
            *done = s.done;
            *init_dropped = s.init_dropped;
        }
        rc.clone_from(&src.rc);
        mc.clone_from(&src.mc);
        flags.clone_from(&src.flags);
        mapping.clone_from(&src.mapping);
        ptes.clone_from(&src.ptes);
        alive.clone_from(&src.alive);
        avc.clone_from(&src.avc);
        dax.clone_from(&src.dax);
        p2p_len.clone_from(&src.p2p_len);
        *armed = src.armed;
        tasks.clone_from(&src.tasks);
        let Ledger {
            pages,
            init_rc,
            kernel_pgmap_refs,
            inflight_pgmap_refs,
            p2p_allocs,
            life,
            released,
            locker,
            vcontent,
            migrated_away,
            pin_vpage,
        } = ledger;
        locker.clone_from(&src.ledger.locker);
        vcontent.clone_from(&src.ledger.vcontent);
        migrated_away.clone_from(&src.ledger.migrated_away);
        pin_vpage.clone_from(&src.ledger.pin_vpage);
        pages.clone_from(&src.ledger.pages);
        init_rc.clone_from(&src.ledger.init_rc);
        kernel_pgmap_refs.clone_from(&src.ledger.kernel_pgmap_refs);
        inflight_pgmap_refs.clone_from(&src.ledger.inflight_pgmap_refs);
        p2p_allocs.clone_from(&src.ledger.p2p_allocs);
        life.clone_from(&src.ledger.life);
        released.clone_from(&src.ledger.released);
    }

    /// Append the exact state to `out` (lossless; lengths come from the
    /// machine shape, so they are not stored).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let State {
            pgmaps,
            rc,
            mc,
            flags,
            mapping,
            head,
            order,
            pincount,
            emc,
            content,
            next_token,
            ptes,
            pmds,
            ptl,
            mig,
            mig_entries,
            split_pgmap_refs,
            lost_pgmap_refs,
            page_pgmap_refs,
            alive,
            avc,
            dax,
            p2p_len,
            armed,
            tasks,
            ledger,
        } = self;
        // room for the common case (every value below 128) in one go
        out.reserve(pgmaps.len() * 16 + rc.len() * 12 + ptes.len() * 2 + dax.len() + tasks.len() * 8 + 64);
        let out = &mut Writer { out, zeros: 0 };
        for p in pgmaps {
            let Pgmap { state, pref, done, init_dropped } = p;
            put(out, pgmap_state_code(*state) | (*done as u64) << 2 | (*init_dropped as u64) << 3);
            for w in pref.words() {
                put(out, w);
            }
            for c in 0..pref.cpus() {
                put(out, pref.slot_value(c));
            }
        }
        for v in rc.iter().chain(mc) {
            put_i(out, *v as i64);
        }
        for v in flags.iter().chain(mapping).chain(p2p_len).chain(order).chain(ptl).chain(armed.iter()) {
            put(out, *v as u64);
        }
        for (i, h) in head.iter().enumerate() {
            // relative to the page: 0 for heads and order-0 pages
            put(out, (i - (*h as usize).min(i)) as u64);
        }
        for v in pincount.iter().chain(emc) {
            put_i(out, *v as i64);
        }
        for v in content {
            put(out, *v as u64);
        }
        put(out, *next_token as u64);
        for p in ptes.iter().chain(pmds) {
            let (tag, pfn) = pte_code(*p);
            put(out, tag);
            if let Some(pfn) = pfn {
                put(out, pfn as u64);
            }
        }
        for m in mig {
            for w in mig_ctx_words(m, |p| p as u64, true) {
                put(out, w);
            }
        }
        for e in mig_entries {
            put(out, mig_entry_word(e, |p| p as u64));
        }
        for v in split_pgmap_refs.iter().chain(lost_pgmap_refs) {
            put(out, *v as u64);
        }
        for v in page_pgmap_refs {
            put_i(out, *v);
        }
        for a in alive {
            put(out, *a as u64);
        }
        for c in avc {
            put(out, *c as u64);
        }
        for d in dax {
            put(out, *d as u64);
        }
        for t in tasks {
            match t {
                None => put(out, 0),
                Some(Task { kind, pc, cpu }) => {
                    match *kind {
                        TaskKind::Memunmap { pgmap } => {
                            put(out, 1);
                            put(out, pgmap as u64);
                        }
                        TaskKind::GetDevPagemap { pfn, cached, found } => {
                            put(out, 2);
                            put(out, pfn as u64);
                            put(out, cached as u64);
                            put(out, found as u64);
                        }
                        TaskKind::Truncate { file, index } => {
                            put(out, 3);
                            put(out, file as u64);
                            put(out, index as u64);
                        }
                        TaskKind::Migrate { origin } => {
                            put(out, 4);
                            put(out, origin_code(origin));
                        }
                        TaskKind::MemoryFailure { pfn, found } => {
                            put(out, 5);
                            put(out, pfn as u64);
                            put(out, found as u64);
                        }
                        TaskKind::HmmRangeFault { proc, addr, owner, pfn, write } => {
                            put(out, 6);
                            put(out, proc as u64);
                            put(out, addr as u64);
                            put(out, owner as u64);
                            put(out, pfn as u64);
                            put(out, write as u64);
                        }
                        TaskKind::FreeFolio { pfn, nr } => {
                            put(out, 7);
                            put(out, pfn as u64);
                            put(out, nr as u64);
                        }
                        TaskKind::DaxWriteback { file, index } => {
                            put(out, 8);
                            put(out, file as u64);
                            put(out, index as u64);
                        }
                    }
                    put(out, *pc as u64);
                    put(out, *cpu as u64);
                }
            }
        }
        let Ledger {
            pages,
            init_rc,
            kernel_pgmap_refs,
            inflight_pgmap_refs,
            p2p_allocs,
            life,
            released,
            locker,
            vcontent,
            migrated_away,
            pin_vpage,
        } = ledger;
        for h in pages {
            let Holders { maps, gup_gets, gup_pins, longterm_pins, kernel_gets, mig_entries, .. } = *h;
            for v in [maps, gup_gets, gup_pins, longterm_pins, kernel_gets, mig_entries] {
                put(out, v as u64);
            }
            put(out, h.collect as u64);
            put(out, h.fault as u64);
            put(out, holders_flags(h));
        }
        for v in locker {
            put(out, *v as u64);
        }
        for v in vcontent {
            put(out, *v as u64);
        }
        for v in migrated_away {
            put(out, *v as u64);
        }
        for v in pin_vpage {
            put(out, *v as u64);
        }
        for v in init_rc {
            put_i(out, *v as i64);
        }
        for v in kernel_pgmap_refs.iter().chain(inflight_pgmap_refs).chain(p2p_allocs) {
            put(out, *v as u64);
        }
        for l in life {
            put(out, life_code(*l));
        }
        for r in released {
            put(out, *r as u64);
        }
        out.flush();
    }

    /// Overwrite this state with one [`State::encode`] wrote for the same
    /// machine shape. Never allocates; on error the state is unspecified
    /// (but valid Rust data) and must not be used.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader { b: bytes, pos: 0, zeros: 0 };
        let State {
            pgmaps,
            rc,
            mc,
            flags,
            mapping,
            head,
            order,
            pincount,
            emc,
            content,
            next_token,
            ptes,
            pmds,
            ptl,
            mig,
            mig_entries,
            split_pgmap_refs,
            lost_pgmap_refs,
            page_pgmap_refs,
            alive,
            avc,
            dax,
            p2p_len,
            armed,
            tasks,
            ledger,
        } = self;
        for p in pgmaps.iter_mut() {
            let Pgmap { state, pref, done, init_dropped } = p;
            let v = r.get()?;
            *state = pgmap_state_from(v & 3)?;
            *done = v & 4 != 0;
            *init_dropped = v & 8 != 0;
            let words = [r.get()?, r.get()?, r.get()?, r.get()?];
            let mut slots = [0u64; crate::config::MAX_CPUS];
            let n = pref.cpus();
            if n > slots.len() {
                return Err(DecodeError("too many CPUs"));
            }
            for s in slots.iter_mut().take(n) {
                *s = r.get()?;
            }
            pref.set_words(words, slots.iter().copied().take(n));
        }
        for v in rc.iter_mut().chain(mc.iter_mut()) {
            *v = r.int()?;
        }
        for v in flags
            .iter_mut()
            .chain(mapping.iter_mut())
            .chain(p2p_len.iter_mut())
            .chain(order.iter_mut())
            .chain(ptl.iter_mut())
            .chain(armed.iter_mut())
        {
            *v = r.small()?;
        }
        for (i, h) in head.iter_mut().enumerate() {
            let back: usize = r.small()?;
            *h = i.checked_sub(back).ok_or(DecodeError("bad compound head"))? as u16;
        }
        for v in pincount.iter_mut().chain(emc.iter_mut()) {
            *v = r.int()?;
        }
        for v in content.iter_mut() {
            *v = r.small()?;
        }
        *next_token = r.small()?;
        for p in ptes.iter_mut().chain(pmds.iter_mut()) {
            let tag = r.get()?;
            let pfn = if tag & 3 == 0 { 0 } else { r.small()? };
            *p = pte_from(tag, pfn)?;
        }
        for m in mig.iter_mut() {
            let (w0, w1, w2) = (r.get()?, r.get()?, r.get()?);
            let opfn = (w2 & 0xffff) as u16;
            *m = MigCtx {
                origin: origin_from(w0 & 0xff)?,
                proc: (w0 >> 8) as u8,
                addr: (w0 >> 16) as u16,
                npages: (w0 >> 32) as u16,
                pgmap: (w0 >> 48) as u8,
                select: w1 as u8,
                fault_pfn: (w1 >> 8) as u16,
                fault_ref: w1 >> 32 & 1 != 0,
                fault_locked: w1 >> 33 & 1 != 0,
                oom: w1 >> 34 & 1 != 0,
                orig_pmd: w1 >> 35 & 1 != 0,
                retries: (w1 >> 40) as u8,
                gup: (w1 >> 48) as u8,
                orig: if opfn == 0 { Pte::None } else { pte_from(w2 >> 16, opfn - 1)? },
            };
        }
        for e in mig_entries.iter_mut() {
            let w = r.get()?;
            *e = MigEntry { src: w as u16, dst: (w >> 16) as u16, flags: (w >> 32) as u8 };
        }
        for v in split_pgmap_refs.iter_mut().chain(lost_pgmap_refs.iter_mut()) {
            *v = r.small()?;
        }
        for v in page_pgmap_refs.iter_mut() {
            *v = r.get_i()?;
        }
        for a in alive.iter_mut() {
            *a = r.get()? != 0;
        }
        for c in avc.iter_mut() {
            *c = r.small()?;
        }
        for d in dax.iter_mut() {
            *d = r.small()?;
        }
        for t in tasks.iter_mut() {
            *t = match r.get()? {
                0 => None,
                k => {
                    let kind = match k {
                        1 => TaskKind::Memunmap { pgmap: r.small()? },
                        2 => TaskKind::GetDevPagemap { pfn: r.small()?, cached: r.small()?, found: r.small()? },
                        3 => TaskKind::Truncate { file: r.small()?, index: r.small()? },
                        4 => TaskKind::Migrate { origin: origin_from(r.get()?)? },
                        5 => TaskKind::MemoryFailure { pfn: r.small()?, found: r.small()? },
                        6 => TaskKind::HmmRangeFault {
                            proc: r.small()?,
                            addr: r.small()?,
                            owner: r.small()?,
                            pfn: r.small()?,
                            write: r.get()? != 0,
                        },
                        7 => TaskKind::FreeFolio { pfn: r.small()?, nr: r.small()? },
                        8 => TaskKind::DaxWriteback { file: r.small()?, index: r.small()? },
                        _ => return Err(DecodeError("bad task kind")),
                    };
                    Some(Task { kind, pc: r.small()?, cpu: r.small()? })
                }
            };
        }
        let Ledger {
            pages,
            init_rc,
            kernel_pgmap_refs,
            inflight_pgmap_refs,
            p2p_allocs,
            life,
            released,
            locker,
            vcontent,
            migrated_away,
            pin_vpage,
        } = ledger;
        for h in pages.iter_mut() {
            let (maps, gup_gets, gup_pins, longterm_pins, kernel_gets, mig_entries) =
                (r.small()?, r.small()?, r.small()?, r.small()?, r.small()?, r.small()?);
            let (collect, fault) = (r.small()?, r.small()?);
            let f = r.get()?;
            *h = Holders {
                maps,
                gup_gets,
                gup_pins,
                longterm_pins,
                kernel_gets,
                driver: f & 1 != 0,
                p2p_kernel: f & 2 != 0,
                fs: f & 4 != 0,
                mig_dst: f & 8 != 0,
                dirty_pte: f & 16 != 0,
                collect,
                fault,
                mig_entries,
            };
        }
        for v in locker.iter_mut() {
            *v = r.small()?;
        }
        for v in vcontent.iter_mut() {
            *v = r.small()?;
        }
        for v in migrated_away.iter_mut() {
            *v = r.get()? != 0;
        }
        for v in pin_vpage.iter_mut() {
            *v = r.small()?;
        }
        for v in init_rc.iter_mut() {
            *v = r.int()?;
        }
        for v in kernel_pgmap_refs.iter_mut().chain(inflight_pgmap_refs.iter_mut()).chain(p2p_allocs.iter_mut()) {
            *v = r.small()?;
        }
        for l in life.iter_mut() {
            *l = life_from(r.get()?)?;
        }
        for v in released.iter_mut() {
            *v = r.get()? != 0;
        }
        if r.pos != bytes.len() || r.zeros != 0 {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(())
    }
}

// ----------------------------------------------------------------------
// Hashing
// ----------------------------------------------------------------------

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

/// 64×64→128 multiply, folded: the mixing step of wyhash.
#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// A 64-bit hash of a word sequence (wyhash's mixing, two words per
/// multiply, four independent lanes so the multiplies overlap).
/// Fingerprints only need good dispersion, not resistance to adversaries.
pub fn hash_words(words: &[u64], seed: u64) -> u64 {
    let mut h = [seed ^ P0, seed ^ P1, seed ^ P2, seed ^ P3];
    let mut it = words.chunks_exact(8);
    for c in &mut it {
        h[0] = mum(c[0] ^ P1, c[1] ^ h[0]);
        h[1] = mum(c[2] ^ P2, c[3] ^ h[1]);
        h[2] = mum(c[4] ^ P3, c[5] ^ h[2]);
        h[3] = mum(c[6] ^ P0, c[7] ^ h[3]);
    }
    for (j, w) in it.remainder().iter().enumerate() {
        h[j & 3] = mum(*w ^ P1, h[j & 3] ^ P2);
    }
    let a = mum(h[0] ^ P3, h[1] ^ P2);
    let b = mum(h[2] ^ P1, h[3] ^ P0);
    mum(a ^ (words.len() as u64), b ^ P3)
}

/// Scratch space for canonical fingerprints (one per worker thread; reused,
/// so fingerprinting allocates nothing once warm).
#[derive(Default)]
pub struct Canon {
    words: Vec<u64>,
    /// per pfn: sort key (symmetric pgmaps)
    keys: Vec<u64>,
    /// new index of each pfn
    newpos: Vec<u16>,
    /// scratch: pfns of one pgmap in canonical order
    order: Vec<u16>,
    /// scratch: each page's words
    pages: Vec<[u64; 5]>,
    /// scratch: data tokens renamed in order of first appearance
    tokens: Vec<(u32, u32)>,
    /// per pfn: some PTE or DAX entry points at it
    referenced: Vec<bool>,
    /// per pfn: explore actions on it (see [`Canon::prepare_actions`])
    rep: Vec<bool>,
    /// per action kind: the index of its page operand, if any
    pfn_arg: Vec<Option<u8>>,
}

impl Canon {
    pub fn new() -> Canon {
        Canon {
            pfn_arg: KINDS.iter().map(|k| k.args.iter().position(|(_, d)| *d == Dim::Pfn).map(|i| i as u8)).collect(),
            ..Canon::default()
        }
    }

    /// The fingerprint of `s` under `mode` (module documentation).
    pub fn fingerprint(&mut self, s: &State, l: &Layout, mode: Reduction) -> u64 {
        self.words.clear();
        match mode {
            Reduction::None => self.exact_words(s),
            Reduction::Symmetry => self.canonical_words(s, l),
        }
        hash_words(&self.words, mode as u64)
    }

    /// Every word of the state, in the codec's order.
    fn exact_words(&mut self, s: &State) {
        let w = &mut self.words;
        let State {
            pgmaps,
            rc,
            mc,
            flags,
            mapping,
            head,
            order,
            pincount,
            emc,
            content,
            next_token,
            ptes,
            pmds,
            ptl,
            mig,
            mig_entries,
            split_pgmap_refs,
            lost_pgmap_refs,
            page_pgmap_refs,
            alive,
            avc,
            dax,
            p2p_len,
            armed,
            tasks,
            ledger,
        } = s;
        for p in pgmaps {
            let Pgmap { state, pref, done, init_dropped } = p;
            w.push(pgmap_state_code(*state) | (*done as u64) << 2 | (*init_dropped as u64) << 3);
            w.extend_from_slice(&pref.words());
            for c in 0..pref.cpus() {
                w.push(pref.slot_value(c));
            }
        }
        for i in 0..rc.len() {
            w.push((rc[i] as u32 as u64) << 32 | mc[i] as u32 as u64);
            w.push((flags[i] as u64) << 16 | (mapping[i] as u64) << 8 | p2p_len[i] as u64 | (order[i] as u64) << 24);
            w.push((pincount[i] as u32 as u64) << 32 | emc[i] as u32 as u64);
            w.push((head[i] as u64) << 32 | content[i] as u64);
        }
        w.push(*next_token as u64);
        for a in armed.iter() {
            w.push(*a as u64);
        }
        for p in ptes.iter().chain(pmds) {
            let (tag, pfn) = pte_code(*p);
            w.push(tag << 16 | pfn.unwrap_or(0) as u64);
        }
        w.extend(ptl.iter().map(|&o| o as u64));
        for m in mig {
            w.extend_from_slice(&mig_ctx_words(m, |p| p as u64, true));
        }
        w.extend(mig_entries.iter().map(|e| mig_entry_word(e, |p| p as u64)));
        w.extend(split_pgmap_refs.iter().chain(lost_pgmap_refs).map(|&v| v as u64));
        w.extend(page_pgmap_refs.iter().map(|&v| v as u64));
        w.push(alive.iter().fold(0u64, |acc, &a| acc << 1 | a as u64));
        w.push(avc.iter().fold(0u64, |acc, &c| acc << 8 | c as u64));
        w.extend(dax.iter().map(|&d| d as u64));
        for t in tasks {
            w.push(task_word(t, |pfn| pfn as u64, true));
        }
        ledger_words(w, ledger, |p| p);
    }

    /// Each page's own contents as three words into `self.pages`.
    /// `init_rc` is left out: it is derived (memremap_pages sets it to the
    /// type's initial refcount, reset to 0, nothing else writes it), so the
    /// pgmap's `life` already determines it.
    /// The page's content token is not among them: it is handled apart (see
    /// [`Canon::canonical_words`]); the compound head is kept relative to the
    /// page, so it is the same for an order-0 page wherever it sits.
    fn page_words(&mut self, s: &State) {
        let State { rc, mc, flags, mapping, p2p_len, ledger, head, order, pincount, emc, .. } = s;
        self.pages.clear();
        for p in 0..rc.len() {
            let [h0, h1] = holders_words(&ledger.pages[p], 0);
            let own = (flags[p] as u64) << 40 | (mapping[p] as u64) << 48 | (p2p_len[p] as u64) << 56;
            let l = &ledger;
            self.pages.push([
                (rc[p] as u32 as u64) << 32 | mc[p] as u32 as u64,
                h0,
                h1 | own,
                (pincount[p] as u32 as u64) << 32 | emc[p] as u32 as u64,
                holders_migration(&l.pages[p])
                    | (l.locker[p] as u64) << 32
                    | (l.migrated_away[p] as u64) << 40
                    | (l.pin_vpage[p] as u64) << 41
                    | ((p - (head[p] as usize).min(p)) as u64) << 57
                    | (order[p] as u64) << 60,
            ]);
        }
    }

    /// Prepare [`Canon::action_representative`] for state `s`: on a
    /// device-dax / FS-DAX pgmap, two pages with equal contents that no PTE
    /// or DAX entry points at are interchangeable *in this state* — swapping
    /// them maps the state to itself (up to the lookup pfns that the
    /// fingerprint reduces to their pgmap) — so an action on the second
    /// leads to a state equivalent to the same action on the first.
    pub fn prepare_actions(&mut self, s: &State, l: &Layout) {
        let n = s.rc.len();
        self.rep.clear();
        self.rep.resize(n, true);
        let sym_mask = symmetric_pgmaps(l);
        if sym_mask == 0 {
            return;
        }
        self.page_words(s);
        self.referenced.clear();
        self.referenced.resize(n, false);
        for pte in s.ptes.iter().chain(&s.pmds) {
            if let Some(r) = pte.pfn().and_then(|p| self.referenced.get_mut(p)) {
                *r = true;
            }
        }
        for &d in &s.dax {
            if let Some(r) = (d as usize).checked_sub(1).and_then(|p| self.referenced.get_mut(p)) {
                *r = true;
            }
        }
        for g in (0..l.npgmaps).filter(|&g| sym_mask >> (g % 64) & 1 != 0) {
            let r = l.pfns_of(g);
            for p in r.clone() {
                if !self.referenced[p] {
                    self.rep[p] = !(r.start..p).any(|q| !self.referenced[q] && self.pages[q] == self.pages[p]);
                }
            }
        }
    }

    /// Under [`Reduction::Symmetry`], is `op` worth exploring from the state
    /// given to [`Canon::prepare_actions`]? False when its page operand is
    /// a page interchangeable with an earlier one, and for a
    /// `get_dev_pagemap` on any pfn but the first of its pgmap (the lookup
    /// uses the pfn only to find the pgmap). Skipped actions lead to states
    /// equivalent to those of the kept ones.
    pub fn action_representative(&self, op: &Op, l: &Layout) -> bool {
        let Some(&Some(i)) = self.pfn_arg.get(op.kind as usize) else { return true };
        let p = op.args[i as usize] as usize;
        if op.kind == OpKind::GetDevPagemap {
            // every lookup of a system RAM pfn finds nothing alike
            if l.is_ram(p) {
                return p == l.ndev;
            }
            return p < l.npfns && p == l.pfns_of(l.pgmap_of(p)).start;
        }
        self.rep.get(p).copied().unwrap_or(true)
    }

    /// The canonical representative's words (Reduction::Symmetry).
    fn canonical_words(&mut self, s: &State, l: &Layout) {
        let State {
            pgmaps,
            rc,
            mc: _,
            flags,
            mapping: _,
            head: _,
            order: _,
            pincount: _,
            emc: _,
            content,
            next_token: _,
            ptes,
            pmds,
            ptl,
            mig,
            mig_entries,
            split_pgmap_refs,
            lost_pgmap_refs,
            page_pgmap_refs,
            alive,
            avc,
            dax,
            p2p_len: _,
            armed,
            tasks,
            ledger,
        } = s;
        let Ledger {
            pages: _,
            init_rc: _,
            kernel_pgmap_refs,
            inflight_pgmap_refs,
            p2p_allocs,
            life,
            released,
            locker: _,
            vcontent,
            migrated_away: _,
            pin_vpage: _,
        } = ledger;
        let n = rc.len();
        // 1. each page as three words
        self.page_words(s);
        // 2. page order: identity, except pages of device-dax / FS-DAX
        //    pgmaps, sorted by (own words, pointers to them)
        self.newpos.clear();
        self.newpos.extend(0..n as u16);
        let sym_mask = symmetric_pgmaps(l);
        if sym_mask != 0 {
            self.keys.clear();
            self.keys.extend(
                self.pages.iter().map(|[a, b, c, d, e]| mum(a ^ P1, b ^ P2) ^ mum(c ^ P3, P0) ^ mum(d ^ P2, e ^ P1)),
            );
            // pointers: which PTE slots / DAX slots name the page
            for (slot, pte) in ptes.iter().chain(pmds).enumerate() {
                let (tag, pfn) = canon_pte_code(*pte, l);
                if let Some(k) = pfn.and_then(|p| self.keys.get_mut(p as usize)) {
                    *k = mum(*k ^ P1, (slot as u64) << 8 ^ tag ^ P2);
                }
            }
            for (slot, &d) in dax.iter().enumerate() {
                if let Some(k) = (d as usize).checked_sub(1).and_then(|p| self.keys.get_mut(p)) {
                    *k = mum(*k ^ P3, (slot as u64) << 8 ^ 0xff ^ P2);
                }
            }
            for g in (0..l.npgmaps).filter(|&g| sym_mask >> (g % 64) & 1 != 0) {
                let r = l.pfns_of(g);
                self.order.clear();
                self.order.extend(r.clone().map(|p| p as u16));
                let keys = &self.keys;
                // stable: equal keys keep their index order (they are
                // identical and unreferenced, so the order does not matter)
                self.order.sort_by_key(|&p| keys[p as usize]);
                for (i, &p) in self.order.iter().enumerate() {
                    self.newpos[p as usize] = (r.start + i) as u16;
                }
            }
        }
        let np = |p: usize| self.newpos.get(p).copied().unwrap_or(p as u16) as usize;
        let w = &mut self.words;
        // 3. pgmaps: the percpu_ref as its logical words (CPU counters
        //    summed, and only while live; the release counter dropped), and
        //    the pgmap's ledger
        for (g, p) in pgmaps.iter().enumerate() {
            let Pgmap { state, pref, done, init_dropped } = p;
            let [ptr, count, ctl, _released_counter] = pref.words();
            let sum = if pref.percpu_counters_live() {
                (0..pref.cpus()).fold(0u64, |a, c| a.wrapping_add(pref.slot_value(c)))
            } else {
                0
            };
            w.extend_from_slice(&[
                pgmap_state_code(*state)
                    | (*done as u64) << 2
                    | (*init_dropped as u64) << 3
                    | life_code(life[g]) << 4
                    | (released[g] as u64) << 6
                    | (kernel_pgmap_refs[g] as u64) << 16
                    | (inflight_pgmap_refs[g] as u64) << 32
                    | (p2p_allocs[g] as u64) << 48,
                ptr,
                count,
                ctl,
                sum,
                split_pgmap_refs[g] as u64 | (lost_pgmap_refs[g] as u64) << 32,
                page_pgmap_refs[g] as u64,
            ]);
        }
        // 4. pages in canonical order: new index i holds old page order[i]
        self.order.clear();
        self.order.resize(n, 0);
        for p in 0..n {
            if let Some(o) = self.order.get_mut(np(p)) {
                *o = p as u16;
            }
        }
        for &q in &self.order {
            w.extend_from_slice(&self.pages[q as usize]);
        }
        // 5. pointers to pages, renamed
        for p in ptes.iter().chain(pmds) {
            let (tag, pfn) = canon_pte_code(*p, l);
            w.push(tag << 16 | pfn.map_or(0, |p| np(p as usize) as u64));
        }
        w.extend(ptl.iter().map(|&o| o as u64));
        w.push(alive.iter().fold(0u64, |acc, &a| acc << 1 | a as u64));
        w.push(avc.iter().fold(0u64, |acc, &c| acc << 8 | c as u64));
        w.extend(dax.iter().map(|&d| if d == 0 { 0 } else { np(d as usize - 1) as u64 + 1 }));
        // armed failure sites name no page or CPU: as they are
        w.extend(armed.iter().map(|&a| a as u64));
        // 6. tasks: no CPU; a lookup's pfn only as its pgmap; migrations
        //    without their refault counter (read only by the drain's
        //    livelock check, which resets it)
        for (slot, t) in tasks.iter().enumerate() {
            // a task that will read its page keeps it, renamed like every
            // page: an HMM snapshot's pfn is compared with the page mapped at
            // its address when the driver checks it, and a pending free reads
            // folio->pgmap of its page
            let keeps_page =
                t.is_some_and(|t| matches!(t.kind, TaskKind::HmmRangeFault { .. } | TaskKind::FreeFolio { .. }));
            w.push(task_word(
                t,
                |pfn| {
                    if keeps_page {
                        np(pfn as usize) as u64
                    } else if l.is_ram(pfn as usize) {
                        0xffff
                    } else {
                        l.pgmap_of(pfn as usize) as u64
                    }
                },
                false,
            ));
            if t.is_some_and(|t| matches!(t.kind, TaskKind::Migrate { .. })) {
                w.extend_from_slice(&mig_ctx_words(&mig[slot], |p| np(p as usize) as u64, false));
                let cap = l.mig_cap();
                w.extend(
                    mig_entries[slot * cap..(slot + 1) * cap]
                        .iter()
                        .map(|e| mig_entry_word(e, |p| np(p as usize) as u64)),
                );
            }
        }
        // 7. data: only equality between tokens is observable (a write makes
        //    a token no page holds yet; 0 is the zero page). Pages that
        //    never move (FS-DAX, device-dax, P2P) always show their mappings
        //    the latest data — every write updates both — so their tokens,
        //    and the tokens of virtual pages that map them or map nothing
        //    (a new mapping sets its token), are never compared: dropped.
        //    The rest are renamed in order of first appearance.
        let movable = |p: usize| l.moves(p);
        self.tokens.clear();
        let tokens = &mut self.tokens;
        let mut rename = |t: u32| -> u64 {
            if t == 0 {
                return 0;
            }
            if let Some(&(_, n)) = tokens.iter().find(|(o, _)| *o == t) {
                return n as u64;
            }
            let n = tokens.len() as u32 + 1;
            tokens.push((t, n));
            n as u64
        };
        for &q in &self.order {
            let q = q as usize;
            let free_ram = l.is_ram(q) && flags[q] & PG_BUDDY != 0;
            w.push(if movable(q) && !free_ram { rename(content[q]) } else { 0 });
        }
        for proc in 0..l.procs {
            for a in 0..l.addrs {
                let v = l.pte_slot(proc, a);
                let pte = ptes[v];
                let pmd = if l.in_block(a) { pmds[l.pmd_slot(proc, a)] } else { Pte::None };
                let target = pmd.pfn().or(pte.pfn());
                w.push(match target {
                    Some(p) if movable(p) => rename(vcontent[v]),
                    _ => 0,
                });
            }
        }
    }
}

/// The pgmaps whose pages are interchangeable (bit g: pgmap g).
///
/// Revisit when the machine grows: anything that makes a page's *index*
/// observable on these types breaks the symmetry — compound folios (a THP
/// is a run of adjacent pfns), PMD mappings, an allocator that picks the
/// lowest pfn. Such pgmaps must then be left out here (or whole folios
/// permuted instead of pages); `tests/explore.rs` compares the reduced search
/// with a plain BFS and should be run on shapes that exercise the new code.
fn symmetric_pgmaps(l: &Layout) -> u64 {
    if l.pages < 2 {
        return 0;
    }
    // a PMD-aligned device-dax device or PMD-sized FS-DAX entries map runs
    // of adjacent pfns by one PMD (and in the eras with compound DAX folios
    // they are one folio): their pages are not interchangeable
    (0..l.npgmaps)
        .filter(|&g| match l.pgmap_type[g] {
            DeviceType::Generic => !l.devdax_pmd,
            DeviceType::Fsdax => !l.fsdax_pmd,
            _ => false,
        })
        .fold(0u64, |m, g| m | 1 << (g % 64))
}

/// A page's ledger entry and initial refcount as two words.
fn holders_words(h: &Holders, init_rc: i32) -> [u64; 2] {
    let Holders { maps, gup_gets, gup_pins, longterm_pins, kernel_gets, .. } = *h;
    [
        maps as u64 | (gup_gets as u64) << 16 | (gup_pins as u64) << 32 | (longterm_pins as u64) << 48,
        kernel_gets as u64 | holders_flags(h) << 16 | (init_rc as u32 as u64) << 32,
    ]
}

/// One task as a word; `pfn` maps a lookup's pfn, `with_cpu` keeps the CPU.
fn task_word(t: &Option<Task>, pfn: impl Fn(u16) -> u64, with_cpu: bool) -> u64 {
    let Some(Task { kind, pc, cpu }) = *t else { return 0 };
    let k = match kind {
        TaskKind::Memunmap { pgmap } => 1 | (pgmap as u64) << 8,
        TaskKind::GetDevPagemap { pfn: p, cached, found } => {
            2 | pfn(p) << 8 | (cached as u64) << 24 | (found as u64) << 32
        }
        TaskKind::Truncate { file, index } => 3 | (file as u64) << 8 | (index as u64) << 16,
        TaskKind::Migrate { origin } => 4 | origin_code(origin) << 8,
        TaskKind::MemoryFailure { pfn: p, found } => 5 | pfn(p) << 8 | (found as u64) << 32,
        // 40 bits: kind 0..4, proc 4..7, owner 7..12, write 12, addr
        // 13..24, pfn 24..40 (the shape caps: 4 processes, 16 pgmaps, 1024
        // addresses; pc and cpu start at bit 40)
        TaskKind::HmmRangeFault { proc, addr, owner, pfn: p, write } => {
            6 | (proc as u64) << 4 | (owner as u64) << 7 | (write as u64) << 12 | (addr as u64) << 13 | pfn(p) << 24
        }
        TaskKind::FreeFolio { pfn: p, nr } => 7 | pfn(p) << 8 | (nr as u64) << 24,
        TaskKind::DaxWriteback { file, index } => 8 | (file as u64) << 8 | (index as u64) << 16,
    };
    k | (pc as u64) << 40 | if with_cpu { (cpu as u64) << 48 } else { 0 }
}

/// The ledger's words; page `i` of the output is page `page(i)` of the state.
fn ledger_words(w: &mut Vec<u64>, ledger: &Ledger, page: impl Fn(usize) -> usize) {
    let Ledger {
        pages,
        init_rc,
        kernel_pgmap_refs,
        inflight_pgmap_refs,
        p2p_allocs,
        life,
        released,
        locker,
        vcontent,
        migrated_away,
        pin_vpage,
    } = ledger;
    for i in 0..pages.len() {
        let p = page(i);
        w.extend_from_slice(&holders_words(&pages[p], init_rc[p]));
        w.push(
            holders_migration(&pages[p])
                | (locker[p] as u64) << 32
                | (migrated_away[p] as u64) << 40
                | (pin_vpage[p] as u64) << 48,
        );
    }
    w.extend(vcontent.iter().map(|&v| v as u64));
    for g in 0..life.len() {
        w.push(
            kernel_pgmap_refs[g] as u64
                | (inflight_pgmap_refs[g] as u64) << 16
                | (p2p_allocs[g] as u64) << 32
                | life_code(life[g]) << 48
                | (released[g] as u64) << 56,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Shape};
    use crate::machine::Machine;
    use crate::program::text::parse_program;
    use crate::rules::Rules;

    fn machine(preset: &str, types: &[DeviceType]) -> Machine {
        let shape = Shape { types: types.to_vec(), ..Shape::default() };
        Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), shape)).unwrap()
    }

    /// Run a program's actions (no drain) on a fresh machine.
    fn after(preset: &str, text: &str) -> Machine {
        let p = parse_program(text).unwrap();
        let mut m = Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), p.shape.clone())).unwrap();
        for op in &p.ops {
            m.step(op).unwrap();
        }
        m
    }

    const BUSY: &str = "config types=private,fsdax,generic,p2pdma
memremap_pages pgmap=0
memremap_pages pgmap=1
memremap_pages pgmap=2
memremap_pages pgmap=3
alloc_device_page pgmap=0 cpu=1
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=1
dax_associate_entry file=1 index=1 pfn=6
dax_iomap_fault proc=1 addr=2 file=1 index=1 cpu=0
dev_dax_huge_fault proc=0 addr=1 pfn=10 cpu=1
get_user_pages proc=0 addr=1 flags=0 cpu=0
pci_alloc_p2pmem pgmap=3 pages=2 cpu=1
get_dev_pagemap pfn=13 cpu=1
memunmap_pages pgmap=2 cpu=1
step task=1
";

    /// What a page that moves holds, and the dirty bits of its mappings,
    /// are observable (collect reads dirty bits; the data oracle compares
    /// tokens after a move): RAM and coherent pages keep both in the
    /// canonical state. An FS-DAX page never moves: its mapping's dirty bit
    /// is dropped.
    #[test]
    fn data_and_dirty_bits_of_pages_that_move_are_kept() {
        let written = |text: &str, preset: &str| {
            let (a, b) = (after(preset, text), after(preset, &format!("{text}cpu_write proc=0 addr=0 cpu=0\n")));
            let mut c = Canon::new();
            let f = |m: &Machine, c: &mut Canon| {
                [Reduction::None, Reduction::Symmetry].map(|r| c.fingerprint(&m.s, &m.layout, r))
            };
            let (fa, fb) = (f(&a, &mut c), f(&b, &mut c));
            (0..2).all(|i| fa[i] != fb[i])
        };
        let ram = "config types=generic pgmaps=1 pages=1 procs=1 addrs=1 ram=1\nmemremap_pages pgmap=0\n\
                   do_anonymous_page proc=0 addr=0 cpu=0\n";
        assert!(written(ram, "e3"), "a write to a RAM page");
        let coherent = "config types=coherent pgmaps=1 pages=1 procs=1 addrs=1 ram=1\nmemremap_pages pgmap=0\n\
                        alloc_device_page pgmap=0 cpu=0\nmigrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0\n";
        assert!(written(coherent, "e4"), "a write to a coherent page");
        let fsdax = "config types=fsdax pgmaps=1 pages=1 procs=1 addrs=1 files=1 file_pages=1\n\
                     memremap_pages pgmap=0\ndax_associate_entry file=0 index=0 pfn=0\n\
                     dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0\n";
        assert!(!written(fsdax, "e3"), "a write to an FS-DAX page is not observable");
        // the dirty bit alone: kept for a page that moves, dropped for one
        // that never does
        let dirty_only = |text: &str, preset: &str| {
            let clean = after(preset, text);
            let mut dirty = after(preset, text);
            if let Pte::Present { dirty: d, .. } = &mut dirty.s.ptes[0] {
                *d = !*d;
            }
            assert_ne!(clean.s.ptes[0], dirty.s.ptes[0]);
            let mut c = Canon::new();
            let fa = c.fingerprint(&clean.s, &clean.layout, Reduction::Symmetry);
            fa != c.fingerprint(&dirty.s, &dirty.layout, Reduction::Symmetry)
        };
        assert!(dirty_only(ram, "e3") && dirty_only(coherent, "e4"));
        assert!(!dirty_only(fsdax, "e3"));
    }

    #[test]
    fn encode_decode_round_trips_and_keeps_the_exact_fingerprint() {
        let m = after("e3", BUSY);
        let mut bytes = Vec::new();
        m.s.encode(&mut bytes);
        let mut other = machine("e3", &DeviceType::DEFAULT);
        other.s.decode(&bytes).unwrap();
        let mut again = Vec::new();
        other.s.encode(&mut again);
        assert_eq!(bytes, again);
        let mut c = Canon::new();
        for mode in [Reduction::None, Reduction::Symmetry] {
            assert_eq!(c.fingerprint(&m.s, &m.layout, mode), c.fingerprint(&other.s, &other.layout, mode));
        }
        // the initial state differs
        let fresh = machine("e3", &DeviceType::DEFAULT);
        assert_ne!(
            c.fingerprint(&m.s, &m.layout, Reduction::None),
            c.fingerprint(&fresh.s, &fresh.layout, Reduction::None)
        );
        // copy_from gives the same bytes
        let mut copy = machine("e3", &DeviceType::DEFAULT);
        copy.s.copy_from(&m.s);
        let mut third = Vec::new();
        copy.s.encode(&mut third);
        assert_eq!(bytes, third);
    }

    /// Every task kind with each of its fields: distinct exact and
    /// symmetric fingerprints, and encode/decode keeps it.
    #[test]
    fn every_task_kind_and_field_is_kept() {
        use crate::migrate::Origin;
        let kinds = [
            TaskKind::Memunmap { pgmap: 0 },
            TaskKind::Memunmap { pgmap: 1 },
            TaskKind::GetDevPagemap { pfn: 1, cached: 0, found: 0 },
            TaskKind::GetDevPagemap { pfn: 2, cached: 0, found: 0 },
            TaskKind::GetDevPagemap { pfn: 1, cached: 1, found: 0 },
            TaskKind::GetDevPagemap { pfn: 1, cached: 0, found: 1 },
            TaskKind::Truncate { file: 0, index: 1 },
            TaskKind::Truncate { file: 1, index: 1 },
            TaskKind::Truncate { file: 0, index: 0 },
            TaskKind::Migrate { origin: Origin::Vma },
            TaskKind::Migrate { origin: Origin::Fault },
            TaskKind::MemoryFailure { pfn: 1, found: 0 },
            TaskKind::MemoryFailure { pfn: 2, found: 0 },
            TaskKind::MemoryFailure { pfn: 1, found: 1 },
            TaskKind::HmmRangeFault { proc: 0, addr: 0, owner: 0, pfn: 1, write: false },
            TaskKind::HmmRangeFault { proc: 1, addr: 0, owner: 0, pfn: 1, write: false },
            TaskKind::HmmRangeFault { proc: 0, addr: 1, owner: 0, pfn: 1, write: false },
            TaskKind::HmmRangeFault { proc: 0, addr: 0, owner: 1, pfn: 1, write: false },
            TaskKind::HmmRangeFault { proc: 0, addr: 0, owner: 0, pfn: 2, write: false },
            TaskKind::HmmRangeFault { proc: 0, addr: 0, owner: 0, pfn: 1, write: true },
            TaskKind::FreeFolio { pfn: 1, nr: 1 },
            TaskKind::FreeFolio { pfn: 2, nr: 1 },
            TaskKind::FreeFolio { pfn: 1, nr: 2 },
            TaskKind::DaxWriteback { file: 0, index: 1 },
            TaskKind::DaxWriteback { file: 1, index: 0 },
            TaskKind::DaxWriteback { file: 0, index: 0 },
        ];
        let mut c = Canon::new();
        for mode in [Reduction::None, Reduction::Symmetry] {
            let mut seen = std::collections::HashSet::new();
            for (i, &kind) in kinds.iter().enumerate() {
                // #3, #12 and #18 differ from an earlier kind only in a pfn: on a
                // fresh machine every page is like every other, and symmetry
                // rightly identifies them
                if mode == Reduction::Symmetry && (i == 3 || i == 12 || i == 18) {
                    continue;
                }
                let mut m = machine("e4", &[DeviceType::Private]);
                m.s.tasks[0] = Some(Task { kind, pc: 1, cpu: 0 });
                let fp = c.fingerprint(&m.s, &m.layout, mode);
                assert!(seen.insert(fp), "{mode:?}: {kind:?} (#{i}) has another kind's fingerprint");
                let mut bytes = Vec::new();
                m.s.encode(&mut bytes);
                let mut back = machine("e4", &[DeviceType::Private]);
                back.s.decode(&bytes).unwrap();
                assert_eq!(back.s.tasks[0].map(|t| t.kind), Some(kind), "{kind:?} lost by encode/decode");
            }
        }
    }

    /// Under symmetry a lookup remembers only the pgmap of its pfn (every
    /// RAM pfn alike), but an HMM snapshot keeps its page: the driver
    /// compares it with the page mapped at its address.
    #[test]
    fn task_pfns_under_symmetry() {
        let mut c = Canon::new();
        let sym = |c: &mut Canon, m: &Machine| c.fingerprint(&m.s, &m.layout, Reduction::Symmetry);
        let shape = "config types=generic pgmaps=1 pages=2 procs=1 addrs=2 tasks=2 ram=4\nmemremap_pages pgmap=0\n";
        // two RAM pfns two pages apart (pgmap_of would tell them apart)
        let lookup = |p: u16| {
            let mut m = after("e4", shape);
            m.s.tasks[0] = Some(Task { kind: TaskKind::GetDevPagemap { pfn: p, cached: 0, found: 0 }, pc: 1, cpu: 0 });
            m
        };
        assert!(lookup(2).layout.is_ram(2) && lookup(5).layout.is_ram(5));
        assert_eq!(sym(&mut c, &lookup(2)), sym(&mut c, &lookup(5)));
        // two device-dax pages told apart by where they are mapped: a
        // snapshot of the one at addr 0 is not a snapshot of the other
        let mapped = format!(
            "{shape}dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0\ndev_dax_huge_fault proc=0 addr=1 pfn=1 cpu=0\n"
        );
        let snap = |p: u16| {
            let mut m = after("e4", &mapped);
            let kind = TaskKind::HmmRangeFault { proc: 0, addr: 0, owner: 0, pfn: p, write: true };
            m.s.tasks[0] = Some(Task { kind, pc: 0, cpu: 0 });
            m
        };
        assert_ne!(sym(&mut c, &snap(0)), sym(&mut c, &snap(1)));
    }

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        let mut m = machine("e3", &DeviceType::DEFAULT);
        let mut bytes = Vec::new();
        m.s.encode(&mut bytes);
        assert!(m.s.decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(m.s.decode(&longer).is_err());
        assert!(m.s.decode(&[0xff; 12]).is_err());
        for cut in 0..bytes.len() {
            let _ = m.s.decode(&bytes[..cut]);
        }
    }

    /// Every field of the state, changed alone, changes the exact
    /// fingerprint and survives encode/decode. The destructuring lists every
    /// field: a new field breaks this test's compilation until it is added.
    #[test]
    fn every_field_is_covered() {
        let base = after("e3", BUSY);
        let mut c = Canon::new();
        let fp0 = c.fingerprint(&base.s, &base.layout, Reduction::None);
        let mut seen = std::collections::HashSet::new();
        type Mutator = fn(&mut State);
        let State {
            pgmaps: _,
            rc: _,
            mc: _,
            flags: _,
            mapping: _,
            head: _,
            order: _,
            pincount: _,
            emc: _,
            content: _,
            next_token: _,
            ptes: _,
            pmds: _,
            ptl: _,
            mig: _,
            mig_entries: _,
            split_pgmap_refs: _,
            lost_pgmap_refs: _,
            page_pgmap_refs: _,
            alive: _,
            avc: _,
            dax: _,
            p2p_len: _,
            armed: _,
            tasks: _,
            ledger:
                Ledger {
                    pages: _,
                    init_rc: _,
                    kernel_pgmap_refs: _,
                    inflight_pgmap_refs: _,
                    p2p_allocs: _,
                    life: _,
                    released: _,
                    locker: _,
                    vcontent: _,
                    migrated_away: _,
                    pin_vpage: _,
                },
        } = &base.s;
        let muts: &[(&str, Mutator)] = &[
            ("pgmaps.state", |s| s.pgmaps[1].state = PgmapState::Gone),
            ("pgmaps.done", |s| s.pgmaps[1].done ^= true),
            ("pgmaps.init_dropped", |s| s.pgmaps[1].init_dropped ^= true),
            ("pgmaps.pref.slot", |s| {
                s.pgmaps[1].pref.copy_from(&{
                    let r = crate::pgmap::SimRef::new(2, 0);
                    r.get(1).unwrap();
                    r
                })
            }),
            ("rc", |s| s.rc[3] += 1),
            ("mc", |s| s.mc[3] += 1),
            ("flags", |s| s.flags[3] ^= 0x10),
            ("mapping", |s| s.mapping[3] ^= 0x10),
            ("ptes", |s| s.ptes[7] = Pte::Present { pfn: 2, write: false, refcounted: true, dirty: false }),
            ("ptes.dirty", |s| s.ptes[7] = Pte::Present { pfn: 2, write: false, refcounted: true, dirty: true }),
            ("ptes.migration", |s| s.ptes[7] = Pte::Migration { pfn: 2, kind: MigKind::ReadExclusive }),
            ("head", |s| s.head[17] = 16),
            ("order", |s| s.order[16] = 1),
            ("pincount", |s| s.pincount[16] = 1),
            ("emc", |s| s.emc[16] = 1),
            ("content", |s| s.content[16] = 7),
            ("next_token", |s| s.next_token += 1),
            ("pmds", |s| s.pmds[1] = Pte::Present { pfn: 16, write: true, refcounted: true, dirty: false }),
            ("ptl", |s| s.ptl[0] = 1),
            ("mig", |s| s.mig[2].retries = 3),
            ("mig.gup", |s| s.mig[2].gup = 5),
            ("mig.orig_pmd", |s| s.mig[2].orig_pmd ^= true),
            ("mig_entries", |s| s.mig_entries[5].flags = 1),
            ("split_pgmap_refs", |s| s.split_pgmap_refs[0] = 1),
            ("lost_pgmap_refs", |s| s.lost_pgmap_refs[0] = 1),
            ("page_pgmap_refs", |s| s.page_pgmap_refs[0] = 1),
            ("ledger.locker", |s| s.ledger.locker[16] = 1),
            ("ledger.vcontent", |s| s.ledger.vcontent[3] = 9),
            ("ledger.migrated_away", |s| s.ledger.migrated_away[16] = true),
            ("ledger.pin_vpage", |s| s.ledger.pin_vpage[16] = 2),
            ("ledger.pages.collect", |s| s.ledger.pages[3].collect += 1),
            ("ledger.pages.fault", |s| s.ledger.pages[3].fault += 1),
            ("ledger.pages.mig_dst", |s| s.ledger.pages[3].mig_dst ^= true),
            ("ledger.pages.mig_entries", |s| s.ledger.pages[3].mig_entries += 1),
            ("ledger.pages.dirty_pte", |s| s.ledger.pages[3].dirty_pte ^= true),
            ("alive", |s| s.alive[1] ^= true),
            ("avc", |s| s.avc[1] ^= 1),
            ("avc of the first process", |s| s.avc[0] ^= 2),
            ("dax", |s| s.dax[0] = 5),
            ("p2p_len", |s| s.p2p_len[15] = 1),
            ("armed", |s| s.armed[1] = 2),
            ("tasks", |s| s.tasks[3] = Some(Task { kind: TaskKind::Truncate { file: 0, index: 1 }, pc: 0, cpu: 0 })),
            ("tasks.cpu", |s| {
                if let Some(t) = s.tasks[0].as_mut() {
                    t.cpu ^= 1
                }
            }),
            ("ledger.pages.maps", |s| s.ledger.pages[3].maps += 1),
            ("ledger.pages.gup_gets", |s| s.ledger.pages[3].gup_gets += 1),
            ("ledger.pages.gup_pins", |s| s.ledger.pages[3].gup_pins += 1),
            ("ledger.pages.longterm_pins", |s| s.ledger.pages[3].longterm_pins += 1),
            ("ledger.pages.kernel_gets", |s| s.ledger.pages[3].kernel_gets += 1),
            ("ledger.pages.driver", |s| s.ledger.pages[3].driver ^= true),
            ("ledger.pages.p2p_kernel", |s| s.ledger.pages[3].p2p_kernel ^= true),
            ("ledger.pages.fs", |s| s.ledger.pages[3].fs ^= true),
            ("ledger.init_rc", |s| s.ledger.init_rc[3] += 1),
            ("ledger.kernel_pgmap_refs", |s| s.ledger.kernel_pgmap_refs[2] += 1),
            ("ledger.inflight_pgmap_refs", |s| s.ledger.inflight_pgmap_refs[2] += 1),
            ("ledger.p2p_allocs", |s| s.ledger.p2p_allocs[2] += 1),
            ("ledger.life", |s| s.ledger.life[0] = Life::TornDown),
            ("ledger.released", |s| s.ledger.released[0] ^= true),
        ];
        for (name, f) in muts {
            let mut m = after("e3", BUSY);
            f(&mut m.s);
            let fp = c.fingerprint(&m.s, &m.layout, Reduction::None);
            assert_ne!(fp, fp0, "{name}: the exact fingerprint ignores it");
            assert!(seen.insert(fp), "{name}: same fingerprint as another mutation");
            let mut bytes = Vec::new();
            m.s.encode(&mut bytes);
            let mut back = machine("e3", &DeviceType::DEFAULT);
            back.s.decode(&bytes).unwrap();
            assert_eq!(c.fingerprint(&back.s, &back.layout, Reduction::None), fp, "{name}: lost by encode/decode");
        }
    }

    /// The per-pgmap reference counters the I-P1 accounting adds up are in
    /// the reduced fingerprint too (a lost reference is a different state:
    /// the unbind hangs on it), and so is which anon_vmas each process is
    /// linked to (it decides where rmap walks go and whether an anon_vma is
    /// still alive, I-M10; processes are never permuted).
    #[test]
    fn pgmap_reference_counters_and_anon_vma_links_survive_the_symmetry_reduction() {
        let base = after("e3", BUSY);
        let mut c = Canon::new();
        let fp0 = c.fingerprint(&base.s, &base.layout, Reduction::Symmetry);
        let mut seen = std::collections::HashSet::new();
        type Mutator = fn(&mut State);
        let muts: [(&str, Mutator); 5] = [
            ("split_pgmap_refs", |s| s.split_pgmap_refs[0] = 1),
            ("lost_pgmap_refs", |s| s.lost_pgmap_refs[0] = 1),
            ("page_pgmap_refs", |s| s.page_pgmap_refs[0] = 1),
            ("process 0's anon_vma links", |s| s.avc[0] ^= 2),
            ("process 1's anon_vma links", |s| s.avc[1] ^= 1),
        ];
        for (name, f) in muts {
            let mut m = after("e3", BUSY);
            f(&mut m.s);
            let fp = c.fingerprint(&m.s, &m.layout, Reduction::Symmetry);
            assert_ne!(fp, fp0, "{name}: the reduced fingerprint ignores it");
            assert!(seen.insert(fp), "{name}: same reduced fingerprint as another mutation");
        }
    }

    #[test]
    fn cpu_identity_is_forgotten_only_under_symmetry() {
        let on = |cpu: u16| {
            after("e3", &format!("config types=generic\nmemremap_pages pgmap=0\nget_dev_pagemap pfn=2 cpu={cpu}\nstep task=0\nstep task=0\n"))
        };
        let (a, b) = (on(0), on(1));
        let mut c = Canon::new();
        assert_ne!(c.fingerprint(&a.s, &a.layout, Reduction::None), c.fingerprint(&b.s, &b.layout, Reduction::None));
        assert_eq!(
            c.fingerprint(&a.s, &a.layout, Reduction::Symmetry),
            c.fingerprint(&b.s, &b.layout, Reduction::Symmetry)
        );
    }

    #[test]
    fn dax_pages_are_interchangeable_but_private_and_p2p_pages_are_not() {
        let prog = |t: &str, body: &str| after("e4", &format!("config types={t}\nmemremap_pages pgmap=0\n{body}"));
        let mut c = Canon::new();
        let sym = |c: &mut Canon, m: &Machine| c.fingerprint(&m.s, &m.layout, Reduction::Symmetry);
        // device-dax: fault pfn 1 or pfn 3 into the same address
        let a = prog("generic", "dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0\n");
        let b = prog("generic", "dev_dax_huge_fault proc=0 addr=0 pfn=3 cpu=0\n");
        assert_eq!(sym(&mut c, &a), sym(&mut c, &b));
        // ... but which address maps it still matters
        let d = prog("generic", "dev_dax_huge_fault proc=0 addr=1 pfn=3 cpu=0\n");
        assert_ne!(sym(&mut c, &a), sym(&mut c, &d));
        // two pages mapped at two addresses, in either assignment
        let e = prog("generic", "dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0\ndev_dax_huge_fault proc=0 addr=1 pfn=2 cpu=0\nget_user_pages proc=0 addr=0 flags=0 cpu=0\n");
        let f = prog("generic", "dev_dax_huge_fault proc=0 addr=0 pfn=2 cpu=0\ndev_dax_huge_fault proc=0 addr=1 pfn=1 cpu=0\nget_user_pages proc=0 addr=0 flags=0 cpu=0\n");
        let g = prog("generic", "dev_dax_huge_fault proc=0 addr=0 pfn=2 cpu=0\ndev_dax_huge_fault proc=0 addr=1 pfn=1 cpu=0\nget_user_pages proc=0 addr=1 flags=0 cpu=0\n");
        assert_eq!(sym(&mut c, &e), sym(&mut c, &f));
        assert_ne!(sym(&mut c, &e), sym(&mut c, &g), "the GUP'd page is the one at addr 0 vs addr 1");
        assert_ne!(c.fingerprint(&e.s, &e.layout, Reduction::None), c.fingerprint(&f.s, &f.layout, Reduction::None));
        // FS-DAX: blocks are interchangeable too
        let h = prog("fsdax", "dax_associate_entry file=0 index=0 pfn=0\n");
        let i = prog("fsdax", "dax_associate_entry file=0 index=0 pfn=3\n");
        assert_eq!(sym(&mut c, &h), sym(&mut c, &i));
        // P2P: a 1-page allocation at pfn 0 vs at pfn 1 (after freeing 0) differ
        let j = prog("p2pdma", "pci_alloc_p2pmem pgmap=0 pages=1 cpu=0\n");
        let k = prog("p2pdma", "pci_alloc_p2pmem pgmap=0 pages=1 cpu=0\npci_alloc_p2pmem pgmap=0 pages=1 cpu=0\npci_free_p2pmem pfn=0 cpu=0\n");
        assert_ne!(sym(&mut c, &j), sym(&mut c, &k));
    }
}
