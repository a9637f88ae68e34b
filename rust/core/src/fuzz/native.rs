//! The native engine: a generate-and-mutate loop inside Rust.
//!
//! It is the quick default and the speed baseline for the Python-driven
//! engines. Programs are byte strings run through the total decoder (so any
//! mutation is a valid program), each with a *swarm configuration*: a random
//! subset of the action kinds the decoder may use and a random non-empty
//! subset of the device types in the campaign (one machine per type
//! subset). Swarm testing (Groce et al., ISSTA 2012) finds more bugs than
//! always offering everything, because leaving kinds out lets the others
//! build deeper states (no `munmap` undoing each fault, no `exit_mmap`
//! wiping the page tables) — and a finding on a one-type machine is already
//! small.
//!
//! Guidance is model-level coverage ([`super::coverage`]): a program that
//! produces an abstract state transition never seen before joins the
//! corpus; later programs are mostly mutations of corpus entries (byte
//! edits, insertions, deletions, duplicated ranges, splices) and sometimes
//! fresh random programs.
//!
//! Hot path: one reusable buffer per candidate, machines reused with
//! `reset`, coverage in a fixed bitmap — nothing is allocated per executed
//! program unless it joins the corpus or is a new finding. Deterministic: the
//! same seed gives the same programs in the same order.

use super::coverage::{Coverage, Snapshot};
use super::rng::Rng;
use crate::config::{Config, Shape};
use crate::machine::Machine;
use crate::oracle::Class;
use crate::program::op::{KindSet, Op, KINDS};
use crate::program::Program;
use crate::rules::{DeviceType, Rules};
use crate::signature::Signature;
use std::time::Instant;

/// What to fuzz.
#[derive(Clone, Debug)]
pub struct NativeConfig {
    pub rules: Rules,
    /// the campaign's device types; each program runs on a subset of them
    pub types: Vec<DeviceType>,
    /// shape of every machine, but for its types
    pub shape: Shape,
    pub seed: u64,
    /// most actions a program runs (the drain comes on top)
    pub max_actions: usize,
    /// use swarm configurations (else every program may use every kind
    /// and runs on all the types)
    pub swarm: bool,
}

impl NativeConfig {
    pub fn new(rules: Rules, types: Vec<DeviceType>, seed: u64) -> NativeConfig {
        NativeConfig { rules, types, shape: Shape::default(), seed, max_actions: 64, swarm: true }
    }
}

/// A corpus entry: bytes plus their swarm configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub data: Vec<u8>,
    pub kinds: KindSet,
    /// index into the engine's type subsets
    pub subset: usize,
}

/// A new signature found by the engine.
#[derive(Clone, Debug)]
pub struct Finding {
    pub signature: Signature,
    pub class: Class,
    /// the program as decoded (every action enabled; replays as is)
    pub program: Program,
    /// executions before it, counted from the engine's start
    pub exec: u64,
    /// seconds since the engine started
    pub seconds: f64,
    /// the violation's message
    pub message: String,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub execs: u64,
    /// actions executed, drains included
    pub steps: u64,
    pub corpus: usize,
    pub edges: usize,
    pub findings: usize,
    /// programs that broke an invariant (known signatures included)
    pub violations: u64,
}

pub struct NativeFuzzer {
    cfg: NativeConfig,
    /// type subsets: bit i = cfg.types[i]
    subsets: Vec<Vec<DeviceType>>,
    machines: Vec<Machine>,
    corpus: Vec<Entry>,
    /// corpus entries added since the last `take_new_entries`
    fresh: usize,
    cov: Coverage,
    rng: Rng,
    known: Vec<Signature>,
    buf: Vec<u8>,
    stats: Stats,
    started: Instant,
}

/// Largest corpus kept (beyond it, new entries replace random old ones).
const MAX_CORPUS: usize = 20_000;

