//! `zdfuzz.PercpuRef`: lib/percpu-refcount.c driven from Python.

use crate::error::{config, Failure};
use pyo3::prelude::*;
use zdfuzz_core::stress::RealRef;
use zdfuzz_core::{init_flags, Effects, NoSuchCpu, RefEvent};

fn cpu_err(e: NoSuchCpu) -> Failure {
    config(e.to_string())
}

const FLAG_NAMES: [(&str, u32); 3] = [
    ("init_atomic", init_flags::INIT_ATOMIC),
    ("init_dead", init_flags::INIT_DEAD),
    ("allow_reinit", init_flags::ALLOW_REINIT),
];

/// One misuse event reported by a percpu_ref operation.
#[pyclass(module = "zdfuzz._core", name = "PercpuRefEvent", frozen, eq, get_all, skip_from_py_object)]
#[derive(Clone, PartialEq)]
pub struct PyRefEvent {
    /// Stable name, e.g. "double_kill".
    name: &'static str,
    /// The invariant it breaks, e.g. "I-R4".
    invariant: &'static str,
    /// The call that reported it, e.g. "kill".
    op: &'static str,
    /// Index of that call among the calls made on this ref (0-based).
    call: u64,
    /// The count involved, for underflows; 0 otherwise.
    value: i64,
}

#[pymethods]
impl PyRefEvent {
    fn __repr__(&self) -> String {
        format!(
            "PercpuRefEvent(name={:?}, invariant={:?}, op={:?}, call={}, value={})",
            self.name, self.invariant, self.op, self.call, self.value
        )
    }
}

/// A percpu_ref (lib/percpu-refcount.c) driven deterministically: every
/// fast-path call names the CPU it runs on, and the RCU grace period is the
/// explicit call `grace_period()`.
#[pyclass(module = "zdfuzz._core", name = "PercpuRef")]
pub struct PyPercpuRef {
    inner: RealRef,
    events: Vec<PyRefEvent>,
    calls: u64,
}

impl PyPercpuRef {
    fn record(&mut self, op: &'static str, fx: Effects) {
        for e in fx.events.iter() {
            self.events.push(PyRefEvent {
                name: e.name(),
                invariant: e.invariant().id(),
                op,
                call: self.calls,
                value: if matches!(e, RefEvent::Underflow | RefEvent::PutBelowZero) { fx.value } else { 0 },
            });
        }
        self.calls += 1;
    }
}

#[pymethods]
impl PyPercpuRef {
    #[new]
    #[pyo3(signature = (cpus = 4, flags = Vec::new()))]
    fn new(cpus: usize, flags: Vec<String>) -> PyResult<Self> {
        if !(1..=4096).contains(&cpus) {
            return Err(config(format!("cpus must be between 1 and 4096, got {cpus}")).into());
        }
        let mut bits = 0;
        for f in &flags {
            match FLAG_NAMES.iter().find(|(n, _)| n == f) {
                Some((_, b)) => bits |= b,
                None => {
                    let valid: Vec<_> = FLAG_NAMES.iter().map(|(n, _)| *n).collect();
                    return Err(
                        config(format!("unknown percpu_ref flag '{f}'; valid flags: {}", valid.join(", "))).into()
                    );
                }
            }
        }
        Ok(PyPercpuRef { inner: RealRef::new(cpus, bits), events: Vec::new(), calls: 0 })
    }

    /// Number of CPU slots.
    #[getter]
    fn cpus(&self) -> usize {
        self.inner.cpus()
    }

    #[pyo3(signature = (cpu, n = 1))]
    fn get(&mut self, cpu: usize, n: u64) -> PyResult<()> {
        let fx = self.inner.get_many(cpu, n).map_err(cpu_err)?;
        self.record("get", fx);
        Ok(())
    }

    /// Returns True when this put ran release().
    #[pyo3(signature = (cpu, n = 1))]
    fn put(&mut self, cpu: usize, n: u64) -> PyResult<bool> {
        let fx = self.inner.put_many(cpu, n).map_err(cpu_err)?;
        self.record("put", fx);
        Ok(fx.released)
    }

    #[pyo3(signature = (cpu, n = 1))]
    fn tryget(&mut self, cpu: usize, n: u64) -> PyResult<bool> {
        let (ok, fx) = self.inner.tryget_many(cpu, n).map_err(cpu_err)?;
        self.record("tryget", fx);
        Ok(ok)
    }

