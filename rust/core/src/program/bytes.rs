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

use super::op::{Dim, KindSet, Op, OpKind, KINDS, MAX_ARGS};
use crate::machine::{Machine, Verdict};
use crate::page::PG_LOCKED;
use crate::pgmap::PgmapState;
use crate::rules::DeviceType;

#[inline]
fn width(dim: Dim, m: &Machine) -> usize {
    if dim.size(&m.layout) > 256 {
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
            let sizes = info.args.iter().map(|(_, d)| d.size(&self.layout));
            let mut total = 1usize;
            let mut start = 0usize;
            for (i, n) in sizes.enumerate() {
                total *= n;
                start = start * n + if dk == 0 { first[i] } else { 0 };
            }
            for j in 0..total {
                let op = self.op_at(info.kind, (start + j) % total);
                if self.enabled(&op).is_ok() {
                    return Some(op);
                }
            }
        }
        None
    }

    /// A cheap necessary condition for any action of `kind` to be enabled,
    /// so the decoder skips hopeless kinds without scanning their operands.
    pub(crate) fn kind_possible(&self, kind: OpKind) -> bool {
        use OpKind::*;
        let l = &self.layout;
        match kind {
            Step => self.s.tasks.iter().any(|t| t.is_some()),
            RcuGracePeriod => self.any_switch_pending(),
            PutDevPagemap => self.s.ledger.kernel_pgmap_refs.iter().any(|&n| n > 0),
            FreeDevicePage | LockPage | UnlockPage => self.s.ledger.pages.iter().any(|h| h.driver),
            // the kinds with hundreds of operand combinations: a scan of
            // them all for nothing is what made swarm programs slow
            MigrateVmaInsertPage => (0..l.npfns).any(|p| self.s.ledger.pages[p].driver && self.s.flags[p] & PG_LOCKED != 0),
            DevDaxFault => self.any_live(DeviceType::Generic),
            P2pmemAllocMmap => self.rules.p2p.userspace_mmap && self.any_live(DeviceType::P2pdma),
            PciFreeP2pmem | GetPage => self.s.ledger.p2p_allocs.iter().any(|&n| n > 0),
            PutPage => self.s.ledger.pages.iter().any(|h| h.gup_gets > 0 || h.kernel_gets > 0),
            UnpinUserPage => self.s.ledger.pages.iter().any(|h| h.gup_pins > 0),
            DaxIomapFault | Truncate => self.s.dax.iter().any(|&e| e > 0),
            DaxAssociateEntry => l.nfiles > 0,
            Munmap | GetUserPages | PinUserPages => self.s.ptes.iter().any(|p| *p != crate::page::Pte::None),
            _ => true,
        }
    }

    /// Some pgmap of type `t` is registered and not unbinding.
    fn any_live(&self, t: DeviceType) -> bool {
        (0..self.layout.npgmaps).any(|g| self.layout.pgmap_type[g] == t && self.s.pgmaps[g].state == PgmapState::Live)
    }

    /// Append the bytes that decode to `op` (when it is enabled).
    pub fn encode_op(&self, op: &Op, out: &mut Vec<u8>) {
        out.push(op.kind as u8);
        let info = op.kind.info();
        for (i, (_, d)) in info.args.iter().enumerate() {
            let idx = d.index(op.args[i], &self.layout).unwrap_or(0);
            out.push(idx as u8);
            if width(*d, self) == 2 {
                out.push((idx >> 8) as u8);
            }
        }
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
        let mut out = Vec::with_capacity(ops.len() * 4);
        for op in ops {
            self.encode_op(op, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::fuzz::Rng;
    use crate::program::op::KINDS;
    use crate::{Config, Machine, Rules};

    /// `kind_possible` only skips kinds with no enabled action: it is a
    /// necessary condition, checked on the states random programs reach.
    #[test]
    fn kind_possible_never_hides_an_enabled_action() {
        let mut rng = Rng::new(9);
        let mut checked = 0;
        for preset in ["e1", "e3", "e4", "p20"] {
            let mut m = Machine::new(Config::new(Rules::preset(preset).unwrap())).unwrap();
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
    }
}
