//! Exhaustive bounded exploration: every program of up to `depth` actions.
//!
//! A breadth-first search from the initial state over every action the
//! actors may take ([`Machine::enabled`], enumerated through the [`KINDS`]
//! table, so new action kinds are explored without touching this file;
//! under the symmetry reduction, one action per class of actions that lead
//! to equivalent states, see `actions`).
//! Each distinct state — by its fingerprint ([`crate::fingerprint`]), exact or
//! up to symmetry — is expanded once. Every invariant the fuzzers check is
//! checked: safety and conformance inside each action, and liveness by
//! running the end-of-program drain ([`Machine::finish`]) from every new
//! state, exactly as a fuzzed program of those actions would end. The
//! answer is therefore either "no program of at most `depth` actions breaks
//! an invariant" or the shortest one that does, with its replayed verdict.
//!
//! # The search
//!
//! Level-synchronous, so that the numbers do not depend on thread timing.
//! For each level, on all threads:
//!
//! * **expand** — each frontier state is decoded into a machine, its enabled
//!   actions are applied one by one to a copy (no allocation per
//!   transition), and each successor that is not already in the visited set
//!   becomes a candidate `(fingerprint, key)`, where the key
//!   `parent index << 24 | action ordinal` is the successor's place in BFS
//!   order. A violation inside an action is a counterexample candidate.
//! * **merge** — the visited set is split into shards by fingerprint; each
//!   shard keeps, per new fingerprint, the smallest key. The winners, sorted
//!   by key, are the next level: the same states in the same order for any
//!   number of threads.
//! * **store** — each winner is regenerated from its parent, stored as
//!   compact bytes, and drained to check liveness.
//!
//! The first level with a violation ends the search; the counterexample is
//! the violating transition with the smallest key, rebuilt by following
//! parent keys back to the initial state and replayed with tracing.
//!
//! Violations whose signature is in [`Options::ignore`] (bugs a baseline
//! already has, or that the user has seen) do not end the search: a
//! transition that breaks only ignored invariants is pruned (every longer
//! program through it would report that violation first), and a state whose
//! drain breaks only ignored ones stays in the frontier. The counterexample
//! is then the shortest program whose violation is not ignored.
//!
//! # Memory
//!
//! The visited set holds one 64-bit fingerprint per state (hash
//! compaction: two distinct states share one with probability about
//! 2⁻⁶⁴ per pair, reported as a bound); each state keeps its 8-byte key for
//! the path; only the current and next frontier keep full states. A cap
//! stops the search cleanly (partial result). Bit-state hashing replaces the
//! visited set by a bit array: far less memory, but a new state whose bits
//! are all set already is skipped; the result says so and estimates how many.

use crate::config::{Config, ConfigError, MAX_CPUS};
use crate::fingerprint::{hash_words, Canon, Reduction};
use crate::independence::{independent, Footprint};
use crate::machine::{Machine, State, Verdict};
use crate::memory::{self, growth_bytes, table_bytes, vec_growth_bytes};
use crate::program::op::{Dim, Op, KINDS, MAX_ARGS};
use crate::program::Program;
use crate::signature::{signature, Signature};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// Bits of a key that hold the action's ordinal among its parent's enabled
/// actions; the rest is the parent's index in its level.
const ORD_BITS: u32 = 24;
/// States per frontier chunk (the unit of work and of storage).
const CHUNK: usize = 1024;
/// Shards of the visited set (merged in parallel).
const SHARDS: usize = 64;
/// Entries of a worker's cache of recently handled fingerprints.
const RECENT: usize = 1 << 15;
/// Hash functions of bit-state mode.
const BIT_HASHES: u32 = 3;

/// What to explore and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// longest program (number of actions) to explore
    pub depth: usize,
    /// worker threads; 0 = one per available core
    pub threads: usize,
    /// exact states, or one state per symmetry class
    pub reduction: Reduction,
    /// stop (with a partial result) before the process holds more than this
    /// many bytes (its resident set, with what is about to be allocated)
    pub max_memory: u64,
    /// bit-state hashing with a bit array of this many bytes (None: exact
    /// visited set of 64-bit fingerprints)
    pub bitstate_bytes: Option<u64>,
    /// stop (with a partial result) after this many seconds
    pub max_seconds: Option<f64>,
    /// violations to explore past: (invariant, action kind, device type);
    /// an empty `rules` matches any rules
    pub ignore: Vec<Signature>,
    /// partial-order reduction (sleep sets, docs/model.md §10.6): the same
    /// states at the same depths and the same verdict, fewer transitions
    pub por: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            depth: 8,
            threads: 0,
            reduction: Reduction::Symmetry,
            max_memory: 4 << 30,
            bitstate_bytes: None,
            max_seconds: None,
            ignore: Vec::new(),
            por: false,
        }
    }
}

impl Options {
    /// The options every search needs: a bit-state array of at least 512
    /// bytes that fits under the memory cap.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.por && !self.ignore.is_empty() {
            // a pruned (ignored) transition is not explored, so it cannot
            // stand for the commuted order a sleep set skips (§10.6)
            return Err(ConfigError("partial-order reduction (por) cannot be combined with ignored signatures".into()));
        }
        if let Some(s) = self.max_seconds {
            if !(s.is_finite() && s >= 0.0) {
                return Err(ConfigError(format!("max_seconds must be a finite number of seconds >= 0, got {s}")));
            }
        }
        if let Some(b) = self.bitstate_bytes {
            if b < 512 {
                return Err(ConfigError("bitstate needs at least 512 bytes".into()));
            }
            if b > self.max_memory {
                return Err(ConfigError(format!(
                    "the bit-state array ({b} bytes) is larger than the memory cap ({} bytes)",
                    self.max_memory
                )));
            }
        }
        Ok(())
    }
}

/// A size such as "4096", "512M" or "4G" (K, M, G, T: powers of 1024);
/// `what` names the option in the error.
pub fn parse_size(s: &str, what: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(ConfigError(format!("{what}: unknown unit in {s:?} (K, M, G, T)"))),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| ConfigError(format!("{what}: not a size: {s:?}")))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(ConfigError(format!("{what}: not a size: {s:?}")));
    }
    Ok((n * mult as f64) as u64)
}

/// Shared with the caller while the search runs: a stop request (Ctrl-C)
/// and live progress counters.
#[derive(Debug, Default)]
pub struct Control {
    stop: AtomicBool,
    /// depth of the level being generated
    pub depth: AtomicUsize,
    /// states of the level being expanded
    pub frontier: AtomicU64,
    /// of which expanded so far
    pub expanded: AtomicU64,
    /// distinct states in the completed levels
    pub states: AtomicU64,
    /// transitions so far, the current level's included
    pub transitions: AtomicU64,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }
    /// Ask the search to stop soon; it returns the partial result.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

/// Why the search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// every program of up to `depth` actions was explored
    Depth,
    /// no new state at some depth below the limit: every reachable state was
    /// explored (a result for programs of any length)
    Exhausted,
    /// a counterexample was found
    Violation,
    /// [`Control::stop`] was called
    Interrupted,
    /// the memory cap was reached
    MemoryCap,
    /// the time limit was reached
    TimeLimit,
}

impl StopReason {
    pub const fn name(self) -> &'static str {
        match self {
            StopReason::Depth => "depth",
            StopReason::Exhausted => "exhausted",
            StopReason::Violation => "violation",
            StopReason::Interrupted => "interrupted",
            StopReason::MemoryCap => "memory",
            StopReason::TimeLimit => "time",
        }
    }
    /// Did the search explore everything it was asked to?
    pub fn complete(self) -> bool {
        matches!(self, StopReason::Depth | StopReason::Exhausted | StopReason::Violation)
    }
}

/// One completed level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    pub depth: usize,
    /// distinct states first reached at this depth
    pub new_states: u64,
    /// distinct states at depth ≤ this one
    pub states: u64,
    /// transitions explored to reach this depth (cumulative)
    pub transitions: u64,
}

/// How much the visited set can be trusted.
#[derive(Clone, Debug, PartialEq)]
pub enum Coverage {
    /// 64-bit fingerprints: `collision_bound` bounds the probability that two
    /// distinct states shared one (so that one was never explored)
    Exact { collision_bound: f64 },
    /// bit-state hashing: not a proof
    Bitstate {
        bits: u64,
        hashes: u32,
        /// fraction of bits set at the end
        fill: f64,
        /// estimated new states skipped because their bits were already set
        expected_missed: f64,
    },
}

