//! The minimizer: shrink a violating program while keeping its signature.
//!
//! A reproducer attached to a patch review should be the shortest story
//! that still breaks the same invariant in the same kernel function on the
//! same device type (its [`Signature`]). The passes, repeated until a whole
//! round changes nothing:
//!
//! 1. cut everything after the action that broke the invariant;
//! 2. ddmin over the actions (Zeller's delta debugging, complement
//!    removal); its last round tries every single-action removal;
//! 3. shape: drop device types the finding does not involve and shrink the
//!    machine (pages, processes, ...) while the finding survives,
//!    renumbering pfns/pgmaps/files (after ddmin: the actions on other
//!    types are gone by then, so task slots no longer shift);
//! 4. renaming: swap two values of one operand domain everywhere (proc 1 <->
//!    proc 0, pfn 6 <-> pfn 4, ...) towards the smallest;
//! 5. operands: each operand of each action, every smaller value of its
//!    domain (`cached=none` and `by=gup` count as smallest).
//!
//! The result is 1-minimal: removing any single action, or replacing any
//! single operand by a smaller value, loses the signature.
//!
//! A candidate is *interesting* only if every action is enabled when it is
//! replayed with [`Machine::step`] — exactly what `zdfuzz replay` does — and
//! the verdict has the target signature. A candidate with an action its
//! actor may not take is simply not interesting (rather than skipping that
//! action), so the written reproducer always replays as written. The
//! coarse passes (ddmin, windows, shape, renaming) are more lenient: an
//! action a removal made impossible (a `step` of a task never spawned, a
//! page operation on a page never allocated) is dropped with it, and what
//! is kept is the program *as executed*, so it too replays exactly. The
//! final passes (single removals, operands) are strict, so the result is
//! 1-minimal for someone editing the `.zdf` by hand.

use crate::config::{Config, Layout, Shape};
use crate::machine::Machine;
use crate::program::op::{Dim, Op, OpKind, MAX_ARGS};
use crate::program::Program;
use crate::rules::{DeviceType, Rules};
use crate::signature::Signature;

/// Why a program cannot be minimized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MinimizeError {
    /// the shape is invalid
    Config(crate::config::ConfigError),
    /// action `index` is not enabled when replayed
    NotReplayable { index: usize, line: usize, message: String },
    /// the program breaks no invariant
    Clean,
    /// it breaks one, but not the requested signature
    OtherSignature(Signature),
}

impl std::fmt::Display for MinimizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MinimizeError::Config(s) => write!(f, "bad machine shape: {s}"),
            MinimizeError::NotReplayable { index, line: 0, message } => write!(f, "action {index}: {message}"),
            MinimizeError::NotReplayable { index, line, message } => {
                write!(f, "line {line}: action {index}: {message}")
            }
            MinimizeError::Clean => f.write_str("the program breaks no invariant: nothing to minimize"),
            MinimizeError::OtherSignature(s) => {
                write!(f, "the program's violation is {s}, not the requested signature")
            }
        }
    }
}

impl std::error::Error for MinimizeError {}

/// The result of minimizing.
#[derive(Clone, Debug)]
pub struct Minimized {
    pub program: Program,
    pub signature: Signature,
    /// candidate programs run
    pub runs: usize,
    /// actions in the input program
    pub original_len: usize,
}

/// A program being minimized: actions, each with a stable identity (its
/// index in the input) and, for a `step`, the identity of the action that
/// spawned the task it steps.
///
/// Why: task slots are allocated first-free, so removing one spawning action
/// renumbers every later task and a plain `step task=3` would then step the
/// wrong task or none — delta debugging gets stuck on long programs full of
/// unrelated tasks. Following the task's identity instead lets a removal
/// take the task's own steps with it ("retargeting").
#[derive(Clone, Debug, PartialEq, Eq)]
struct Work {
    ops: Vec<Op>,
    ids: Vec<u32>,
    /// for a `step`: the id of the spawning action (None: use the operand as
    /// written, and learn the target on the next run)
    targets: Vec<Option<u32>>,
}

