//! The atomics facade.
//!
//! Everything in the core that is shared between real threads goes through this
//! module, so that `RUSTFLAGS="--cfg loom"` swaps std's atomics for loom's and
//! loom can enumerate the interleavings of the lock-free percpu_ref (the way the
//! kernel's lockdep/KCSAN watch lib/percpu-refcount.c). Nothing else in the
//! crate names `std::sync::atomic` directly.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub use loom::sync::{Arc, Mutex};
#[cfg(loom)]
pub use loom::thread;

#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::{Arc, Mutex};
#[cfg(not(loom))]
pub use std::thread;

/// Busy-wait hint. Under loom a spinning thread must yield, or the model
/// checker would explore an unbounded spin; on real hardware it is `pause`.
#[inline]
pub fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