/// The shortest program that breaks an invariant, and its traced verdict.
#[derive(Clone, Debug)]
pub struct Counterexample {
    pub program: Program,
    pub verdict: Verdict,
}

/// The search's result.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub stop: StopReason,
    /// distinct states (fingerprints) in the completed levels
    pub states: u64,
    /// (state, enabled action) pairs explored in the completed levels
    pub transitions: u64,
    /// of the pairs not explored, those a sleep set skipped (partial-order
    /// reduction; 0 without it)
    pub slept: u64,
    /// the deepest level completely explored
    pub depth_reached: usize,
    pub depth_limit: usize,
    pub seconds: f64,
    pub levels: Vec<Level>,
    pub counterexample: Option<Counterexample>,
    pub coverage: Coverage,
    pub reduction: Reduction,
    pub threads: usize,
    /// the process's peak resident set (bytes, `VmHWM`); without procfs, the
    /// largest estimate of the explorer's own structures
    pub peak_memory: u64,
    /// (states expanded, of) in the level that was cut short
    pub partial: Option<(u64, u64)>,
}

impl Outcome {
    /// One line for people, as the CLI prints it.
    pub fn summary(&self) -> String {
        let slept =
            if self.slept > 0 { format!(" (+{} slept: partial-order reduction)", self.slept) } else { String::new() };
        let counts = format!(
            "{} distinct states, {} transitions{slept}, {:.2} seconds",
            self.states, self.transitions, self.seconds
        );
        let head = match (&self.counterexample, self.stop) {
            (Some(c), _) => {
                let v = c.verdict.reported();
                let (inv, class) = v.map_or(("?", "?"), |v| (v.invariant.id(), v.class().name()));
                format!("{inv} ({class}) reachable in {} actions (shortest) — {counts}", c.program.ops.len())
            }
            (None, StopReason::Exhausted) => format!(
                "no violation reachable at any depth: no new state after depth {} — {counts}",
                self.depth_reached
            ),
            (None, StopReason::Depth | StopReason::Violation) => {
                format!("no violation reachable within depth {} — {counts}", self.depth_reached)
            }
            (None, why) => {
                let (done, of) = self.partial.unwrap_or((0, 0));
                format!(
                    "stopped ({}) at depth {} after expanding {done} of {of} states: no violation within depth {} — {counts}",
                    match why {
                        StopReason::Interrupted => "interrupted",
                        StopReason::MemoryCap => "memory cap reached",
                        _ => "time limit reached",
                    },
                    self.depth_reached + 1,
                    self.depth_reached
                )
            }
        };
        let note = match self.coverage {
            Coverage::Exact { collision_bound } => {
                format!("64-bit state fingerprints: P(a collision hid a state) ≤ {collision_bound:.1e}")
            }
            Coverage::Bitstate { bits, fill, expected_missed, .. } => format!(
                "bit-state hashing ({} MiB, {:.1}% full): NOT a proof — about {:.0} new states may have been skipped (coverage ≈ {:.2}%)",
                bits / 8 / (1 << 20),
                fill * 100.0,
                expected_missed,
                100.0 * self.states as f64 / (self.states as f64 + expected_missed).max(1.0)
            ),
        };
        format!("{head}\n({note})")
    }
}

/// A search that cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExploreError {
    /// the machine or the options are out of range
    Config(ConfigError),
    /// the search broke a promise of its own (never the caller's input)
    Internal(String),
}

impl std::fmt::Display for ExploreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExploreError::Config(e) => e.fmt(f),
            ExploreError::Internal(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ExploreError {}

// ----------------------------------------------------------------------
// Enumerating actions without allocating
// ----------------------------------------------------------------------

impl Machine {
    /// Every enabled action for which `keep` holds, in canonical order
    /// (kind, then operands), into `out` (cleared first; no allocation once
    /// it has grown). With `cpu0_only`, operands of domain `Cpu` take only the
    /// value 0. `keep` is asked before the (costlier) contract check.
    pub fn enabled_into(&self, cpu0_only: bool, keep: impl Fn(&Op) -> bool, out: &mut Vec<Op>) {
        out.clear();
        for info in KINDS {
            if !self.kind_possible(info.kind) {
                continue;
            }
            // an odometer over the operand domains, last operand fastest
            // (the canonical order of `enabled_actions`)
            let nargs = info.args.len();
            let mut sizes = [1usize; MAX_ARGS];
            for (i, (_, d)) in info.args.iter().enumerate() {
                sizes[i] = if cpu0_only && *d == Dim::Cpu { 1 } else { d.size(&self.layout) };
            }
            if sizes.contains(&0) {
                continue;
            }
            let mut idx = [0usize; MAX_ARGS];
            let mut op = Op { kind: info.kind, args: [0; MAX_ARGS] };
            for (i, (_, d)) in info.args.iter().enumerate() {
                op.args[i] = d.value(0);
            }
            'odometer: loop {
                if keep(&op) && self.enabled(&op).is_ok() {
                    out.push(op);
                }
                let mut i = nargs;
                loop {
                    if i == 0 {
                        break 'odometer;
                    }
                    i -= 1;
                    idx[i] += 1;
                    if idx[i] < sizes[i] {
                        op.args[i] = info.args[i].1.value(idx[i]);
                        break;
                    }
                    idx[i] = 0;
                    op.args[i] = info.args[i].1.value(0);
                }
            }
        }
    }

    /// Become `src`, ready for the next action: the bookkeeping outside
    /// [`State`] (violations, the drain flags) is cleared.
    fn load_state(&mut self, src: &State) {
        self.s.copy_from(src);
        self.clear_run_flags();
    }

    fn clear_run_flags(&mut self) {
        self.violation = None;
        self.conformance = None;
        self.in_drain = false;
        self.in_drain_step = false;
        self.at_label = None;
        self.at_op = None;
        self.at = 0;
        self.in_gup_grab = false;
    }

    fn broken(&self) -> bool {
        self.violation.is_some() || self.conformance.is_some()
    }

    /// Broken by a violation whose signature is not in `ignore`.
    fn breaks(&self, ignore: &[Signature]) -> bool {
        if ignore.is_empty() {
            return self.broken();
        }
        let counts = |v: &Option<crate::oracle::Violation>| {
            v.as_ref().is_some_and(|v| !is_ignored(&signature(&self.layout, &self.rules.name, v), ignore))
        };
        counts(&self.violation) || counts(&self.conformance)
    }
}

/// `sig` is in `ignore` (an entry with empty `rules` matches any rules).
pub fn is_ignored(sig: &Signature, ignore: &[Signature]) -> bool {
    ignore.iter().any(|i| {
        i.invariant == sig.invariant
            && i.kind == sig.kind
            && i.device == sig.device
            && (i.rules.is_empty() || i.rules == sig.rules)
    })
}

/// The actions to explore from `m`'s state: all enabled ones, or under
/// [`Reduction::Symmetry`] one per class of actions that lead to equivalent
/// states — CPU operands 0 only (the CPU is forgotten), and page operands
/// only on the first of several interchangeable pages
/// ([`Canon::action_representative`]). Skipped actions would only add
/// transitions to states their representative already reaches.
fn actions(m: &Machine, reduction: Reduction, canon: &mut Canon, out: &mut Vec<Op>) {
    match reduction {
        Reduction::None => m.enabled_into(false, |_| true, out),
        Reduction::Symmetry => {
            canon.prepare_actions(&m.s, &m.layout);
            let canon = &*canon;
            m.enabled_into(true, |op| canon.action_representative(op, &m.layout), out);
        }
    }
}

// ----------------------------------------------------------------------
// Storage
// ----------------------------------------------------------------------

/// Fingerprints are already uniform hashes; spread them once more so that
/// the shard bits (the top ones) do not bias the table's own bits.
#[derive(Default)]
struct FpHasher(u64);

impl Hasher for FpHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type FpBuild = BuildHasherDefault<FpHasher>;

#[inline]
fn shard_of(fp: u64) -> usize {
    (fp >> 58) as usize % SHARDS
}

/// One shard of the visited set.
enum Shard {
    Exact(HashSet<u64, FpBuild>),
    Bits(Vec<u64>),
}

impl Shard {
    fn bit_positions(fp: u64, nbits: u64) -> [u64; BIT_HASHES as usize] {
        let h2 = hash_words(&[fp], 0x5eed) | 1;
        let mut out = [0; BIT_HASHES as usize];
        for (j, o) in out.iter_mut().enumerate() {
            *o = fp.wrapping_add((j as u64).wrapping_mul(h2)) % nbits;
        }
        out
    }