impl Work {
    fn len(&self) -> usize {
        self.ops.len()
    }

    fn without(&self, lo: usize, hi: usize) -> Work {
        fn cut<T: Clone>(v: &[T], lo: usize, hi: usize) -> Vec<T> {
            v[..lo].iter().chain(&v[hi..]).cloned().collect()
        }
        Work { ops: cut(&self.ops, lo, hi), ids: cut(&self.ids, lo, hi), targets: cut(&self.targets, lo, hi) }
    }
}

/// Runs candidates on one machine per shape.
struct Tester {
    rules: Rules,
    target: Signature,
    machine: Machine,
    runs: usize,
    max_runs: usize,
}

impl Tester {
    fn with_shape(&mut self, shape: &Shape) -> Option<Machine> {
        Machine::new(Config::with_shape(self.rules.clone(), shape.clone())).ok()
    }

    /// Run candidate `w`; interesting when the verdict has the target
    /// signature. With `retarget` (the coarse passes), a `step` steps the
    /// task its target names wherever that task now lives, and an action
    /// that is no longer enabled is left out; without (the final passes),
    /// every action must be enabled with its operands as written. Returns
    /// the program as executed — which replays exactly — truncated after the
    /// breaking action.
    fn check(&mut self, w: &Work, retarget: bool) -> Option<Work> {
        if self.runs >= self.max_runs {
            return None;
        }
        self.runs += 1;
        let m = &mut self.machine;
        m.reset();
        let ntasks = m.layout.tasks;
        // which action's task lives in each slot
        let mut owner: [Option<u32>; crate::config::MAX_TASKS] = [None; crate::config::MAX_TASKS];
        let mut out = Work {
            ops: Vec::with_capacity(w.len()),
            ids: Vec::with_capacity(w.len()),
            targets: Vec::with_capacity(w.len()),
        };
        for i in 0..w.len() {
            let mut op = w.ops[i];
            let mut target = w.targets[i];
            if op.kind == OpKind::Step {
                match (retarget, target) {
                    (true, Some(id)) => match owner.iter().take(ntasks).position(|o| *o == Some(id)) {
                        Some(slot) => op.args[0] = slot as u16,
                        None => continue,
                    },
                    _ => target = owner.get(op.a(0)).copied().flatten(),
                }
            }
            let before: [bool; crate::config::MAX_TASKS] =
                std::array::from_fn(|s| m.s.tasks.get(s).is_some_and(|t| t.is_some()));
            if m.step(&op).is_err() {
                if retarget {
                    // a removal made this action impossible (its page was
                    // never allocated, its process never forked): it goes too
                    continue;
                }
                return None;
            }
            for (slot, o) in owner.iter_mut().enumerate().take(ntasks) {
                let now = m.s.tasks[slot].is_some();
                if now && !before[slot] {
                    *o = Some(w.ids[i]);
                } else if !now {
                    *o = None;
                }
            }
            out.ops.push(op);
            out.ids.push(w.ids[i]);
            out.targets.push(target);
            if m.stopped() {
                break;
            }
        }
        m.finish();
        let v = m.verdict();
        (m.signature_of(&v).as_ref() == Some(&self.target)).then_some(out)
    }

    /// [`Tester::check`] on a machine of another shape.
    fn check_on(&mut self, m: &mut Machine, w: &Work, retarget: bool) -> Option<Work> {
        std::mem::swap(&mut self.machine, m);
        let r = self.check(w, retarget);
        std::mem::swap(&mut self.machine, m);
        r
    }
}

