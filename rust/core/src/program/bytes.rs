//! The compact byte encoding and its *total* decoder.
//!
//! Every byte string is a valid program. An action is one kind byte
//! followed by one operand byte per operand (two, little-endian, for a
//! domain larger than 256): the kind is `byte % kinds`, each operand
//! `byte % domain size`. If that action is not enabled now, the decoder takes
//! the next enabled operand combination of the same kind (cyclically), then
//! the next kind that has one — so a small mutation of the bytes changes the
//! program a little, and nothing is ever rejected. Decoding ends with the
//! data or when no action at all is enabled.
//!
//! Encoding an enabled action gives exactly the bytes that decode to it, so
//! `from_bytes(to_bytes(p)) == p` for every program whose actions are all
//! enabled when they run (the canonical programs the decoder produces).
//!
//! The search for an enabled action is bounded: at most [`DECODE_PROBES`]
//! operand combinations (of the operands that decide, see [`deciding_args`])
//! are tried per kind before the decoder moves on to the next kind. On the
//! shapes fuzzers use the bound is never reached (every kind's whole domain
//! is smaller); on the largest shapes a kind's domain is millions of
//! combinations (4 processes x 1024 addresses x 17 k pfns), and without the
//! bound one 4 KiB input took half a minute. The Python reference model's
//! decoder has the same bound.

use super::op::{Dim, KindSet, Op, OpKind, KINDS, MAX_ARGS};
use crate::config::Layout;
use crate::machine::{Machine, Verdict};

/// How many leading operands of `kind` decide whether an action of it is
/// enabled ([`Machine::enabled`] reads no operand after them): the CPU an
/// actor runs on never decides whether it may act, and neither do GUP's
/// flags (they change what GUP does, not whether the page can be looked
/// up). The decoder relies on this to skip combinations that differ only
/// in these operands; `tests::trailing_operands_never_decide` checks it.
#[inline]
pub(crate) fn deciding_args(kind: OpKind) -> usize {
    let args = kind.info().args;
    let mut n = args.len();
    while n > 0 && args[n - 1].1 == Dim::Cpu {
        n -= 1;
    }
    if matches!(kind, OpKind::GetUserPages | OpKind::PinUserPages) {
        debug_assert_eq!(args[n - 1].1, Dim::Flags);
        n -= 1;
    }
    n
}

/// The most operand combinations the decoder tries per kind for one action.
pub const DECODE_PROBES: usize = 1 << 12;

#[inline]
fn width(dim: Dim, m: &Machine) -> usize {
    dim_width(dim, &m.layout)
}

#[inline]
fn dim_width(dim: Dim, l: &Layout) -> usize {
    if dim.size(l) > 256 {
        2
    } else {
        1
    }
}

impl Machine {
    /// Decode the next action at `*pos` and advance `*pos`.
    pub fn decode_op(&self, data: &[u8], pos: &mut usize) -> Option<Op> {
        self.decode_op_in(data, pos, KindSet::ALL)
    }