    fn contains(&self, fp: u64) -> bool {
        match self {
            Shard::Exact(s) => s.contains(&fp),
            Shard::Bits(b) => {
                let n = b.len() as u64 * 64;
                Shard::bit_positions(fp, n).iter().all(|&i| b[(i / 64) as usize] >> (i % 64) & 1 != 0)
            }
        }
    }

    /// Insert; true if it was not there (for bits: some bit was clear).
    fn insert(&mut self, fp: u64) -> bool {
        match self {
            Shard::Exact(s) => s.insert(fp),
            Shard::Bits(b) => {
                let n = b.len() as u64 * 64;
                let mut new = false;
                for i in Shard::bit_positions(fp, n) {
                    let w = &mut b[(i / 64) as usize];
                    new |= *w >> (i % 64) & 1 == 0;
                    *w |= 1 << (i % 64);
                }
                new
            }
        }
    }

    fn reserve(&mut self, n: usize) {
        if let Shard::Exact(s) = self {
            s.reserve(n);
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            // hashbrown: the value and one control byte per bucket
            Shard::Exact(s) => s.capacity() as u64 * 9 * 8 / 7,
            Shard::Bits(b) => b.len() as u64 * 8,
        }
    }

    fn ones(&self) -> u64 {
        match self {
            Shard::Exact(_) => 0,
            Shard::Bits(b) => b.iter().map(|w| w.count_ones() as u64).sum(),
        }
    }
}

/// Full states of one level, as [`State::encode`] bytes, in chunks of
/// [`CHUNK`] states (chunk `c` holds states `c*CHUNK ..`).
#[derive(Default)]
struct Frontier {
    chunks: Vec<Chunk>,
}

#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    /// end offset of each state in `bytes`
    ends: Vec<u32>,
    /// with partial-order reduction: each state's sleep set (packed actions,
    /// sorted), and where each one ends in `sleep`; empty without it
    sleep: Vec<u64>,
    sleep_ends: Vec<u32>,
}

impl Chunk {
    fn get(&self, j: usize) -> Option<&[u8]> {
        let end = *self.ends.get(j)? as usize;
        let start = if j == 0 { 0 } else { self.ends[j - 1] as usize };
        self.bytes.get(start..end)
    }
    fn sleep_of(&self, j: usize) -> &[u64] {
        let Some(&end) = self.sleep_ends.get(j) else { return &[] };
        let start = if j == 0 { 0 } else { self.sleep_ends[j - 1] as usize };
        self.sleep.get(start..end as usize).unwrap_or(&[])
    }
    fn push(&mut self, s: &State, sleep: Option<&[u64]>) -> Result<(), ExploreError> {
        s.encode(&mut self.bytes);
        let end =
            u32::try_from(self.bytes.len()).map_err(|_| ExploreError::Internal("frontier chunk over 4 GiB".into()))?;
        self.ends.push(end);
        if let Some(z) = sleep {
            self.sleep.extend_from_slice(z);
            let end = u32::try_from(self.sleep.len())
                .map_err(|_| ExploreError::Internal("frontier sleep sets over 4 G entries".into()))?;
            self.sleep_ends.push(end);
        }
        Ok(())
    }
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.sleep.clear();
        self.sleep_ends.clear();
    }
    fn capacity_bytes(&self) -> u64 {
        self.bytes.capacity() as u64
            + self.ends.capacity() as u64 * 4
            + self.sleep.capacity() as u64 * 8
            + self.sleep_ends.capacity() as u64 * 4
    }
}

impl Frontier {
    fn len(&self) -> u64 {
        self.chunks.iter().map(|c| c.ends.len() as u64).sum()
    }
    fn get(&self, i: u64) -> Option<&[u8]> {
        self.chunks.get((i / CHUNK as u64) as usize)?.get((i % CHUNK as u64) as usize)
    }
    /// State `i`'s sleep set (empty without partial-order reduction).
    fn sleep(&self, i: u64) -> &[u64] {
        self.chunks.get((i / CHUNK as u64) as usize).map_or(&[], |c| c.sleep_of((i % CHUNK as u64) as usize))
    }
    fn bytes(&self) -> u64 {
        self.chunks.iter().map(Chunk::capacity_bytes).sum()
    }
}

// ----------------------------------------------------------------------
// Candidates and sleep sets
// ----------------------------------------------------------------------

/// A candidate new state: the smallest key that reaches it and its action.
/// With partial-order reduction also the exact fingerprint of that
/// transition's successor (under the symmetry reduction two transitions can
/// reach one class through different concrete states, and a sleep set names
/// concrete actions of one concrete state) and the intersection of the sleep
/// sets of every transition into it (`off..off + len` in its owner's arena).
#[derive(Clone, Copy, Debug)]
struct Cand {
    key: u64,
    op: u64,
    xfp: u64,
    off: u32,
    len: u32,
}

/// Fold one more transition into a candidate: the smaller key wins; the
/// sleep set is the intersection of both when both transitions reach the
/// same concrete state, and empty (explore every action) otherwise.
fn meet(c: &mut Cand, arena: &mut [u64], key: u64, op: u64, xfp: u64, sleep: &[u64]) {
    if c.xfp != xfp {
        c.len = 0;
    } else if c.len > 0 {
        let (off, len) = (c.off as usize, c.len as usize);
        let mut n = 0;
        let mut j = 0;
        for k in 0..len {
            let v = arena[off + k];
            while j < sleep.len() && sleep[j] < v {
                j += 1;
            }
            if j < sleep.len() && sleep[j] == v {
                arena[off + n] = v;
                n += 1;
            }
        }
        c.len = n as u32;
    }
    if key < c.key {
        c.key = key;
        c.op = op;
        c.xfp = xfp;
    }
}

/// Append a sleep set to an arena: (offset, length).
fn stash(arena: &mut Vec<u64>, sleep: &[u64]) -> Result<(u32, u32), ExploreError> {
    let off = u32::try_from(arena.len()).map_err(|_| ExploreError::Internal("sleep sets over 4 G entries".into()))?;
    arena.extend_from_slice(sleep);
    Ok((off, sleep.len() as u32))
}

/// A state of the next level: its key, its action (packed), and where its
/// sleep set is in the level's arena.
#[derive(Clone, Copy, Debug)]
struct Winner {
    key: u64,
    op: u64,
    off: usize,
    len: u32,
}

// ----------------------------------------------------------------------
// Workers
// ----------------------------------------------------------------------

/// One thread's machines and buffers, reused across levels.
struct Worker {
    /// the parent state being expanded
    parent: Machine,
    /// index of the state loaded in `parent` (u64::MAX: none)
    parent_at: u64,
    /// a successor
    m: Machine,
    /// the drain of a new state
    drain: Machine,
    canon: Canon,
    ops: Vec<Op>,
    /// with partial-order reduction: the footprint of each of `ops`
    feet: Vec<Footprint>,
    /// a transition's sleep set being built
    scratch: Vec<u64>,
    /// expand: new fingerprints -> candidate (smallest key, its action)
    local: HashMap<u64, Cand, FpBuild>,
    /// the sleep sets of `local`'s candidates
    arena: Vec<u64>,
    /// expand output, per shard: (fingerprint, candidate), and the
    /// candidates' sleep sets
    out: Vec<Vec<(u64, Cand)>>,
    out_arena: Vec<Vec<u64>>,
    /// `ops` holds the actions of the state in `parent`
    ops_ready: bool,
    /// fingerprints this worker handled lately (direct-mapped, L2-sized):
    /// each is in the visited set or in `local` already
    recent: Vec<u64>,
    /// smallest key of a transition that broke an invariant
    violation: Option<u64>,
    transitions: u64,
    /// transitions a sleep set skipped this level
    slept: u64,
    error: Option<ExploreError>,
    /// signatures to explore past ([`Options::ignore`])
    ignore: Vec<Signature>,
}