impl NativeFuzzer {
    pub fn new(cfg: NativeConfig) -> Result<NativeFuzzer, crate::config::ConfigError> {
        if cfg.types.is_empty() {
            return Err(crate::config::ConfigError("at least one device type is needed".into()));
        }
        if cfg.max_actions == 0 || cfg.max_actions > 4096 {
            return Err(crate::config::ConfigError(format!(
                "max_actions must be between 1 and 4096, got {}",
                cfg.max_actions
            )));
        }
        let mut types = Vec::new();
        for t in &cfg.types {
            if !types.contains(t) {
                types.push(*t);
            }
        }
        let n = types.len();
        let mut subsets = Vec::new();
        let mut machines = Vec::new();
        for bits in 1usize..(1 << n) {
            let sub: Vec<DeviceType> = (0..n).filter(|i| bits >> i & 1 == 1).map(|i| types[i]).collect();
            let mut shape = Shape { types: sub.clone(), ..cfg.shape.clone() };
            if !sub.contains(&DeviceType::Generic) {
                // a PMD-aligned device-dax device needs one
                shape.devdax_pmd = 0;
            }
            if !sub.contains(&DeviceType::Fsdax) {
                // PMD-sized FS-DAX entries need a filesystem
                shape.fsdax_pmd = 0;
            }
            machines.push(Machine::new(Config::with_shape(cfg.rules.clone(), shape))?);
            subsets.push(sub);
        }
        let max = cfg.max_actions.max(1);
        Ok(NativeFuzzer {
            rng: Rng::new(cfg.seed),
            cfg: NativeConfig { types, max_actions: max, ..cfg },
            subsets,
            machines,
            corpus: Vec::new(),
            fresh: 0,
            cov: Coverage::new(),
            known: Vec::new(),
            buf: Vec::with_capacity(max * 8),
            stats: Stats::default(),
            started: Instant::now(),
        })
    }

    pub fn stats(&self) -> Stats {
        Stats { corpus: self.corpus.len(), edges: self.cov.count(), ..self.stats }
    }

    pub fn rules_name(&self) -> &str {
        &self.cfg.rules.name
    }

    /// A signature found before (a resumed campaign): not reported again.
    pub fn add_known(&mut self, s: Signature) {
        if !self.known.contains(&s) {
            self.known.push(s);
        }
    }

    /// The index of the machine whose shape is `shape`, if any.
    fn subset_of_shape(&self, shape: &Shape) -> Option<usize> {
        self.machines.iter().position(|m| m.cfg.shape == *shape)
    }

    /// Seed the corpus with a program (a hand-written seed or an earlier
    /// reproducer). Only programs whose shape is one of the engine's
    /// machines' and whose actions are all enabled are taken; returns
    /// whether it was.
    pub fn add_program(&mut self, p: &Program) -> bool {
        let Some(i) = self.subset_of_shape(&p.shape) else { return false };
        let m = &mut self.machines[i];
        if m.run(&p.ops).is_err() {
            return false;
        }
        let data = m.encode_program(&p.ops);
        self.add_entry(Entry { data, kinds: KindSet::ALL, subset: i })
    }

    /// Run an entry (a saved corpus file) and keep it if it covers new edges.
    pub fn add_entry(&mut self, e: Entry) -> bool {
        if e.subset >= self.machines.len() || e.kinds.is_empty() {
            return false;
        }
        self.buf.clear();
        self.buf.extend_from_slice(&e.data);
        let (new, _) = self.exec(e.kinds, e.subset);
        self.stats.execs += 1;
        if new > 0 {
            self.push_corpus(Entry { data: self.buf.clone(), ..e });
        }
        new > 0
    }

    /// Corpus entries added since the last call, serialized (see
    /// [`NativeFuzzer::encode_entry`]), so a campaign can persist them.
    pub fn take_new_entries(&mut self) -> Vec<Vec<u8>> {
        let start = self.corpus.len().saturating_sub(self.fresh);
        self.fresh = 0;
        self.corpus[start..].iter().map(|e| self.encode_entry(e)).collect()
    }

