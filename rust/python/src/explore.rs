//! `zdfuzz.explore(...)` and `ExploreResult`: the exhaustive explorer.
//!
//! The search runs in a Rust thread without the GIL; the calling thread
//! wakes every few milliseconds to check for signals (Ctrl-C stops the search
//! and the partial result is returned, `stop == "interrupted"`) and, every
//! `progress_interval` seconds, to call the `progress` callback.

use crate::error::{config, Failure, Result};
use crate::machine::{PyVerdict, PyViolation};
use crate::program::{rules_arg, PyProgram};
use crate::shape::shape_arg;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use zdfuzz_core::explore::{
    explore as run_explore, parse_size, Control, Coverage, Expander, Options, Outcome, Successor,
};
use zdfuzz_core::fingerprint::Reduction;
use zdfuzz_core::signature::Signature;
use zdfuzz_core::{Config, Shape};

/// The result of `zdfuzz.explore`.
#[pyclass(module = "zdfuzz._core", name = "ExploreResult", frozen, skip_from_py_object)]
pub struct PyExploreResult {
    inner: Outcome,
    cfg: Config,
}

#[pymethods]
impl PyExploreResult {
    /// The shortest program that breaks an invariant, or None.
    #[getter]
    fn counterexample(&self) -> Option<PyProgram> {
        self.inner.counterexample.as_ref().map(|c| PyProgram { inner: c.program.clone() })
    }

    /// The counterexample's replayed verdict (with its trace), or None.
    #[getter]
    fn verdict(&self) -> Option<PyVerdict> {
        self.inner.counterexample.as_ref().map(|c| PyVerdict::of_config(&self.cfg, c.verdict.clone()))
    }

    /// The counterexample's violation, or None.
    #[getter]
    fn violation(&self) -> Option<PyViolation> {
        let c = self.inner.counterexample.as_ref()?;
        c.verdict.reported().map(|v| PyViolation::new(v, &c.verdict.trace))
    }

    /// Distinct states (fingerprints) in the completely explored levels.
    #[getter]
    fn states(&self) -> u64 {
        self.inner.states
    }

    /// (state, enabled action) pairs explored in those levels.
    #[getter]
    fn transitions(&self) -> u64 {
        self.inner.transitions
    }

    /// The deepest level explored completely.
    /// Transitions skipped by the sleep sets (`por=True`; 0 otherwise).
    #[getter]
    fn slept(&self) -> u64 {
        self.inner.slept
    }

    #[getter]
    fn depth_reached(&self) -> usize {
        self.inner.depth_reached
    }

    /// The depth that was asked for.
    #[getter]
    fn depth_limit(&self) -> usize {
        self.inner.depth_limit
    }

    #[getter]
    fn seconds(&self) -> f64 {
        self.inner.seconds
    }