impl Worker {
    fn new(cfg: &Config, ignore: &[Signature]) -> Result<Worker, ExploreError> {
        let mk = || Machine::new(cfg.clone()).map_err(ExploreError::Config);
        Ok(Worker {
            parent: mk()?,
            parent_at: u64::MAX,
            m: mk()?,
            drain: mk()?,
            canon: Canon::new(),
            ops: Vec::new(),
            feet: Vec::new(),
            scratch: Vec::new(),
            local: HashMap::default(),
            arena: Vec::new(),
            out: (0..SHARDS).map(|_| Vec::new()).collect(),
            out_arena: (0..SHARDS).map(|_| Vec::new()).collect(),
            ops_ready: false,
            recent: vec![0; RECENT],
            violation: None,
            transitions: 0,
            slept: 0,
            error: None,
            ignore: ignore.to_vec(),
        })
    }

    /// Load frontier state `i` into `parent`.
    fn decode_parent(&mut self, frontier: &Frontier, i: u64) -> Result<(), ExploreError> {
        if self.parent_at == i {
            return Ok(());
        }
        let bytes =
            frontier.get(i).ok_or_else(|| ExploreError::Internal(format!("internal: no frontier state {i}")))?;
        self.parent_at = u64::MAX;
        self.parent.s.decode(bytes).map_err(|e| ExploreError::Internal(format!("internal: {e}")))?;
        self.parent.clear_run_flags();
        self.parent_at = i;
        self.ops_ready = false;
        Ok(())
    }

    /// Load frontier state `i` into `parent` and enumerate its actions.
    fn load_parent(&mut self, frontier: &Frontier, i: u64, reduction: Reduction) -> Result<(), ExploreError> {
        self.decode_parent(frontier, i)?;
        if !self.ops_ready {
            actions(&self.parent, reduction, &mut self.canon, &mut self.ops);
            self.feet.clear();
            if self.ops.len() >= 1 << ORD_BITS {
                return Err(ExploreError::Config(ConfigError(format!(
                    "{} enabled actions in one state: too many to explore",
                    self.ops.len()
                ))));
            }
            self.ops_ready = true;
        }
        Ok(())
    }

    /// Does the end-of-program drain from `m`'s state break an invariant?
    fn drain_breaks(&mut self) -> bool {
        self.drain.load_state(&self.m.s);
        self.drain.finish();
        self.drain.breaks(&self.ignore)
    }
}

/// Stop requests besides the caller's.
const HALT_NONE: u8 = 0;
const HALT_MEMORY: u8 = 1;
const HALT_TIME: u8 = 2;

/// The memory cap is a cap on what the process holds, so it is checked
/// against the resident set (`memory::rss_bytes`) plus what the explorer is
/// about to allocate: a hash table that grows allocates its new table
/// while the old one is still held, and a phase that is about to start
/// allocates all its output. Both are forecast from the sizes at hand and
/// checked *before* they happen, so the search stops below the cap rather
/// than noticing it afterwards. Without procfs the resident set is replaced
/// by the bytes of the explorer's own structures.
struct Shared<'a> {
    ctl: &'a Control,
    halt: AtomicU8,
    t0: Instant,
    max_seconds: Option<f64>,
    max_memory: u64,
    /// without a resident-set reading: bytes of the structures held outside
    /// the level's work (visited set, keys, frontiers)
    base_memory: AtomicU64,
    /// what the current phase will still allocate (the store phase's
    /// forecast, taken down as chunks are stored)
    phase_pending: AtomicU64,
    /// per worker, while expanding: the bytes of its candidate map, and
    /// what its next growth and its hand-off to the shards will allocate
    held: Vec<AtomicU64>,
    next: Vec<AtomicU64>,
}

impl Shared<'_> {
    fn halted(&self) -> bool {
        self.ctl.stop_requested() || self.halt.load(Relaxed) != HALT_NONE
    }

    /// What the process holds now: its resident set where the kernel tells,
    /// else the explorer's own structures.
    fn held_now(&self) -> u64 {
        memory::rss_bytes()
            .unwrap_or_else(|| self.base_memory.load(Relaxed) + self.held.iter().map(|h| h.load(Relaxed)).sum::<u64>())
    }

    /// Whether allocating `extra` more bytes (on top of the workers' and the
    /// phase's forecasts) would pass the cap.
    fn would_pass_cap(&self, extra: u64) -> bool {
        let next: u64 = self.next.iter().map(|n| n.load(Relaxed)).sum();
        self.held_now().saturating_add(next).saturating_add(self.phase_pending.load(Relaxed)).saturating_add(extra)
            > self.max_memory
    }

    /// Halt (memory cap) if allocating `extra` more bytes would pass the cap.
    fn halt_if_over(&self, extra: u64) -> bool {
        let over = self.would_pass_cap(extra);
        if over {
            let _ = self.halt.compare_exchange(HALT_NONE, HALT_MEMORY, Relaxed, Relaxed);
        }
        over
    }

    /// Time and memory checks, once per chunk of work.
    fn check_limits(&self) {
        if let Some(s) = self.max_seconds {
            if self.t0.elapsed().as_secs_f64() > s {
                let _ = self.halt.compare_exchange(HALT_NONE, HALT_TIME, Relaxed, Relaxed);
            }
        }
        self.halt_if_over(0);
    }
}

/// Entry sizes of the level's tables: a candidate map entry (fingerprint,
/// candidate) and a visited-set entry.
const CAND_ENTRY: usize = std::mem::size_of::<(u64, Cand)>();
const SEEN_ENTRY: usize = std::mem::size_of::<u64>();

// ----------------------------------------------------------------------
// The search
// ----------------------------------------------------------------------