    /// [`Machine::decode_op`] restricted to the kinds in `kinds` (swarm
    /// testing): a kind byte naming a kind outside the set moves on to the
    /// next kind in the set, as a kind with no enabled action does.
    pub fn decode_op_in(&self, data: &[u8], pos: &mut usize, kinds: KindSet) -> Option<Op> {
        if *pos >= data.len() {
            return None;
        }
        let k0 = data[*pos] as usize % KINDS.len();
        *pos += 1;
        let byte = |pos: &mut usize| -> usize {
            let b = data.get(*pos).copied().unwrap_or(0) as usize;
            *pos += 1;
            b
        };
        // operand indices of the first kind, as read
        let info = &KINDS[k0];
        let mut first = [0usize; MAX_ARGS];
        for (i, (_, d)) in info.args.iter().enumerate() {
            let mut v = byte(pos);
            if width(*d, self) == 2 {
                v |= byte(pos) << 8;
            }
            first[i] = v % d.size(&self.layout).max(1);
        }
        for dk in 0..KINDS.len() {
            let info = &KINDS[(k0 + dk) % KINDS.len()];
            if !kinds.contains(info.kind) || !self.kind_possible(info.kind) {
                continue;
            }
            // walk the operand combinations from the first one read, as an
            // odometer (last operand fastest, wrapping), without recomputing
            // each combination from its index. Only the first `d` operands
            // decide whether an action is enabled (see `deciding_args`): the
            // trailing ones cannot turn a refusal into an enabled action, so
            // the walk skips them, and keeps what the full odometer would
            // have returned: the values read for the first combination,
            // zeros after it (where the odometer has reset those digits).
            let d = deciding_args(info.kind);
            let mut sizes = [1usize; MAX_ARGS];
            let mut idx = [0usize; MAX_ARGS];
            let mut total = 1usize;
            for (i, (_, dim)) in info.args.iter().enumerate() {
                sizes[i] = dim.size(&self.layout);
                total *= sizes[i];
                idx[i] = if dk == 0 { first[i] } else { 0 };
            }
            if total == 0 {
                continue;
            }
            let steps: usize = sizes[..d].iter().product();
            let mut op = Op { kind: info.kind, args: [0; MAX_ARGS] };
            for (i, (_, dim)) in info.args.iter().enumerate().skip(d) {
                op.args[i] = dim.value(idx[i]);
            }
            // at most `decode_probes` combinations of this kind, then the next kind
            for step in 0..steps.min(self.decode_probes) {
                for (i, (_, dim)) in info.args[..d].iter().enumerate() {
                    op.args[i] = dim.value(idx[i]);
                }
                if self.enabled(&op).is_ok() {
                    return Some(op);
                }
                if step == 0 {
                    for (i, (_, dim)) in info.args.iter().enumerate().skip(d) {
                        op.args[i] = dim.value(0);
                    }
                }
                let mut i = d;
                while i > 0 {
                    i -= 1;
                    idx[i] += 1;
                    if idx[i] < sizes[i] {
                        break;
                    }
                    idx[i] = 0;
                }
            }
        }
        None
    }

    /// A cheap necessary condition for any action of `kind` to be enabled,
    /// so the decoder skips hopeless kinds without scanning their operands.
    pub(crate) fn kind_possible(&self, kind: OpKind) -> bool {
        use crate::pagetable::Pte;
        use crate::pgmap::PgmapState;
        use crate::rules::DeviceType;
        use OpKind::*;
        let l = &self.layout;
        let s = &self.s;
        let free_slot = || s.tasks.iter().any(|t| t.is_none());
        let live_of =
            |t: DeviceType| (0..l.npgmaps).any(|g| l.pgmap_type[g] == t && s.pgmaps[g].state == PgmapState::Live);
        let any_entry = |f: fn(&Pte) -> bool| s.ptes.iter().chain(s.pmds.iter()).any(f);
        let alive = || s.alive.iter().any(|&a| a);
        // a live process with an empty address slot (PTE and PMD)
        let room =
            || (0..l.procs).any(|proc| s.alive[proc] && (0..l.addrs).any(|a| self.entry(proc, a).0 == Pte::None));
        match kind {
            MemremapPages => s.pgmaps.iter().any(|p| p.state == PgmapState::Unused),
            FailNext => l.faults && s.armed.contains(&0),
            HmmRangeFault | HmmFault => live_of(DeviceType::Private) && free_slot() && alive(),
            MemoryFailure => l.faults && free_slot() && !self.memory_failure_running(),
            DaxWriteback => free_slot() && s.dax.iter().any(|&e| e > 0),
            MemunmapPages => free_slot() && s.pgmaps.iter().any(|p| p.state == PgmapState::Live),
            Step => s.tasks.iter().any(|t| t.is_some()),
            RcuGracePeriod => self.any_switch_pending(),
            GetDevPagemap => free_slot(),
            PutDevPagemap => s.ledger.kernel_pgmap_refs.iter().any(|&n| n > 0),
            AllocDevicePage => live_of(DeviceType::Private) || live_of(DeviceType::Coherent),
            AllocDeviceFolio => live_of(DeviceType::Private),
            FreeDevicePage | LockPage | UnlockPage => s.ledger.pages.iter().any(|h| h.driver),
            MigrateVmaInsertPage => s.ledger.locker.contains(&crate::oracle::LOCK_DRIVER) && room(),
            PciAllocP2pmem => (0..l.npgmaps).any(|g| l.pgmap_type[g] == DeviceType::P2pdma),
            P2pmemAllocMmap => self.rules.p2p.userspace_mmap && live_of(DeviceType::P2pdma) && room(),
            PciFreeP2pmem | GetPage => s.ledger.p2p_allocs.iter().any(|&n| n > 0),
            PutPage => s.ledger.pages.iter().any(|h| h.gup_gets > 0 || h.kernel_gets > 0),
            DevDaxFault => live_of(DeviceType::Generic) && room(),
            DaxAssociateEntry => {
                l.nfiles > 0
                    && live_of(DeviceType::Fsdax)
                    && s.dax.contains(&0)
                    && (0..l.ndev).any(|p| l.pgmap_type[l.pgmap_of(p)] == DeviceType::Fsdax && !s.ledger.pages[p].fs)
            }
            DaxIomapFault => s.dax.iter().any(|&e| e > 0) && room(),
            Truncate => s.dax.iter().any(|&e| e > 0) && free_slot(),
            Fork => alive() && s.alive.iter().any(|&a| !a),
            ExitMmap => alive(),
            Munmap | GetUserPages | PinUserPages | MadviseDontneed => any_entry(|p| *p != Pte::None),
            UnpinUserPage | DmaWrite => s.ledger.pages.iter().any(|h| h.gup_pins > 0),
            DoAnonymousPage | DoHugePmdAnonymousPage => l.npfns > l.ndev && room(),
            CpuWrite => any_entry(|p| matches!(p, Pte::Present { .. })),
            DeviceWrite | DoSwapPage => {
                any_entry(|p| matches!(p, Pte::DevicePrivate { .. }))
                    || (kind == DeviceWrite && s.ledger.pages.iter().any(|h| h.driver))
            }
            MigrateVmaSetup => {
                free_slot() && (live_of(DeviceType::Private) || live_of(DeviceType::Coherent)) && alive()
            }
            MigrateDeviceRange => {
                self.rules.migrate.device_range
                    && free_slot()
                    && (live_of(DeviceType::Private) || live_of(DeviceType::Coherent))
            }
            SplitHugePmd | Mbind => s.pmds.iter().any(|p| *p != Pte::None),
            SplitHugePage => l.order > 0 && s.order.iter().any(|&o| o > 0),
        }
    }