    /// Why it ended: "depth", "exhausted", "violation", "interrupted",
    /// "memory" or "time".
    #[getter]
    fn stop(&self) -> &'static str {
        self.inner.stop.name()
    }

    /// Everything asked for was explored (depth, exhausted or violation).
    #[getter]
    fn complete(&self) -> bool {
        self.inner.stop.complete()
    }

    /// Per completed depth: (depth, new states, states so far, transitions so far).
    #[getter]
    fn levels(&self) -> Vec<(usize, u64, u64, u64)> {
        self.inner.levels.iter().map(|l| (l.depth, l.new_states, l.states, l.transitions)).collect()
    }

    /// How far the visited set can be trusted: {"mode": "exact",
    /// "collision_bound": p} or {"mode": "bitstate", "bits", "hashes",
    /// "fill", "expected_missed"}.
    #[getter]
    fn coverage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        match self.inner.coverage {
            Coverage::Exact { collision_bound } => {
                d.set_item("mode", "exact")?;
                d.set_item("collision_bound", collision_bound)?;
            }
            Coverage::Bitstate { bits, hashes, fill, expected_missed } => {
                d.set_item("mode", "bitstate")?;
                d.set_item("bits", bits)?;
                d.set_item("hashes", hashes)?;
                d.set_item("fill", fill)?;
                d.set_item("expected_missed", expected_missed)?;
            }
        }
        Ok(d)
    }

    /// "symmetry" or "none".
    #[getter]
    fn reduction(&self) -> &'static str {
        match self.inner.reduction {
            Reduction::Symmetry => "symmetry",
            Reduction::None => "none",
        }
    }

    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Largest memory estimate seen, in bytes.
    #[getter]
    fn peak_memory(&self) -> u64 {
        self.inner.peak_memory
    }

    /// (states expanded, of) in the level that was cut short, or None.
    #[getter]
    fn partial(&self) -> Option<(u64, u64)> {
        self.inner.partial
    }

    /// The result in words (what the CLI prints).
    fn summary(&self) -> String {
        self.inner.summary()
    }

    fn __str__(&self) -> String {
        self.inner.summary()
    }

    fn __repr__(&self) -> String {
        format!(
            "ExploreResult(stop={:?}, states={}, transitions={}, depth_reached={}, counterexample={})",
            self.inner.stop.name(),
            self.inner.states,
            self.inner.transitions,
            self.inner.depth_reached,
            match &self.inner.counterexample {
                Some(c) => format!("<{} actions>", c.program.ops.len()),
                None => "None".into(),
            }
        )
    }
}

/// A size: a number of bytes, or a string such as "512M", "4G".
fn size_arg(obj: &Bound<'_, PyAny>, what: &str) -> Result<u64> {
    if let Ok(n) = obj.extract::<u64>() {
        return Ok(n);
    }
    let s: String =
        obj.extract().map_err(|_| config(format!("{what} must be a number of bytes or a string like \"512M\"")))?;
    Ok(parse_size(&s, what)?)
}

/// `ignore=`: signatures as sequences or strings of 3 or 4 words.
fn ignore_arg(obj: &Bound<'_, PyAny>) -> Result<Vec<Signature>> {
    let bad = || {
        config("ignore must be a list of signatures: (invariant, kind, device[, rules]) or \"I-L2 memunmap_pages generic\"")
    };
    let mut out = Vec::new();
    for item in obj.try_iter().map_err(|_| bad())? {
        let item = item.map_err(|_| bad())?;
        let words: Vec<String> = match item.extract::<String>() {
            Ok(s) => s.split_whitespace().map(str::to_string).collect(),
            Err(_) => item.extract::<Vec<String>>().map_err(|_| bad())?,
        };
        if !(3..=4).contains(&words.len()) {
            return Err(config(format!("ignore: {words:?} is not a signature (invariant, kind, device[, rules])")));
        }
        out.push(Signature {
            invariant: words[0].clone(),
            kind: words[1].clone(),
            device: words[2].clone(),
            rules: words.get(3).cloned().unwrap_or_default(),
        });
    }
    Ok(out)
}

fn progress_dict<'py>(py: Python<'py>, ctl: &Control, t0: Instant) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("depth", ctl.depth.load(Relaxed))?;
    d.set_item("frontier", ctl.frontier.load(Relaxed))?;
    d.set_item("expanded", ctl.expanded.load(Relaxed))?;
    d.set_item("states", ctl.states.load(Relaxed))?;
    d.set_item("transitions", ctl.transitions.load(Relaxed))?;
    d.set_item("seconds", t0.elapsed().as_secs_f64())?;
    Ok(d)
}