/// Explore every program of up to `opts.depth` actions on `cfg`'s machine.
pub fn explore(cfg: &Config, opts: &Options, ctl: &Control) -> Result<Outcome, ExploreError> {
    cfg.validate().map_err(ExploreError::Config)?;
    if cfg.shape.cpus > MAX_CPUS {
        return Err(ExploreError::Config(ConfigError(format!("at most {MAX_CPUS} cpus"))));
    }
    opts.validate().map_err(ExploreError::Config)?;
    let t0 = Instant::now();
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .clamp(1, 256);
    let reduction = opts.reduction;
    let mut workers = (0..threads).map(|_| Worker::new(cfg, &opts.ignore)).collect::<Result<Vec<_>, _>>()?;
    let mut shards: Vec<Shard> = (0..SHARDS)
        .map(|_| match opts.bitstate_bytes {
            Some(b) => Shard::Bits(vec![0; ((b / 8 / SHARDS as u64).max(1)) as usize]),
            None => Shard::Exact(HashSet::default()),
        })
        .collect();
    let sh = Shared {
        ctl,
        halt: AtomicU8::new(HALT_NONE),
        t0,
        max_seconds: opts.max_seconds,
        max_memory: opts.max_memory,
        base_memory: AtomicU64::new(0),
        phase_pending: AtomicU64::new(0),
        held: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        next: (0..threads).map(|_| AtomicU64::new(0)).collect(),
    };

    let por = opts.por;
    let (mut frontier, initial_breaks) = level_zero(&mut workers[0], &mut shards, reduction, por)?;
    // keys[d][i]: the key (parent index, action ordinal) of state i of level d
    let mut keys: Vec<Vec<u64>> = vec![vec![0]];
    let mut levels = vec![Level { depth: 0, new_states: 1, states: 1, transitions: 0 }];
    let (mut states, mut transitions, mut slept) = (1u64, 0u64, 0u64);
    let mut peak = 0u64;
    let mut missed = 0f64;
    let mut stop = StopReason::Depth;
    let mut partial = None;
    let mut found: Option<(usize, u64)> = if initial_breaks { Some((0, 0)) } else { None };
    let mut recycled: Vec<Chunk> = Vec::new();
    ctl.states.store(1, Relaxed);

    let mut d: usize = 0;
    while found.is_none() {
        let n = frontier.len();
        if n == 0 {
            stop = StopReason::Exhausted;
            d = d.saturating_sub(1); // the last level with states
            break;
        }
        if d >= opts.depth {
            stop = StopReason::Depth;
            break;
        }
        let mem_now = shards.iter().map(|s| s.bytes()).sum::<u64>()
            + keys.iter().map(|k| k.capacity() as u64 * 8).sum::<u64>()
            + frontier.bytes()
            + recycled.iter().map(Chunk::capacity_bytes).sum::<u64>();
        peak = peak.max(mem_now);
        sh.base_memory.store(mem_now, Relaxed);
        sh.phase_pending.store(0, Relaxed);
        if sh.halt_if_over(0) {
            partial = Some((0, n));
            stop = halt_reason(&sh);
            break;
        }
        ctl.depth.store(d + 1, Relaxed);
        ctl.frontier.store(n, Relaxed);
        ctl.expanded.store(0, Relaxed);
        // the chance that a new state of this level is wrongly "seen"
        let fill_before = bit_fill(&shards);

        expand_level(&mut workers, &frontier, &shards, &sh, reduction, por);
        if let Some(e) = workers.iter_mut().find_map(|w| w.error.take()) {
            return Err(e);
        }
        let level_transitions: u64 = workers.iter().map(|w| w.transitions).sum();
        let level_slept: u64 = workers.iter().map(|w| w.slept).sum();
        if sh.halted() {
            partial = Some((ctl.expanded.load(Relaxed), n));
            stop = halt_reason(&sh);
            break;
        }
        let mut violation = workers.iter().filter_map(|w| w.violation).min();
        for (h, x) in sh.held.iter().zip(&sh.next) {
            h.store(0, Relaxed);
            x.store(0, Relaxed);
        }
        sh.base_memory.fetch_add(handed_off_bytes(&workers), Relaxed);
        if sh.halt_if_over(merge_forecast(&workers, &shards, threads)) {
            partial = Some((n, n));
            stop = halt_reason(&sh);
            break;
        }

        let (winners, sleeps) = merge_level(&mut workers, &mut shards, threads);
        if let Some(p) = fill_before {
            let q = p.powi(BIT_HASHES as i32);
            missed += winners.len() as f64 * q / (1.0 - q).max(1e-12);
        }

        let forecast = store_forecast(&frontier, &winners, &sleeps, &recycled);
        if sh.halt_if_over(forecast) {
            partial = Some((n, n));
            stop = halt_reason(&sh);
            break;
        }
        sh.phase_pending.store(forecast, Relaxed);
        let (stored, drain_violation) =
            store_level(&mut workers, &frontier, (&winners, &sleeps), &sh, reduction, por, &mut recycled);
        if let Some(e) = workers.iter_mut().find_map(|w| w.error.take()) {
            return Err(e);
        }
        if sh.halted() {
            partial = Some((n, n));
            stop = halt_reason(&sh);
            break;
        }
        if let Some(dv) = drain_violation {
            violation = Some(violation.map_or(dv, |v| v.min(dv)));
        }
        let next = Frontier {
            chunks: stored
                .into_iter()
                .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or_default())
                .collect(),
        };
        peak = peak.max(mem_now + next.bytes() + winners.capacity() as u64 * 32 + sleeps.capacity() as u64 * 8);
        d += 1;
        states += winners.len() as u64;
        transitions += level_transitions;
        slept += level_slept;
        levels.push(Level { depth: d, new_states: winners.len() as u64, states, transitions });
        ctl.states.store(states, Relaxed);
        keys.push(winners.iter().map(|w| w.key).collect());
        recycled = std::mem::replace(&mut frontier, next).chunks;
        if let Some(v) = violation {
            found = Some((d, v));
            stop = StopReason::Violation;
        }
    }

    let counterexample = match found {
        Some((level, key)) => Some(rebuild(cfg, &keys, level, key, reduction)?),
        None => None,
    };
    if counterexample.is_some() {
        stop = StopReason::Violation;
    }
    let coverage = match opts.bitstate_bytes {
        None => Coverage::Exact { collision_bound: (states as f64) * (states as f64) / 2f64.powi(65) },
        Some(_) => {
            let bits: u64 = shards.iter().map(|s| s.bytes() * 8).sum();
            let ones: u64 = shards.iter().map(|s| s.ones()).sum();
            Coverage::Bitstate {
                bits,
                hashes: BIT_HASHES,
                fill: ones as f64 / bits.max(1) as f64,
                expected_missed: missed,
            }
        }
    };
    Ok(Outcome {
        stop,
        states,
        transitions,
        slept,
        depth_reached: d,
        depth_limit: opts.depth,
        seconds: t0.elapsed().as_secs_f64(),
        levels,
        counterexample,
        coverage,
        reduction,
        threads,
        peak_memory: memory::peak_rss_bytes().unwrap_or(peak),
        partial,
    })
}

/// Level 0: the initial state, visited, stored, and drained like an empty
/// program. Returns the first frontier and whether that drain breaks an
/// invariant.
fn level_zero(
    w0: &mut Worker,
    shards: &mut [Shard],
    reduction: Reduction,
    por: bool,
) -> Result<(Frontier, bool), ExploreError> {
    w0.m.reset();
    let fp0 = w0.canon.fingerprint(&w0.m.s, &w0.m.layout, reduction);
    shards[shard_of(fp0)].insert(fp0);
    let mut frontier = Frontier::default();
    let mut first = Chunk::default();
    first.push(&w0.m.s, por.then_some(&[][..]))?;
    frontier.chunks.push(first);
    Ok((frontier, w0.drain_breaks()))
}

/// Phase 1 of a level, **expand**: the workers claim chunks of the frontier
/// and apply every action of each state to a copy; each successor not in
/// the visited set (read-only here) becomes a candidate `(fingerprint, key)`
/// in its worker's map, handed to the shard buffers at the end. A worker's
/// errors and the smallest violating key stay in the worker.
fn expand_level(
    workers: &mut [Worker],
    frontier: &Frontier,
    shards: &[Shard],
    sh: &Shared<'_>,
    reduction: Reduction,
    por: bool,
) {
    let next_chunk = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for (wi, w) in workers.iter_mut().enumerate() {
            let next_chunk = &next_chunk;
            sc.spawn(move || {
                w.local.clear();
                w.arena.clear();
                w.violation = None;
                w.transitions = 0;
                w.slept = 0;
                w.parent_at = u64::MAX;
                loop {
                    let c = next_chunk.fetch_add(1, Relaxed);
                    if c >= frontier.chunks.len() || sh.halted() || w.error.is_some() {
                        break;
                    }
                    let before = w.transitions;
                    let len = frontier.chunks[c].ends.len();
                    for j in 0..len {
                        let i = (c * CHUNK + j) as u64;
                        if let Err(e) = expand(w, frontier, shards, i, reduction, por) {
                            w.error = Some(e);
                            break;
                        }
                    }
                    sh.ctl.expanded.fetch_add(len as u64, Relaxed);
                    let chunk_transitions = w.transitions - before;
                    sh.ctl.transitions.fetch_add(chunk_transitions, Relaxed);
                    // what this worker holds, and what its next chunk (at
                    // most twice this one's transitions, each a possible new
                    // candidate) and its hand-off below may allocate
                    let (len, cap) = (w.local.len(), w.local.capacity());
                    sh.held[wi].store(table_bytes(cap, CAND_ENTRY) + w.arena.capacity() as u64 * 8, Relaxed);
                    let grow = growth_bytes(len, cap, 2 * chunk_transitions as usize, CAND_ENTRY)
                        + vec_growth_bytes(w.arena.len(), w.arena.capacity(), 2 * chunk_transitions as usize, 8);
                    let hand_off =
                        (len + 2 * chunk_transitions as usize) as u64 * CAND_ENTRY as u64 + w.arena.len() as u64 * 8;
                    sh.next[wi].store(grow + hand_off, Relaxed);
                    sh.check_limits();
                }
                // hand the candidates to their shards, each buffer sized
                // exactly (no doubling: the merge's input is the largest
                // thing a level allocates besides the next frontier)
                let mut counts = [(0usize, 0usize); SHARDS];
                for (&fp, c) in w.local.iter() {
                    let e = &mut counts[shard_of(fp)];
                    e.0 += 1;
                    e.1 += c.len as usize;
                }
                for ((o, a), &(n, m)) in w.out.iter_mut().zip(w.out_arena.iter_mut()).zip(&counts) {
                    o.clear();
                    a.clear();
                    o.reserve_exact(n);
                    a.reserve_exact(m);
                }
                for (&fp, c) in w.local.iter() {
                    let k = shard_of(fp);
                    let mut c = *c;
                    let sleep = w.arena.get(c.off as usize..(c.off + c.len) as usize).unwrap_or(&[]);
                    match stash(&mut w.out_arena[k], sleep) {
                        Ok((off, _)) => c.off = off,
                        Err(e) => w.error = Some(e),
                    }
                    w.out[k].push((fp, c));
                }
                // give the map back: the merge and the store need the room
                w.local = HashMap::default();
                w.arena = Vec::new();
            });
        }
    });
}

/// Bytes of the workers' hand-off buffers (the merge's input).
fn handed_off_bytes(workers: &[Worker]) -> u64 {
    workers
        .iter()
        .flat_map(|w| w.out.iter().map(|o| o.capacity() as u64 * CAND_ENTRY as u64))
        .chain(workers.iter().flat_map(|w| w.out_arena.iter().map(|a| a.capacity() as u64 * 8)))
        .sum()
}