    /// Append the bytes that decode to `op` (when it is enabled).
    pub fn encode_op(&self, op: &Op, out: &mut Vec<u8>) {
        encode_op(&self.layout, op, out)
    }

    /// Decode and run a whole byte program in one call: reset, decode and
    /// apply action by action (stopping at the first violation), drain.
    /// Allocates nothing per action.
    pub fn run_bytes(&mut self, data: &[u8]) -> Verdict {
        self.reset();
        let mut pos = 0;
        while self.violation.is_none() {
            match self.decode_op(data, &mut pos) {
                Some(op) => self.apply_traced(&op),
                None => break,
            }
        }
        self.finish();
        self.verdict()
    }

    /// Decode a byte program into its actions (running them to follow the
    /// state), without the drain.
    pub fn decode_program(&mut self, data: &[u8]) -> Vec<Op> {
        self.reset();
        let mut ops = Vec::new();
        let mut pos = 0;
        while self.violation.is_none() {
            match self.decode_op(data, &mut pos) {
                Some(op) => {
                    self.apply_traced(&op);
                    ops.push(op);
                }
                None => break,
            }
        }
        ops
    }

    /// Encode actions as bytes.
    pub fn encode_program(&self, ops: &[Op]) -> Vec<u8> {
        encode_ops(&self.layout, ops)
    }
}

/// Append the bytes that decode to `op` (when it is enabled) on a machine of
/// layout `l`: the encoding depends on the operand domains only.
pub fn encode_op(l: &Layout, op: &Op, out: &mut Vec<u8>) {
    out.push(op.kind as u8);
    let info = op.kind.info();
    for (i, (_, d)) in info.args.iter().enumerate() {
        let idx = d.index(op.args[i], l).unwrap_or(0);
        out.push(idx as u8);
        if dim_width(*d, l) == 2 {
            out.push((idx >> 8) as u8);
        }
    }
}