/// Explore every program of up to `depth` actions breadth-first and return
/// either "no violation within these bounds" or the shortest counterexample.
///
/// `shape` is a `Shape` (or mapping) as for `Machine`; without one, all four
/// types with system RAM and huge pages off (`ram=0, order=0`): they
/// multiply the states, and only device-private migration needs them (a
/// `Shape` of device-private memory has them unless it says `ram=0,
/// order=0`). `symmetry=False` explores
/// exact states (no CPU/page symmetry reduction); `threads=0` uses every
/// core; `max_memory` / `bitstate` take bytes or strings like "512M";
/// `progress(dict)` is called every `progress_interval` seconds with
/// depth, frontier, expanded, states, transitions, seconds. Ctrl-C (SIGINT)
/// stops the search and returns the partial result (`stop ==
/// "interrupted"`); so do `max_memory` ("memory") and `max_seconds` ("time").
/// An exception raised by `progress` stops the search and is re-raised.
/// `ignore`: signatures to explore past — each a sequence (invariant, action
/// kind, device type[, rules]) or a string of those words; a violation with
/// one of them prunes its transition instead of ending the search, so the
/// counterexample is the shortest program whose violation is not ignored.
#[pyfunction]
#[pyo3(signature = (rules, *, shape = None, depth = 8, threads = 0, symmetry = true, max_memory = None,
                    bitstate = None, max_seconds = None, progress = None, progress_interval = 0.5,
                    ignore = None, por = false))]
#[allow(clippy::too_many_arguments)]
pub fn explore(
    py: Python<'_>,
    rules: &Bound<'_, PyAny>,
    shape: Option<&Bound<'_, PyAny>>,
    depth: usize,
    threads: i64,
    symmetry: bool,
    max_memory: Option<&Bound<'_, PyAny>>,
    bitstate: Option<&Bound<'_, PyAny>>,
    max_seconds: Option<f64>,
    progress: Option<&Bound<'_, PyAny>>,
    progress_interval: f64,
    ignore: Option<&Bound<'_, PyAny>>,
    por: bool,
) -> PyResult<PyExploreResult> {
    let rules = rules_arg(rules)?;
    // without a shape: all four types, no system RAM and no huge pages (they
    // multiply the states; only device-private migration needs them)
    let shape = match shape {
        Some(s) => shape_arg(Some(s))?,
        None => Shape { ram: 0, order: 0, ..Shape::default() },
    };
    let cfg = Config::with_shape(rules, shape);
    let threads = usize::try_from(threads)
        .map_err(|_| config(format!("threads must be 0 (every core) or a positive number, got {threads}")))?;
    let mut opts = Options {
        depth,
        threads,
        reduction: if symmetry { Reduction::Symmetry } else { Reduction::None },
        max_seconds,
        por,
        ..Options::default()
    };
    if let Some(m) = max_memory {
        opts.max_memory = size_arg(m, "max_memory")?;
    }
    if let Some(b) = bitstate {
        opts.bitstate_bytes = Some(size_arg(b, "bitstate")?);
    }
    if let Some(ig) = ignore {
        opts.ignore = ignore_arg(ig)?;
    }
    opts.validate().map_err(Failure::from)?;
    if !(progress_interval.is_finite() && progress_interval > 0.0) {
        return Err(config("progress_interval must be a positive number of seconds").into());
    }
    if let Some(p) = progress {
        if !p.is_callable() {
            return Err(config("progress must be a callable taking a dict").into());
        }
    }
    let ctl = Control::new();
    let t0 = Instant::now();
    let interval = Duration::from_secs_f64(progress_interval.clamp(0.01, 3600.0));
    let mut callback_error: Option<PyErr> = None;
    let outcome = std::thread::scope(|sc| {
        let (cfg, opts, ctl) = (&cfg, &opts, &ctl);
        let handle = sc.spawn(move || run_explore(cfg, opts, ctl));
        let mut last = Instant::now();
        while !handle.is_finished() {
            py.detach(|| std::thread::sleep(Duration::from_millis(20)));
            if py.check_signals().is_err() {
                // Ctrl-C: stop the workers; the partial result is returned
                ctl.stop();
            }
            if let Some(cb) = progress {
                if last.elapsed() >= interval && callback_error.is_none() {
                    last = Instant::now();
                    if let Err(e) = progress_dict(py, ctl, t0).and_then(|d| cb.call1((d,))) {
                        callback_error = Some(e);
                        ctl.stop();
                    }
                }
            }
        }
        handle.join()
    });
    if let Some(e) = callback_error {
        return Err(e);
    }
    match outcome {
        Ok(Ok(inner)) => Ok(PyExploreResult { inner, cfg }),
        Ok(Err(e)) => Err(Failure::from(e).into()),
        Err(_) => Err(Failure(zdfuzz_core::Error::Internal("the explorer thread panicked".into())).into()),
    }
}