/// What the merge will allocate at most: the visited set's shards grown to
/// take every candidate (their new tables while the old are still held),
/// one merge map and order buffer per thread for its largest shard, and the
/// winners (each thread's, then all of them) with their sleep sets.
fn merge_forecast(workers: &[Worker], shards: &[Shard], threads: usize) -> u64 {
    let mut per_shard = [0usize; SHARDS];
    let mut sleeps = 0u64;
    for w in workers {
        for (k, o) in w.out.iter().enumerate() {
            per_shard[k] += o.len();
        }
        sleeps += w.out_arena.iter().map(|a| a.len() as u64 * 8).sum::<u64>();
    }
    let cands: usize = per_shard.iter().sum();
    let largest = per_shard.iter().copied().max().unwrap_or(0);
    let grow: u64 = shards
        .iter()
        .zip(per_shard)
        .map(|(s, add)| match s {
            Shard::Exact(set) => growth_bytes(set.len(), set.capacity(), add, SEEN_ENTRY),
            Shard::Bits(_) => 0,
        })
        .sum();
    let per_thread = table_bytes(largest, CAND_ENTRY) + largest as u64 * 24 + sleeps / threads.max(1) as u64;
    // a thread's winners vector may double past its size, then all are
    // copied into one
    grow + threads as u64 * per_thread + cands as u64 * std::mem::size_of::<Winner>() as u64 * 3 + sleeps * 3
}

/// What the store will allocate at most: the next frontier (states of the
/// current one's mean size, as each chunk reserves), less the recycled
/// chunks it reuses, and the next level's keys.
fn store_forecast(frontier: &Frontier, winners: &[Winner], sleeps: &[u64], recycled: &[Chunk]) -> u64 {
    let n = frontier.len().max(1);
    let state_bytes = (frontier.chunks.iter().map(|c| c.bytes.len()).sum::<usize>() / n as usize).max(16) as u64;
    let w = winners.len() as u64;
    let chunks = w * (state_bytes * 9 / 8 + 4) + sleeps.len() as u64 * 8 + w * 4;
    let reuse: u64 = recycled.iter().map(Chunk::capacity_bytes).sum();
    chunks.saturating_sub(reuse) + w * 8
}