/// Encode actions as bytes for a machine of layout `l`.
pub fn encode_ops(l: &Layout, ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ops.len() * 4);
    for op in ops {
        encode_op(l, op, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::deciding_args;
    use crate::fuzz::Rng;
    use crate::program::op::{KindSet, Op, OpKind, KINDS, MAX_ARGS};
    use crate::{Config, Machine, Rules};

    /// The search for an enabled action tries at most `decode_probes`
    /// combinations per kind: with a bound of one, some search skips an
    /// enabled action that is not the first combination of its kind; with
    /// the real bound (never reached on the default shape) it is found.
    #[test]
    fn the_search_for_an_enabled_action_is_bounded() {
        let mut m = Machine::new(Config::new(Rules::preset("e3").unwrap())).unwrap();
        let mut rng = Rng::new(7);
        let mut cut = 0;
        for _ in 0..200 {
            let data: Vec<u8> = (0..64).map(|_| rng.byte()).collect();
            m.reset();
            let mut pos = 0;
            loop {
                m.decode_probes = 1;
                let tight = m.decode_op(&data, &mut pos.clone());
                m.decode_probes = super::DECODE_PROBES;
                let Some(op) = m.decode_op(&data, &mut pos) else { break };
                if tight != Some(op) {
                    cut += 1;
                }
                m.apply_traced(&op);
                if m.violation().is_some() {
                    break;
                }
            }
        }
        assert!(cut > 0, "a bound of one probe never cut a search");
    }

    /// The states random programs reach under every era, on the default
    /// shape (RAM and huge pages included): `check(m)` runs on each.
    fn on_random_states(seed: u64, programs: usize, mut check: impl FnMut(&Machine)) {
        let mut rng = Rng::new(seed);
        for preset in ["e1", "e3", "e4", "e5", "p20"] {
            let mut m = Machine::new(Config::new(Rules::preset(preset).unwrap())).unwrap();
            for _ in 0..programs {
                let data: Vec<u8> = (0..300).map(|_| rng.byte()).collect();
                m.reset();
                let mut pos = 0;
                while m.violation().is_none() {
                    check(&m);
                    match m.decode_op(&data, &mut pos) {
                        Some(op) => m.apply_traced(&op),
                        None => break,
                    }
                }
            }
        }
    }

    /// What `deciding_args` promises the decoder: the operands after the
    /// deciding ones never change whether an action is enabled.
    #[test]
    fn trailing_operands_never_decide() {
        let mut checked = 0usize;
        on_random_states(17, 6, |m| {
            for info in KINDS {
                let d = deciding_args(info.kind);
                let total: usize = info.args.iter().map(|(_, dim)| dim.size(&m.layout)).product();
                for idx in 0..total {
                    let op = m.op_at(info.kind, idx);
                    let mut base = op;
                    for (i, (_, dim)) in info.args.iter().enumerate().skip(d) {
                        base.args[i] = dim.value(0);
                    }
                    assert_eq!(m.enabled(&op).is_ok(), m.enabled(&base).is_ok(), "{op:?} vs {base:?}");
                    checked += usize::from(d < info.args.len());
                }
            }
        });
        assert!(checked > 100_000, "{checked}");
    }

    /// The decoder before it skipped non-deciding operands: every operand
    /// combination in odometer order. The decoder must return what it did.
    fn decode_full_odometer(m: &Machine, data: &[u8], pos: &mut usize, kinds: KindSet) -> Option<Op> {
        if *pos >= data.len() {
            return None;
        }
        let k0 = data[*pos] as usize % KINDS.len();
        *pos += 1;
        let info = &KINDS[k0];
        let mut first = [0usize; MAX_ARGS];
        for (i, (_, d)) in info.args.iter().enumerate() {
            let mut v = data.get(*pos).copied().unwrap_or(0) as usize;
            *pos += 1;
            if d.size(&m.layout) > 256 {
                v |= (data.get(*pos).copied().unwrap_or(0) as usize) << 8;
                *pos += 1;
            }
            first[i] = v % d.size(&m.layout).max(1);
        }
        for dk in 0..KINDS.len() {
            let info = &KINDS[(k0 + dk) % KINDS.len()];
            if !kinds.contains(info.kind) {
                continue;
            }
            let sizes: Vec<usize> = info.args.iter().map(|(_, d)| d.size(&m.layout)).collect();
            let total: usize = sizes.iter().product();
            let mut idx: Vec<usize> = (0..info.args.len()).map(|i| if dk == 0 { first[i] } else { 0 }).collect();
            for _ in 0..total {
                let mut op = Op { kind: info.kind, args: [0; MAX_ARGS] };
                for (i, (_, d)) in info.args.iter().enumerate() {
                    op.args[i] = d.value(idx[i]);
                }
                if m.enabled(&op).is_ok() {
                    return Some(op);
                }
                for i in (0..idx.len()).rev() {
                    idx[i] += 1;
                    if idx[i] < sizes[i] {
                        break;
                    }
                    idx[i] = 0;
                }
            }
        }
        None
    }

    /// Byte programs decode to the same actions as with the full odometer,
    /// under every era, with random kind subsets (as the native engine's
    /// swarm uses) and with all kinds.
    #[test]
    fn decoding_is_unchanged_by_skipping_non_deciding_operands() {
        let mut rng = Rng::new(23);
        let mut decoded = 0usize;
        for preset in ["e1", "e3", "e4", "e5", "p20"] {
            let mut m = Machine::new(Config::new(Rules::preset(preset).unwrap())).unwrap();
            for round in 0..150 {
                let mut kinds = KindSet::ALL;
                if round % 3 != 0 {
                    kinds = KindSet::EMPTY;
                    for info in KINDS {
                        if rng.chance(1, 2) {
                            kinds.insert(info.kind);
                        }
                    }
                }
                let data: Vec<u8> = (0..1 + rng.below(400)).map(|_| rng.byte()).collect();
                m.reset();
                let (mut pos, mut pos_full) = (0, 0);
                while m.violation().is_none() {
                    let full = decode_full_odometer(&m, &data, &mut pos_full, kinds);
                    let fast = m.decode_op_in(&data, &mut pos, kinds);
                    assert_eq!(fast, full, "{preset}: {data:?} at byte {pos}");
                    assert_eq!(pos, pos_full);
                    match fast {
                        Some(op) => m.apply_traced(&op),
                        None => break,
                    }
                    decoded += 1;
                }
            }
        }
        assert!(decoded > 20_000, "{decoded}");
    }

    /// ... and it does skip: on a machine with nothing registered yet, the
    /// kinds that need a live pgmap, a task, a holder or `faults=1` are
    /// ruled out without a probe.
    #[test]
    fn kind_possible_rules_out_kinds_with_nothing_to_act_on() {
        use OpKind::*;
        let m = Machine::new(Config::new(Rules::preset("e4").unwrap())).unwrap();
        for k in [
            Step,
            HmmRangeFault,
            HmmFault,
            MemoryFailure,
            FailNext,
            PutDevPagemap,
            UnpinUserPage,
            AllocDevicePage,
            DaxWriteback,
            MadviseDontneed,
        ] {
            assert!(!m.kind_possible(k), "{k:?}");
        }
        assert!(m.kind_possible(MemremapPages));
    }

    /// `kind_possible` only skips kinds with no enabled action: it is a
    /// necessary condition, checked on the states random programs reach.
    #[test]
    fn kind_possible_never_hides_an_enabled_action() {
        let mut rng = Rng::new(9);
        let mut checked = 0;
        let mut injected = 0;
        // the default shape, and one with faults=1 (fail_next, memory_failure)
        let faults = crate::config::Shape { faults: 1, tasks: 3, ..crate::config::Shape::default() };
        for (preset, shape) in [("e1", None), ("e3", None), ("e4", None), ("p20", None), ("e4", Some(faults))] {
            let rules = Rules::preset(preset).unwrap();
            let cfg = match shape {
                Some(s) => Config::with_shape(rules, s),
                None => Config::new(rules),
            };
            let mut m = Machine::new(cfg).unwrap();
            for _ in 0..25 {
                let data: Vec<u8> = (0..400).map(|_| rng.byte()).collect();
                m.reset();
                let mut pos = 0;
                while m.violation().is_none() {
                    let enabled = m.enabled_actions();
                    for info in KINDS {
                        if enabled.iter().any(|op| op.kind == info.kind) {
                            assert!(m.kind_possible(info.kind), "{preset}: {} enabled but skipped", info.name);
                            checked += 1;
                            injected += usize::from(matches!(info.kind, OpKind::MemoryFailure | OpKind::FailNext));
                        }
                    }
                    match m.decode_op(&data, &mut pos) {
                        Some(op) => m.apply_traced(&op),
                        None => break,
                    }
                }
            }
        }
        assert!(checked > 4_000, "{checked}");
        assert!(injected > 200, "{injected}");
    }
}