    fn tryget_live(&mut self, cpu: usize) -> PyResult<bool> {
        let (ok, fx) = self.inner.tryget_live(cpu).map_err(cpu_err)?;
        self.record("tryget_live", fx);
        Ok(ok)
    }

    /// percpu_ref_kill. Returns True when release() ran synchronously.
    fn kill(&mut self) -> bool {
        let fx = self.inner.kill();
        self.record("kill", fx);
        fx.released
    }

    /// percpu_ref_kill_and_confirm. Returns True when the confirmation ran
    /// synchronously (the ref was already atomic); otherwise it runs at the
    /// next grace_period().
    fn kill_and_confirm(&mut self) -> bool {
        let fx = self.inner.kill_and_confirm(true);
        self.record("kill_and_confirm", fx);
        fx.confirmed
    }

    /// Run the pending RCU callback (fold the per-CPU counts). Returns True
    /// when release() ran.
    fn grace_period(&mut self) -> bool {
        let fx = self.inner.grace_period();
        self.record("grace_period", fx);
        fx.released
    }

    fn switch_to_atomic(&mut self) {
        let fx = self.inner.switch_to_atomic(false);
        self.record("switch_to_atomic", fx);
    }

    fn switch_to_atomic_sync(&mut self) {
        let fx = self.inner.switch_to_atomic_sync();
        self.record("switch_to_atomic_sync", fx);
    }

    fn switch_to_percpu(&mut self) {
        let fx = self.inner.switch_to_percpu();
        self.record("switch_to_percpu", fx);
    }

    fn reinit(&mut self) {
        let fx = self.inner.reinit();
        self.record("reinit", fx);
    }

    fn resurrect(&mut self) {
        let fx = self.inner.resurrect();
        self.record("resurrect", fx);
    }

    fn exit(&mut self) {
        let fx = self.inner.exit();
        self.record("exit", fx);
    }

    fn is_zero(&self) -> bool {
        self.inner.is_zero()
    }

    fn is_dying(&self) -> bool {
        self.inner.is_dying()
    }

    /// The logical count: references held by users.
    fn count(&self) -> i64 {
        self.inner.count()
    }

    /// "percpu" or "atomic".
    #[getter]
    fn mode(&self) -> &'static str {
        self.inner.mode().name()
    }

    /// A percpu→atomic switch is waiting for its grace period.
    #[getter]
    fn switch_pending(&self) -> bool {
        self.inner.switch_pending()
    }

    /// How many times release() ran.
    #[getter]
    fn released(&self) -> u64 {
        self.inner.released()
    }

    /// The misuse events reported so far, in order.
    fn events(&self) -> Vec<PyRefEvent> {
        self.events.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "PercpuRef(cpus={}, count={}, mode={:?}, dying={}, released={})",
            self.inner.cpus(),
            self.inner.count(),
            self.inner.mode().name(),
            if self.inner.is_dying() { "True" } else { "False" },
            self.inner.released()
        )
    }
}

/// Run the real-thread stress harness: `workers` threads get/put on their own
/// CPU slots while the caller's thread kills the ref. Returns
/// (releases, puts_after_release, ops, events).
#[pyfunction]
#[pyo3(signature = (workers = 2, ops = 100_000))]
pub fn percpu_ref_stress(py: Python<'_>, workers: usize, ops: u64) -> PyResult<(u64, u64, u64, u64)> {
    if !(1..=256).contains(&workers) {
        return Err(config(format!("workers must be between 1 and 256, got {workers}")).into());
    }
    let rep = py.detach(|| zdfuzz_core::stress::run_stress(workers, ops));
    Ok((rep.releases, rep.puts_after_release, rep.ops, rep.events))
}

/// Side-by-side get+put throughput: per-CPU slots vs one shared atomic vs the
/// ref in atomic mode. Returns three (pairs_per_sec, ns_per_pair) tuples.
#[pyfunction]
#[pyo3(signature = (threads, pairs = 2_000_000, rounds = 5))]
pub fn bench_percpu_ref(py: Python<'_>, threads: usize, pairs: u64, rounds: usize) -> PyResult<Vec<(f64, f64)>> {
    if !(1..=256).contains(&threads) {
        return Err(config(format!("threads must be between 1 and 256, got {threads}")).into());
    }
    let r = py.detach(|| zdfuzz_core::bench::compare(threads, pairs, rounds));
    Ok(r.iter().map(|t| (t.pairs_per_sec, t.ns_per_pair)).collect())
}