    /// An entry as bytes: format byte 1, the device types as bits of
    /// `DeviceType::ALL`, the kind set (16 bytes, little-endian), the data.
    /// Independent of this engine's type order, so a campaign resumed with
    /// other `--types` still reads it.
    pub fn encode_entry(&self, e: &Entry) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + e.data.len());
        out.push(1);
        let mut tb = 0u8;
        for t in &self.subsets[e.subset] {
            tb |= 1 << (DeviceType::ALL.iter().position(|x| x == t).unwrap_or(0));
        }
        out.push(tb);
        out.extend_from_slice(&e.kinds.0.to_le_bytes());
        out.extend_from_slice(&e.data);
        out
    }

    /// Inverse of [`NativeFuzzer::encode_entry`]; None when the entry's types
    /// are not a subset of this engine's.
    pub fn decode_entry(&self, b: &[u8]) -> Option<Entry> {
        if b.len() < 18 || b[0] != 1 {
            return None;
        }
        let types: Vec<DeviceType> =
            DeviceType::ALL.iter().enumerate().filter(|(i, _)| b[1] >> i & 1 == 1).map(|(_, t)| *t).collect();
        let subset = self.subsets.iter().position(|s| s.len() == types.len() && types.iter().all(|t| s.contains(t)))?;
        let mut k = [0u8; 16];
        k.copy_from_slice(&b[2..18]);
        let kinds = KindSet(u128::from_le_bytes(k) & KindSet::ALL.0);
        Some(Entry { data: b[18..].to_vec(), kinds, subset })
    }

    /// The program a saved entry decodes to, as this engine decodes it (with
    /// the entry's kind set on the machine of its device types); None when
    /// the entry does not fit this engine. Lets a tool outside the engine
    /// (the lab's kernel fuzzer) read the programs a campaign kept.
    pub fn entry_program(&mut self, b: &[u8]) -> Option<Program> {
        let e = self.decode_entry(b)?;
        self.buf.clear();
        self.buf.extend_from_slice(&e.data);
        let ops = self.decode_ops(e.kinds, e.subset);
        let shape = self.machines[e.subset].cfg.shape.clone();
        Some(Program::new(&self.cfg.rules.name, shape, ops))
    }

    fn push_corpus(&mut self, e: Entry) {
        if self.corpus.len() < MAX_CORPUS {
            self.corpus.push(e);
            self.fresh += 1;
        } else {
            let i = self.rng.below(self.corpus.len());
            self.corpus[i] = e;
        }
    }

    /// Run `self.buf` on machine `subset` with kinds `kinds`: returns (new
    /// edges, whether the verdict reports a violation). The machine keeps the
    /// run's state for the caller to inspect.
    fn exec(&mut self, kinds: KindSet, subset: usize) -> (usize, bool) {
        let m = &mut self.machines[subset];
        m.reset();
        let mut snap = Snapshot::take(m);
        let mut pos = 0;
        let mut n = 0;
        let mut new = 0;
        while m.violation.is_none() && n < self.cfg.max_actions {
            let Some(op) = m.decode_op_in(&self.buf, &mut pos, kinds) else { break };
            m.apply_traced(&op);
            new += snap.advance(m, op.kind, &mut self.cov);
            n += 1;
        }
        m.finish();
        self.stats.steps += m.steps() as u64;
        (new, m.violation.is_some() || m.conformance.is_some())
    }

    /// The actions `self.buf` decodes to (for a finding).
    fn decode_ops(&mut self, kinds: KindSet, subset: usize) -> Vec<Op> {
        let m = &mut self.machines[subset];
        m.reset();
        let mut ops = Vec::new();
        let mut pos = 0;
        while m.violation.is_none() && ops.len() < self.cfg.max_actions {
            let Some(op) = m.decode_op_in(&self.buf, &mut pos, kinds) else { break };
            m.apply_traced(&op);
            ops.push(op);
        }
        ops
    }

    /// A random swarm configuration.
    fn swarm(&mut self) -> (KindSet, usize) {
        let subset = self.rng.below(self.subsets.len());
        if !self.cfg.swarm || self.rng.chance(1, 4) {
            return (KindSet::ALL, if self.cfg.swarm { subset } else { self.subsets.len() - 1 });
        }
        let mut k = KindSet::EMPTY;
        for info in KINDS {
            if self.rng.chance(1, 2) {
                k.insert(info.kind);
            }
        }
        if k.is_empty() {
            k = KindSet::ALL;
        }
        (k, subset)
    }

    /// Fill `self.buf` with a fresh random program.
    fn generate(&mut self) {
        self.buf.clear();
        // about 3.5 bytes per action; programs of any length up to the cap
        let len = 1 + self.rng.below(self.cfg.max_actions * 4);
        for _ in 0..len {
            let b = self.rng.byte();
            self.buf.push(b);
        }
    }

    /// Fill `self.buf` with a mutation of corpus entry `i`.
    fn mutate(&mut self, i: usize) {
        self.buf.clear();
        self.buf.extend_from_slice(&self.corpus[i].data);
        let cap = self.cfg.max_actions * 8;
        let rounds = 1 + self.rng.below(4);
        for _ in 0..rounds {
            let len = self.buf.len();
            match self.rng.below(8) {
                // overwrite a byte
                0 | 1 if len > 0 => {
                    let p = self.rng.below(len);
                    self.buf[p] = self.rng.byte();
                }
                // nudge a byte (next operand / next kind)
                2 if len > 0 => {
                    let p = self.rng.below(len);
                    let d = if self.rng.chance(1, 2) { 1 } else { 255 };
                    self.buf[p] = self.buf[p].wrapping_add(d);
                }
                // insert random bytes
                3 if len < cap => {
                    let p = self.rng.below(len + 1);
                    let n = 1 + self.rng.below(8);
                    for j in 0..n {
                        let b = self.rng.byte();
                        self.buf.insert(p + j, b);
                    }
                }
                // delete a range
                4 if len > 1 => {
                    let p = self.rng.below(len);
                    let n = (1 + self.rng.below(8)).min(len - p);
                    self.buf.drain(p..p + n);
                }
                // duplicate a range (repeat a step, a GUP, ...)
                5 if len > 0 && len < cap => {
                    let p = self.rng.below(len);
                    let n = (1 + self.rng.below(12)).min(len - p);
                    let at = self.rng.below(len + 1);
                    for j in 0..n {
                        let b = self.buf[p + j];
                        self.buf.insert(at + j, b);
                    }
                }
                // splice: our prefix, another entry's suffix
                6 if self.corpus.len() > 1 => {
                    let o = self.rng.below(self.corpus.len());
                    let cut = self.rng.below(len + 1);
                    self.buf.truncate(cut);
                    let other = &self.corpus[o].data;
                    let from = self.rng.below(other.len() + 1);
                    self.buf.extend_from_slice(&other[from..]);
                }
                // append random bytes (grow the story)
                _ if len < cap => {
                    let n = 1 + self.rng.below(16);
                    for _ in 0..n {
                        let b = self.rng.byte();
                        self.buf.push(b);
                    }
                }
                _ => {}
            }
        }
        self.buf.truncate(cap);
    }

    /// Run up to `max_execs` programs, or until `deadline`; returns the new
    /// signatures found, in the order found.
    pub fn run(&mut self, max_execs: u64, deadline: Option<Instant>) -> Vec<Finding> {
        let mut out = Vec::new();
        for i in 0..max_execs {
            if i % 64 == 0 {
                if let Some(d) = deadline {
                    if Instant::now() >= d {
                        break;
                    }
                }
            }
            let (kinds, subset) = if self.corpus.is_empty() || self.rng.chance(1, 8) {
                let c = self.swarm();
                self.generate();
                c
            } else {
                let e = self.rng.below(self.corpus.len());
                self.mutate(e);
                let (mut k, s) = (self.corpus[e].kinds, self.corpus[e].subset);
                // now and then move the entry to another swarm configuration
                if self.cfg.swarm && self.rng.chance(1, 16) {
                    let kind = KINDS[self.rng.below(KINDS.len())].kind;
                    if k.contains(kind) && k.len() > 1 {
                        k.remove(kind)
                    } else {
                        k.insert(kind)
                    }
                }
                (k, s)
            };
            let (new, violated) = self.exec(kinds, subset);
            self.stats.execs += 1;
            if new > 0 {
                self.push_corpus(Entry { data: self.buf.clone(), kinds, subset });
            }
            if violated {
                self.stats.violations += 1;
                self.check_finding(kinds, subset, &mut out);
            }
        }
        out
    }

    fn check_finding(&mut self, kinds: KindSet, subset: usize, out: &mut Vec<Finding>) {
        let m = &mut self.machines[subset];
        let v = m.verdict();
        let Some(sig) = m.signature_of(&v) else { return };
        if self.known.contains(&sig) {
            return;
        }
        let r = v.reported().cloned();
        self.known.push(sig.clone());
        let ops = self.decode_ops(kinds, subset);
        let shape = self.machines[subset].cfg.shape.clone();
        let r = r.expect("a signature comes from a reported violation");
        self.stats.findings += 1;
        out.push(Finding {
            signature: sig,
            class: r.class(),
            program: Program::new(&self.cfg.rules.name, shape, ops),
            exec: self.stats.execs,
            seconds: self.started.elapsed().as_secs_f64(),
            message: r.message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(seed: u64) -> NativeFuzzer {
        NativeFuzzer::new(NativeConfig::new(Rules::preset("p20").unwrap(), DeviceType::DEFAULT.to_vec(), seed)).unwrap()
    }

    #[test]
    fn same_seed_same_findings_in_the_same_order() {
        let (mut a, mut b) = (engine(3), engine(3));
        let fa: Vec<(String, u64, Vec<Op>)> =
            a.run(3000, None).into_iter().map(|f| (f.signature.to_string(), f.exec, f.program.ops)).collect();
        let fb: Vec<(String, u64, Vec<Op>)> =
            b.run(3000, None).into_iter().map(|f| (f.signature.to_string(), f.exec, f.program.ops)).collect();
        assert!(!fa.is_empty());
        assert_eq!(fa, fb);
        assert_eq!(a.stats(), b.stats());
    }

    #[test]
    fn findings_replay_to_their_signature() {
        let mut e = engine(11);
        let found = e.run(3000, None);
        assert!(!found.is_empty());
        for f in found {
            let mut m =
                Machine::new(Config::with_shape(Rules::preset("p20").unwrap(), f.program.shape.clone())).unwrap();
            let v = m.run(&f.program.ops).unwrap_or_else(|(i, e)| panic!("{}: action {i}: {e}", f.signature));
            assert_eq!(m.signature_of(&v), Some(f.signature.clone()));
        }
    }

    #[test]
    fn entries_round_trip_through_bytes() {
        let mut e = engine(5);
        e.run(200, None);
        let saved = e.take_new_entries();
        for b in &saved {
            let p = e.entry_program(b).expect("a saved entry decodes on the engine that saved it");
            assert!(!p.ops.is_empty());
        }
        assert!(e.entry_program(&[2, 0, 0]).is_none());
        assert!(!saved.is_empty());
        assert!(e.take_new_entries().is_empty());
        let back: Vec<Entry> = saved.iter().map(|b| e.decode_entry(b).unwrap()).collect();
        assert_eq!(back[..], e.corpus[..back.len()]);
        // a fresh engine seeded with them covers the same edges
        let mut f = engine(99);
        for b in &saved {
            let en = f.decode_entry(b).unwrap();
            f.add_entry(en);
        }
        assert_eq!(f.cov.count(), e.cov.count());
    }
}