/// The explorer's step, one state at a time, for a breadth-first search
/// driven from Python (the Ray backend shards it across workers): states
/// travel as bytes, with their 64-bit fingerprints.
#[pyclass(module = "zdfuzz._core", name = "Expander", unsendable, skip_from_py_object)]
pub struct PyExpander {
    inner: Expander,
    cfg: Config,
    buf: Vec<Successor>,
}

#[pymethods]
impl PyExpander {
    #[new]
    #[pyo3(signature = (rules, *, shape = None, symmetry = true))]
    fn new(rules: &Bound<'_, PyAny>, shape: Option<&Bound<'_, PyAny>>, symmetry: bool) -> PyResult<PyExpander> {
        let rules = rules_arg(rules)?;
        let shape = match shape {
            Some(s) => shape_arg(Some(s))?,
            None => Shape { ram: 0, order: 0, ..Shape::default() },
        };
        let cfg = Config::with_shape(rules, shape);
        let reduction = if symmetry { Reduction::Symmetry } else { Reduction::None };
        let inner = Expander::new(&cfg, reduction).map_err(Failure::from)?;
        Ok(PyExpander { inner, cfg, buf: Vec::new() })
    }

    /// The initial state: (fingerprint, state, does its drain break an invariant).
    fn initial<'py>(&mut self, py: Python<'py>) -> (u64, Bound<'py, PyBytes>, bool) {
        let (fp, bytes, broke) = self.inner.initial();
        (fp, PyBytes::new(py, &bytes), broke)
    }

    /// Every action of `state`: ([(ordinal, fingerprint, successor)], one per
    /// distinct fingerprint; transitions; the smallest ordinal of an action
    /// that breaks an invariant, or None).
    #[allow(clippy::type_complexity)]
    fn expand<'py>(
        &mut self,
        py: Python<'py>,
        state: &[u8],
    ) -> PyResult<(Vec<(u32, u64, Bound<'py, PyBytes>)>, u64, Option<u32>)> {
        let (n, broke) = self.inner.expand(state, &mut self.buf).map_err(Failure::from)?;
        let succ = self.buf.iter().map(|s| (s.ordinal, s.fp, PyBytes::new(py, &s.state))).collect();
        Ok((succ, n, broke))
    }

    /// Does the end-of-program drain from `state` break an invariant?
    fn drain_breaks(&mut self, state: &[u8]) -> PyResult<bool> {
        Ok(self.inner.drain_breaks(state).map_err(Failure::from)?)
    }

    /// The program a path of action ordinals names, replayed: (program,
    /// violation). ZdfuzzError if it breaks no invariant.
    fn counterexample(&self, ordinals: Vec<usize>) -> PyResult<(PyProgram, PyViolation, PyVerdict)> {
        let c = self.inner.counterexample(&ordinals).map_err(Failure::from)?;
        let v = c
            .verdict
            .reported()
            .map(|v| PyViolation::new(v, &c.verdict.trace))
            .ok_or_else(|| Failure(zdfuzz_core::Error::Internal("the path breaks no invariant".into())))?;
        Ok((PyProgram { inner: c.program.clone() }, v, PyVerdict::of_config(&self.cfg, c.verdict)))
    }
}