/// Phase 2, **merge**: sixty-four shards of the visited set, each owned by
/// one thread, keep the smallest key per new fingerprint. Returns the
/// winners `(key, packed action)` sorted by key: the next level, the same
/// for any number of threads.
fn merge_level(workers: &mut [Worker], shards: &mut [Shard], threads: usize) -> (Vec<Winner>, Vec<u64>) {
    // each thread owns a run of shards: no locks, and the visited set
    // is only written here
    let per = SHARDS.div_ceil(threads);
    let mut winners: Vec<Winner> = Vec::new();
    let mut sleeps: Vec<u64> = Vec::new();
    // (the machines are not Sync: share only the candidate buffers)
    type Outs = Vec<(Vec<Vec<(u64, Cand)>>, Vec<Vec<u64>>)>;
    let outs: Outs =
        workers.iter_mut().map(|w| (std::mem::take(&mut w.out), std::mem::take(&mut w.out_arena))).collect();
    std::thread::scope(|sc| {
        let handles: Vec<_> = shards
            .chunks_mut(per)
            .enumerate()
            .map(|(t, group)| {
                let outs = &outs;
                sc.spawn(move || {
                    let mut won: Vec<Winner> = Vec::new();
                    let mut won_sleep: Vec<u64> = Vec::new();
                    let mut merged: HashMap<u64, Cand, FpBuild> = HashMap::default();
                    let mut arena: Vec<u64> = Vec::new();
                    let mut order: Vec<(u64, u64, u64)> = Vec::new();
                    for (j, shard) in group.iter_mut().enumerate() {
                        let k = t * per + j;
                        merged.clear();
                        arena.clear();
                        for (out, out_arena) in outs.iter() {
                            for &(fp, c) in &out[k] {
                                let sleep = out_arena[k].get(c.off as usize..(c.off + c.len) as usize).unwrap_or(&[]);
                                match merged.entry(fp) {
                                    std::collections::hash_map::Entry::Occupied(mut e) => {
                                        meet(e.get_mut(), &mut arena, c.key, c.op, c.xfp, sleep);
                                    }
                                    std::collections::hash_map::Entry::Vacant(e) => {
                                        let off = arena.len() as u32;
                                        arena.extend_from_slice(sleep);
                                        e.insert(Cand { off, ..c });
                                    }
                                }
                            }
                        }
                        // key order: bit-state insertions then do not
                        // depend on hash-map iteration order
                        order.clear();
                        order.extend(merged.iter().map(|(&fp, c)| (c.key, c.op, fp)));
                        order.sort_unstable();
                        shard.reserve(order.len());
                        for &(key, op, fp) in &order {
                            if shard.insert(fp) {
                                let c = merged.get(&fp).copied().unwrap_or(Cand { key, op, xfp: 0, off: 0, len: 0 });
                                let sleep = arena.get(c.off as usize..(c.off + c.len) as usize).unwrap_or(&[]);
                                won.push(Winner { key, op, off: won_sleep.len(), len: sleep.len() as u32 });
                                won_sleep.extend_from_slice(sleep);
                            }
                        }
                    }
                    (won, won_sleep)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap_or_default()).collect();
        winners.reserve_exact(results.iter().map(|(w, _)| w.len()).sum());
        sleeps.reserve_exact(results.iter().map(|(_, s)| s.len()).sum());
        for (won, won_sleep) in results {
            let base = sleeps.len();
            winners.extend(won.into_iter().map(|w| Winner { off: w.off + base, ..w }));
            sleeps.extend(won_sleep);
        }
    });
    // the merge's input is consumed: free it (each level sizes its own)
    drop(outs);
    for w in workers.iter_mut() {
        w.out = (0..SHARDS).map(|_| Vec::new()).collect();
        w.out_arena = (0..SHARDS).map(|_| Vec::new()).collect();
    }
    winners.sort_unstable_by_key(|w| w.key);
    (winners, sleeps)
}

/// Phase 3, **store + drain**: each winner is regenerated from its parent,
/// encoded into the next frontier's chunks, and drained (liveness). Returns
/// the chunks and the smallest key whose drain broke an invariant.
fn store_level(
    workers: &mut [Worker],
    frontier: &Frontier,
    (winners, sleeps): (&[Winner], &[u64]),
    sh: &Shared<'_>,
    reduction: Reduction,
    por: bool,
    recycled: &mut Vec<Chunk>,
) -> (Vec<Mutex<Option<Chunk>>>, Option<u64>) {
    let n = frontier.len();
    let nchunks = winners.len().div_ceil(CHUNK);
    let next_c = AtomicUsize::new(0);
    let stored: Vec<Mutex<Option<Chunk>>> = (0..nchunks).map(|_| Mutex::new(None)).collect();
    // recycled buffers: fresh memory costs page faults, growing costs copies
    let pool = Mutex::new(std::mem::take(recycled));
    let state_bytes = (frontier.chunks.iter().map(|c| c.bytes.len()).sum::<usize>() / (n as usize).max(1)).max(16);
    let drain_violation = AtomicU64::new(u64::MAX);
    let per_chunk = sh.phase_pending.load(Relaxed) / nchunks.max(1) as u64;
    std::thread::scope(|sc| {
        for w in workers.iter_mut() {
            let (stored, next_c, dv, pool) = (&stored, &next_c, &drain_violation, &pool);
            sc.spawn(move || {
                w.parent_at = u64::MAX;
                loop {
                    let c = next_c.fetch_add(1, Relaxed);
                    if c >= nchunks || sh.halted() || w.error.is_some() {
                        break;
                    }
                    let mut chunk = lock(pool).pop().unwrap_or_default();
                    chunk.clear();
                    chunk.bytes.reserve(CHUNK * state_bytes * 9 / 8);
                    chunk.ends.reserve(CHUNK);
                    for win in &winners[c * CHUNK..((c + 1) * CHUNK).min(winners.len())] {
                        let sleep = por.then(|| sleeps.get(win.off..win.off + win.len as usize).unwrap_or(&[]));
                        let key = win.key;
                        match store(w, frontier, key, win.op, reduction, &mut chunk, sleep) {
                            Ok(true) => {
                                dv.fetch_min(key, Relaxed);
                            }
                            Ok(false) => {}
                            Err(e) => {
                                w.error = Some(e);
                                break;
                            }
                        }
                    }
                    *lock(&stored[c]) = Some(chunk);
                    let _ = sh.phase_pending.fetch_update(Relaxed, Relaxed, |p| Some(p.saturating_sub(per_chunk)));
                    sh.check_limits();
                }
            });
        }
    });
    let dv = drain_violation.load(Relaxed);
    (stored, (dv != u64::MAX).then_some(dv))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn halt_reason(sh: &Shared<'_>) -> StopReason {
    match sh.halt.load(Relaxed) {
        HALT_MEMORY => StopReason::MemoryCap,
        HALT_TIME => StopReason::TimeLimit,
        _ => StopReason::Interrupted,
    }
}

/// Fraction of bits set (bit-state mode), None for an exact visited set.
fn bit_fill(shards: &[Shard]) -> Option<f64> {
    let mut bits = 0u64;
    let mut ones = 0u64;
    for s in shards {
        if let Shard::Exact(_) = s {
            return None;
        }
        bits += s.bytes() * 8;
        ones += s.ones();
    }
    Some(ones as f64 / bits.max(1) as f64)
}

/// Expand frontier state `i`: every enabled action, once — with
/// partial-order reduction, every enabled action not in its sleep set.
fn expand(
    w: &mut Worker,
    frontier: &Frontier,
    shards: &[Shard],
    i: u64,
    reduction: Reduction,
    por: bool,
) -> Result<(), ExploreError> {
    w.load_parent(frontier, i, reduction)?;
    let zset = frontier.sleep(i);
    let Worker {
        parent,
        m,
        canon,
        ops,
        feet,
        scratch,
        local,
        arena,
        transitions,
        slept,
        violation,
        recent,
        ignore,
        ..
    } = w;
    if por && feet.len() != ops.len() {
        feet.clear();
        feet.extend(ops.iter().map(|op| parent.footprint(op)));
    }
    let asleep = |op: &Op| {
        let pk = pack(op);
        pk != NO_OP && zset.binary_search(&pk).is_ok()
    };
    let mut broke = None;
    for (o, op) in ops.iter().enumerate() {
        if por && asleep(op) {
            // an earlier sibling of this state's parent reaches the
            // successor, at this same depth (§10.6)
            *slept += 1;
            continue;
        }
        m.load_state(&parent.s);
        m.apply_traced(op);
        *transitions += 1;
        let key = i << ORD_BITS | o as u64;
        if m.broken() {
            // an ignored violation prunes the transition without ending the search
            if m.breaks(ignore) {
                broke = Some(broke.map_or(key, |k: u64| k.min(key)));
            }
            continue;
        }
        let fp = canon.fingerprint(&m.s, &m.layout, reduction);
        // Siblings are neighbours in the frontier, so the two orders of a
        // pair of commuting actions meet here soon after each other: a small
        // cache spares the big tables most duplicates. Anything it holds is
        // visited or already a candidate of this worker with a smaller key
        // (by the next level, every candidate is visited).
        let slot = fp as usize & (RECENT - 1);
        let cached = recent[slot] == fp && fp != 0;
        recent[slot] = fp;
        if cached && !por {
            continue;
        }
        // the visited set is only read during expansion (written in merge)
        if shards[shard_of(fp)].contains(fp) {
            continue;
        }
        if !por {
            // a worker claims chunks in increasing order, so the first key it
            // sees for a fingerprint is its smallest
            local.entry(fp).or_insert_with(|| Cand { key, op: pack(op), xfp: 0, off: 0, len: 0 });
            continue;
        }
        // With sleep sets every transition into a new state counts: the
        // state's sleep set is the intersection of theirs.
        // This transition's: the earlier actions of the parent that were
        // explored and are independent of `op` — for each such `b`, `b`
        // then `op` reaches what `op` then `b` would.
        let xfp = match reduction {
            Reduction::None => fp,
            Reduction::Symmetry => canon.fingerprint(&m.s, &m.layout, Reduction::None),
        };
        scratch.clear();
        for (j, b) in ops[..o].iter().enumerate() {
            let pb = pack(b);
            if pb != NO_OP && independent(feet[j], feet[o]) && !asleep(b) {
                scratch.push(pb);
            }
        }
        scratch.sort_unstable();
        match local.entry(fp) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                meet(e.get_mut(), arena, key, pack(op), xfp, scratch);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let (off, len) = stash(arena, scratch)?;
                e.insert(Cand { key, op: pack(op), xfp, off, len });
            }
        }
    }
    if let Some(k) = broke {
        *violation = Some(violation.map_or(k, |v| v.min(k)));
    }
    Ok(())
}

/// An action in one word, so that storing a new state needs no second
/// enumeration of its parent's actions: kind in bits 55.., operands 11 bits
/// each. [`NO_OP`] when an operand does not fit (then the ordinal is used).
const NO_OP: u64 = u64::MAX;

fn pack(op: &Op) -> u64 {
    if op.args.iter().any(|&a| a >= 1 << 11) {
        return NO_OP;
    }
    op.args.iter().enumerate().fold((op.kind as u64) << 55, |v, (i, &a)| v | (a as u64) << (11 * i))
}

fn unpack(v: u64) -> Option<Op> {
    if v == NO_OP {
        return None;
    }
    let kind = crate::program::op::OpKind::from_index((v >> 55) as usize)?;
    let mut args = [0u16; MAX_ARGS];
    for (i, a) in args.iter_mut().enumerate() {
        *a = (v >> (11 * i) & 0x7ff) as u16;
    }
    Some(Op { kind, args })
}

/// Regenerate the state `key` names, append it to `chunk`; true if the
/// drain from it breaks an invariant.
fn store(
    w: &mut Worker,
    frontier: &Frontier,
    key: u64,
    packed: u64,
    reduction: Reduction,
    chunk: &mut Chunk,
    sleep: Option<&[u64]>,
) -> Result<bool, ExploreError> {
    let (i, o) = (key >> ORD_BITS, (key & ((1 << ORD_BITS) - 1)) as usize);
    let op = match unpack(packed) {
        Some(op) => {
            w.decode_parent(frontier, i)?;
            op
        }
        None => {
            w.load_parent(frontier, i, reduction)?;
            *w.ops.get(o).ok_or_else(|| ExploreError::Internal("internal: action ordinal out of range".into()))?
        }
    };
    w.m.load_state(&w.parent.s);
    w.m.apply_traced(&op);
    chunk.push(&w.m.s, sleep)?;
    Ok(w.drain_breaks())
}

// ----------------------------------------------------------------------
// One state at a time, for a search driven from outside
// ----------------------------------------------------------------------

/// A successor of an expanded state: the action's ordinal among the state's
/// actions (the key the explorer orders by), the successor's fingerprint,
/// and the successor encoded ([`State::encode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Successor {
    pub ordinal: u32,
    pub fp: u64,
    pub state: Vec<u8>,
}

/// The explorer's step, one state at a time, for a breadth-first search
/// driven from outside — sharded across processes or machines (the Ray
/// backend): the initial state, the successors of an encoded state, the
/// drain check, and the program a path of action ordinals names. A driver
/// that orders each level's states by their paths (lexicographically), keeps
/// per fingerprint the state with the smallest path, and drains every new
/// state gets exactly [`explore`]'s states, transitions and counterexample:
/// the explorer's keys order states the same way.
pub struct Expander {
    cfg: Config,
    w: Worker,
    reduction: Reduction,
}

impl Expander {
    pub fn new(cfg: &Config, reduction: Reduction) -> Result<Expander, ExploreError> {
        cfg.validate().map_err(ExploreError::Config)?;
        if cfg.shape.cpus > MAX_CPUS {
            return Err(ExploreError::Config(ConfigError(format!("at most {MAX_CPUS} cpus"))));
        }
        Ok(Expander { cfg: cfg.clone(), w: Worker::new(cfg, &[])?, reduction })
    }

    /// The initial state: (fingerprint, encoded, does its drain break an
    /// invariant).
    pub fn initial(&mut self) -> (u64, Vec<u8>, bool) {
        self.w.m.reset();
        let fp = self.w.canon.fingerprint(&self.w.m.s, &self.w.m.layout, self.reduction);
        let mut bytes = Vec::new();
        self.w.m.s.encode(&mut bytes);
        (fp, bytes, self.w.drain_breaks())
    }

    /// Apply every action of the encoded `state`: successors into `out`
    /// (cleared first; one per distinct fingerprint, the smallest ordinal),
    /// and (transitions, the smallest ordinal of an action that breaks an
    /// invariant).
    pub fn expand(&mut self, state: &[u8], out: &mut Vec<Successor>) -> Result<(u64, Option<u32>), ExploreError> {
        out.clear();
        let w = &mut self.w;
        w.parent_at = u64::MAX;
        w.parent.s.decode(state).map_err(|e| ExploreError::Config(ConfigError(format!("not a state: {e}"))))?;
        w.parent.clear_run_flags();
        actions(&w.parent, self.reduction, &mut w.canon, &mut w.ops);
        let mut seen: HashSet<u64, FpBuild> = HashSet::default();
        let mut broke = None;
        for (o, op) in w.ops.iter().enumerate() {
            w.m.load_state(&w.parent.s);
            w.m.apply_traced(op);
            if w.m.broken() {
                broke = broke.or(Some(o as u32));
                continue;
            }
            let fp = w.canon.fingerprint(&w.m.s, &w.m.layout, self.reduction);
            if seen.insert(fp) {
                let mut bytes = Vec::new();
                w.m.s.encode(&mut bytes);
                out.push(Successor { ordinal: o as u32, fp, state: bytes });
            }
        }
        Ok((w.ops.len() as u64, broke))
    }

    /// Does the end-of-program drain from the encoded `state` break an
    /// invariant?
    pub fn drain_breaks(&mut self, state: &[u8]) -> Result<bool, ExploreError> {
        self.w.m.s.decode(state).map_err(|e| ExploreError::Config(ConfigError(format!("not a state: {e}"))))?;
        self.w.m.clear_run_flags();
        Ok(self.w.drain_breaks())
    }

    /// The program the path of action ordinals names from the initial
    /// state, replayed with tracing; an error if it breaks no invariant.
    pub fn counterexample(&self, ordinals: &[usize]) -> Result<Counterexample, ExploreError> {
        replay_ordinals(&self.cfg, ordinals, self.reduction)
    }
}

/// The program that reaches the state (or breaks at the transition) `key`
/// of `level`, replayed with tracing.
fn rebuild(
    cfg: &Config,
    keys: &[Vec<u64>],
    level: usize,
    key: u64,
    reduction: Reduction,
) -> Result<Counterexample, ExploreError> {
    // ordinals from the end back to the initial state
    let mut ords = Vec::with_capacity(level);
    let mut k = key;
    for d in (1..=level).rev() {
        ords.push((k & ((1 << ORD_BITS) - 1)) as usize);
        let parent = (k >> ORD_BITS) as usize;
        if d > 1 {
            k = *keys
                .get(d - 1)
                .and_then(|l| l.get(parent))
                .ok_or_else(|| ExploreError::Internal("internal: broken parent chain".into()))?;
        }
    }
    ords.reverse();
    replay_ordinals(cfg, &ords, reduction)
}

/// Follow action ordinals from the initial state and replay the program
/// with tracing; it must break an invariant.
fn replay_ordinals(cfg: &Config, ords: &[usize], reduction: Reduction) -> Result<Counterexample, ExploreError> {
    let level = ords.len();
    let mut m = Machine::new(cfg.clone()).map_err(ExploreError::Config)?;
    let mut buf = Vec::new();
    let mut canon = Canon::new();
    let mut ops = Vec::with_capacity(level);
    for &o in ords {
        actions(&m, reduction, &mut canon, &mut buf);
        let op = *buf.get(o).ok_or_else(|| ExploreError::Internal("internal: replayed path diverged".into()))?;
        m.apply_traced(&op);
        ops.push(op);
    }
    m.set_tracing(true);
    let verdict = m
        .run(&ops)
        .map_err(|(i, e)| ExploreError::Internal(format!("internal: counterexample action {i} not enabled: {e}")))?;
    if verdict.reported().is_none() {
        return Err(ExploreError::Internal("internal: the counterexample did not reproduce on replay".into()));
    }
    let program = Program::new(&cfg.rules.name, cfg.shape.clone(), ops);
    Ok(Counterexample { program, verdict })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Shape;
    use crate::rules::{DeviceType, Rules};

    fn cfg(preset: &str, types: &[DeviceType], pages: usize) -> Config {
        let shape = Shape { types: types.to_vec(), pages, ..Shape::default() };
        Config::with_shape(Rules::preset(preset).unwrap(), shape)
    }

    #[test]
    fn enabled_into_matches_enabled_actions() {
        let c = cfg("e3", &DeviceType::DEFAULT, 2);
        let mut m = Machine::new(c).unwrap();
        let mut buf = Vec::new();
        for step in 0..12 {
            m.enabled_into(false, |_| true, &mut buf);
            assert_eq!(buf, m.enabled_actions(), "at step {step}");
            let mut cpu0 = Vec::new();
            m.enabled_into(true, |_| true, &mut cpu0);
            assert!(cpu0.iter().all(|op| op.cpu() == 0 && buf.contains(op)));
            assert!(cpu0.len() <= buf.len());
            let Some(op) = buf.get(step * 7 % buf.len().max(1)).copied() else { break };
            m.step(&op).unwrap();
        }
    }

    #[test]
    fn depth_zero_is_the_initial_state() {
        let c = cfg("e4", &[DeviceType::Generic], 2);
        let o = explore(&c, &Options { depth: 0, threads: 1, ..Options::default() }, &Control::new()).unwrap();
        assert_eq!((o.states, o.transitions, o.depth_reached, o.stop), (1, 0, 0, StopReason::Depth));
        assert!(o.counterexample.is_none());
    }

    #[test]
    fn ignored_signatures_are_explored_past() {
        let shape = Shape {
            types: vec![DeviceType::Generic],
            pgmaps: 1,
            pages: 1,
            procs: 1,
            addrs: 1,
            tasks: 1,
            ram: 0,
            order: 0,
            ..Shape::default()
        };
        let c = Config::with_shape(Rules::preset("p20").unwrap(), shape);
        let opts = Options { depth: 12, threads: 2, ..Options::default() };
        let first = explore(&c, &opts, &Control::new()).unwrap();
        let m = Machine::new(c.clone()).unwrap();
        let sig_of = |o: &Outcome| o.counterexample.as_ref().and_then(|x| m.signature_of(&x.verdict));
        let sig = sig_of(&first).unwrap();
        assert_eq!(
            (sig.invariant.as_str(), sig.kind.as_str(), sig.device.as_str()),
            ("I-L2", "memunmap_pages", "generic")
        );
        // an entry that matches nothing changes nothing
        let other =
            Signature { invariant: "I-L9".into(), kind: "x".into(), device: "generic".into(), rules: String::new() };
        let same = explore(&c, &Options { ignore: vec![other], ..opts.clone() }, &Control::new()).unwrap();
        assert_eq!(
            (same.states, same.transitions, sig_of(&same)),
            (first.states, first.transitions, Some(sig.clone()))
        );
        // past it: either a different signature at the same depth or later, or clean
        let any_rules = Signature { rules: String::new(), ..sig.clone() };
        let past = explore(&c, &Options { ignore: vec![any_rules], ..opts.clone() }, &Control::new()).unwrap();
        assert!(past.states >= first.states);
        match sig_of(&past) {
            Some(s) => {
                assert_ne!(s, sig);
                assert!(
                    past.counterexample.unwrap().program.ops.len() >= first.counterexample.unwrap().program.ops.len()
                );
            }
            None => assert!(past.stop.complete() && past.depth_reached > first.depth_reached),
        }
        // an entry for other rules does not match
        let e1 = Signature { rules: "e1".into(), ..sig.clone() };
        let not = explore(&c, &Options { ignore: vec![e1], ..opts }, &Control::new()).unwrap();
        assert_eq!(sig_of(&not), Some(sig));
    }

    #[test]
    fn a_stop_request_gives_a_partial_result() {
        let c = cfg("e4", &DeviceType::DEFAULT, 2);
        let ctl = Control::new();
        ctl.stop();
        let o = explore(&c, &Options { depth: 5, threads: 2, ..Options::default() }, &ctl).unwrap();
        assert_eq!(o.stop, StopReason::Interrupted);
        assert_eq!(o.depth_reached, 0);
        assert!(o.summary().contains("interrupted"), "{}", o.summary());
    }
}