/// Minimize `program` under `rules`, keeping the signature of its violation
/// (or `target`, which it must have). `max_runs` bounds the candidates run.
pub fn minimize(
    rules: &Rules,
    program: &Program,
    target: Option<&Signature>,
    max_runs: usize,
) -> Result<Minimized, MinimizeError> {
    let mut machine =
        Machine::new(Config::with_shape(rules.clone(), program.shape.clone())).map_err(MinimizeError::Config)?;
    let v = machine.run(&program.ops).map_err(|(index, e)| MinimizeError::NotReplayable {
        index,
        line: program.line_of(index).unwrap_or(0),
        message: e.to_string(),
    })?;
    let found = machine.signature_of(&v).ok_or(MinimizeError::Clean)?;
    if let Some(t) = target {
        if *t != found {
            return Err(MinimizeError::OtherSignature(found));
        }
    }
    let n = program.ops.len();
    let w = Work { ops: program.ops.clone(), ids: (0..n as u32).collect(), targets: vec![None; n] };
    let mut t = Tester { rules: rules.clone(), target: found.clone(), machine, runs: 0, max_runs };
    // 1. the program as executed, cut after the breaking action, steps
    // tagged with their tasks
    let mut w = t.check(&w, false).ok_or(MinimizeError::Clean)?;
    let mut shape = program.shape.clone();
    loop {
        let before = (w.clone(), shape.clone());
        ddmin(&mut t, &mut w, true);
        windows(&mut t, &mut w);
        shrink_shape(&mut t, &mut shape, &mut w);
        rename(&mut t, &mut w);
        simplify_operands(&mut t, &mut w);
        // plain single removals (operands as written): what "1-minimal"
        // means to someone editing the .zdf by hand
        ddmin(&mut t, &mut w, false);
        if (w.clone(), shape.clone()) == before || t.runs >= t.max_runs {
            break;
        }
    }
    Ok(Minimized { program: Program::new(&rules.name, shape, w.ops), signature: found, runs: t.runs, original_len: n })
}

/// Delta debugging over the actions (complements), ending with every
/// single-action removal tried.
fn ddmin(t: &mut Tester, w: &mut Work, retarget: bool) {
    let mut n = if retarget { 2usize } else { w.len().max(2) };
    while w.len() > 0 {
        let len = w.len();
        let n_eff = n.min(len);
        let mut reduced = false;
        // remove chunk i; later chunks first (setup actions come first and
        // are usually needed)
        for i in (0..n_eff).rev() {
            let (lo, hi) = (i * len / n_eff, (i + 1) * len / n_eff);
            if let Some(r) = t.check(&w.without(lo, hi), retarget) {
                *w = r;
                n = n_eff.saturating_sub(1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if n_eff >= len {
                return;
            }
            n = (2 * n_eff).min(len);
        }
    }
}

/// Remove every window of 2 to 4 adjacent actions: ddmin's chunks double
/// in number and miss a pair straddling their boundaries (an `exit_mmap`
/// and the `fork` refilling the slot are only removable together).
fn windows(t: &mut Tester, w: &mut Work) {
    for size in 2..=4 {
        let mut lo = 0;
        while lo + size <= w.len() {
            match t.check(&w.without(lo, lo + size), true) {
                Some(r) => *w = r,
                None => lo += 1,
            }
        }
    }
}

/// Swap two values of one domain throughout the program, towards smaller
/// names (proc 1 <-> proc 0 ...), when the signature survives. A swap is
/// tried only when the larger value is the first of the two to appear, so
/// every accepted swap makes the program's values of that domain, read in
/// order, lexicographically smaller: renaming cannot cycle. (Task numbers
/// are not names a program chooses: they follow from slot allocation.)
fn rename(t: &mut Tester, w: &mut Work) {
    let dims = [Dim::Pgmap, Dim::Pfn, Dim::Proc, Dim::Addr, Dim::File, Dim::Index, Dim::Cpu];
    for d in dims {
        loop {
            let mut used: Vec<u16> = Vec::new();
            for op in w.ops.iter() {
                for (i, (_, dim)) in op.kind.info().args.iter().enumerate() {
                    if *dim == d && !used.contains(&op.args[i]) {
                        used.push(op.args[i]);
                    }
                }
            }
            used.sort_unstable();
            let mut changed = false;
            'outer: for &v in used.iter().rev() {
                for w_ in 0..v {
                    if first_of(&w.ops, d, v, w_) != Some(v) {
                        continue;
                    }
                    let mut cand = w.clone();
                    for op in cand.ops.iter_mut() {
                        *op = swap_values(op, d, v, w_);
                    }
                    if let Some(r) = t.check(&cand, true) {
                        *w = r;
                        changed = true;
                        break 'outer;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }
}

/// Which of `a` and `b` appears first as a value of domain `d`.
fn first_of(ops: &[Op], d: Dim, a: u16, b: u16) -> Option<u16> {
    ops.iter().find_map(|op| {
        op.kind
            .info()
            .args
            .iter()
            .enumerate()
            .find_map(|(i, (_, dim))| (*dim == d && (op.args[i] == a || op.args[i] == b)).then_some(op.args[i]))
    })
}

fn swap_values(op: &Op, d: Dim, a: u16, b: u16) -> Op {
    let mut out = *op;
    for (i, (_, dim)) in op.kind.info().args.iter().enumerate() {
        if *dim == d {
            if op.args[i] == a {
                out.args[i] = b;
            } else if op.args[i] == b {
                out.args[i] = a;
            }
        }
    }
    out
}

/// Each operand of each action: try every smaller value of its domain (a
/// `step`'s task operand as written, so it may then step another task).
fn simplify_operands(t: &mut Tester, w: &mut Work) {
    let layout = t.machine.layout.clone();
    let mut i = 0;
    while i < w.len() {
        let info = w.ops[i].kind.info();
        for (j, (_, dim)) in info.args.iter().enumerate() {
            let Some(cur) = dim.index(w.ops[i].args[j], &layout) else { continue };
            for smaller in 0..cur {
                let mut cand = w.clone();
                cand.ops[i].args[j] = dim.value(smaller);
                if *dim == Dim::Task {
                    cand.targets[i] = None;
                }
                // as written: the candidate differs from `w` in this operand only
                if let Some(r) = t.check(&cand, false) {
                    *w = r;
                    break;
                }
            }
            if i >= w.len() {
                break;
            }
        }
        i += 1;
    }
}

// ---------------------------------------------------------------------------
// Shape reduction
// ---------------------------------------------------------------------------

/// Drop device types and shrink the shape's counts while the signature
/// survives, renumbering the operands.
fn shrink_shape(t: &mut Tester, shape: &mut Shape, w: &mut Work) {
    // drop one type at a time, last first
    let mut i = shape.types.len();
    while i > 0 {
        i -= 1;
        if shape.types.len() < 2 || shape.types[i].name() == t.target.device {
            continue;
        }
        let mut s2 = shape.clone();
        s2.types.remove(i);
        try_shape(t, shape, w, s2);
    }
    // shrink each count to the smallest that keeps the finding
    for (field, _) in Shape::default().fields() {
        loop {
            let cur = shape.fields().iter().find(|(k, _)| *k == field).map_or(0, |(_, v)| *v);
            if cur <= 1 {
                break;
            }
            let mut s2 = shape.clone();
            s2.set(field, cur - 1);
            if !try_shape(t, shape, w, s2) {
                break;
            }
        }
    }
}

/// Move the program to shape `s2` if it still breaks the signature there.
fn try_shape(t: &mut Tester, shape: &mut Shape, w: &mut Work, s2: Shape) -> bool {
    if s2.validate().is_err() {
        return false;
    }
    let Some(mut m2) = t.with_shape(&s2) else { return false };
    let old = t.machine.layout.clone();
    let mut cand = Work { ops: Vec::new(), ids: Vec::new(), targets: Vec::new() };
    for i in 0..w.len() {
        // a step's task slot may not exist on the smaller machine: retargeting
        // puts it where its task lives
        let op = if w.ops[i].kind == OpKind::Step && w.targets[i].is_some() {
            Some(Op::new(OpKind::Step, &[0]))
        } else {
            remap_op(&w.ops[i], &old, &s2, &m2.layout)
        };
        if let Some(op) = op {
            cand.ops.push(op);
            cand.ids.push(w.ids[i]);
            cand.targets.push(w.targets[i]);
        }
    }
    match t.check_on(&mut m2, &cand, true) {
        Some(r) => {
            std::mem::swap(&mut t.machine, &mut m2);
            *shape = s2;
            *w = r;
            true
        }
        None => false,
    }
}

/// The pgmap `g` of layout `old` in layout `new` (same type, same rank
/// among the pgmaps of its type), if it still exists.
fn remap_pgmap(g: usize, old: &Layout, new_types: &[DeviceType], new: &Layout) -> Option<usize> {
    let t = *old.pgmap_type.get(g)?;
    let rank = old.pgmap_type[..g].iter().filter(|x| **x == t).count();
    let ti = new_types.iter().position(|x| *x == t)?;
    let per_type = new.npgmaps / new_types.len().max(1);
    (rank < per_type).then_some(ti * per_type + rank)
}

/// Renumber one action's operands from layout `old` to shape `s2`; None when
/// it names an object that no longer exists.
fn remap_op(op: &Op, old: &Layout, s2: &Shape, new: &Layout) -> Option<Op> {
    let mut out = *op;
    for (i, (_, dim)) in op.kind.info().args.iter().enumerate() {
        let v = op.args[i] as usize;
        let nv = match dim {
            Dim::Pgmap => remap_pgmap(v, old, &s2.types, new)?,
            Dim::Pfn if old.is_ram(v) => {
                // system RAM follows the device pfns: keep its offset
                let off = v - old.ndev;
                (off < new.npfns - new.ndev).then_some(new.ndev + off)?
            }
            Dim::Pfn => {
                let (g, off) = (v / old.pages, v % old.pages);
                let g2 = remap_pgmap(g, old, &s2.types, new)?;
                (off < new.pages).then_some(g2 * new.pages + off)?
            }
            Dim::Cached if v == 0 => 0,
            Dim::Cached => remap_pgmap(v - 1, old, &s2.types, new)? + 1,
            Dim::File => {
                let fs = v / old.files_per_fs;
                let g = *old.fs_pgmap.get(fs)? as usize;
                let g2 = remap_pgmap(g, old, &s2.types, new)?;
                let fs2 = new.fs_pgmap.iter().position(|x| *x as usize == g2)?;
                let idx = v % old.files_per_fs;
                (idx < new.files_per_fs).then_some(fs2 * new.files_per_fs + idx)?
            }
            _ => v,
        };
        out.args[i] = u16::try_from(nv).ok()?;
    }
    out.in_domain(new).ok()?;
    debug_assert!(out.args.len() == MAX_ARGS);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::text::{parse_program, program_to_text};

    const Q1_MIXED: &str = "rules p20\nconfig types=private,fsdax,generic,p2pdma\n\
        memremap_pages pgmap=0\nmemremap_pages pgmap=2\nexit_mmap proc=1 cpu=0\nfork proc=0 child=1\n\
        dev_dax_huge_fault proc=1 addr=3 pfn=10 cpu=1\nalloc_device_page pgmap=0 cpu=1\n\
        get_user_pages proc=1 addr=3 flags=0 cpu=1\nfree_device_page pfn=0 cpu=0\n\
        memunmap_pages pgmap=2 cpu=1\nstep task=0\nstep task=0\nstep task=0\nrcu_grace_period\nstep task=0\nstep task=0\n\
        memremap_pages pgmap=1\n";

    #[test]
    fn q1_shrinks_to_the_readme_story() {
        let p = parse_program(Q1_MIXED).unwrap();
        let rules = Rules::preset("p20").unwrap();
        let m = minimize(&rules, &p, None, 100_000).unwrap();
        assert_eq!(m.signature.to_string(), "I-L2 memunmap_pages generic p20");
        let text = program_to_text(&m.program);
        assert!(text.contains("config types=generic "), "{text}");
        assert!(!text.contains("fork"), "{text}");
        assert!(!text.contains("alloc_device_page"), "{text}");
        assert!(m.program.ops.len() < p.ops.len(), "{text}");
    }

    #[test]
    fn clean_programs_are_refused() {
        let p = parse_program("rules e1\nconfig types=generic\nmemremap_pages pgmap=0\n").unwrap();
        assert_eq!(minimize(&Rules::preset("e1").unwrap(), &p, None, 1000).unwrap_err(), MinimizeError::Clean);
    }
}
