//! percpu_ref — the lock-free per-CPU reference count behind `pgmap->ref`.
//!
//! Mirrors lib/percpu-refcount.c and include/linux/percpu-refcount.h as of
//! v5.10+ (the `percpu_ref_data` split, 2b0d3d3e4fcf, with the NULL-data fix
//! of Ming Lei's "don't refer to ref->data if it isn't allocated"):
//! `percpu_ref_init`, `percpu_ref_get_many`, `percpu_ref_put_many`,
//! `percpu_ref_tryget_many`, `percpu_ref_tryget_live`, `percpu_ref_kill_and_confirm`,
//! `percpu_ref_switch_to_atomic[_sync]`, `percpu_ref_switch_to_percpu`,
//! `percpu_ref_resurrect`, `percpu_ref_reinit`, `percpu_ref_exit`,
//! `percpu_ref_is_zero`, `percpu_ref_is_dying`, and the RCU callback
//! `percpu_ref_switch_to_atomic_rcu` (here [`PercpuRef::grace_period`]).
//!
//! # How it counts
//!
//! There is one counter per CPU and one shared atomic counter. While the ref
//! is in percpu mode a get or put touches only its own CPU's counter: no
//! shared cache line, no zero test. Zero can therefore never be detected in
//! percpu mode, and the owner must *kill* the ref (drop its initial
//! reference) before the count can reach zero. Killing switches the ref to
//! atomic mode: from then on gets and puts go to the shared counter — but a
//! CPU that already read "percpu" may still be finishing an update of its own
//! counter. Only after an RCU grace period, when every such update is known to
//! be complete, are the per-CPU counters summed and folded into the shared one.
//!
//! Until that fold the shared counter carries a *bias* of 2^63, so that puts
//! landing on it while the per-CPU sums are still outstanding cannot drive it
//! to zero and trigger an early release. The fold adds `sum - bias` in one
//! step. The logical value of the ref is therefore
//!
//! ```text
//! R = atomic - (bias present ? 2^63 : 0) + Σ percpu      (mod 2^64, read as signed)
//! ```
//!
//! # Two ways to drive it
//!
//! The type is generic over its storage [`Word`]: with `Cell<u64>` it is the
//! deterministic simulation's ref (the CPU is an operand; the grace period is
//! whatever call the program makes next), with `CachePadded<AtomicU64>` it is a
//! real lock-free counter that threads share (see [`crate::rcu`] for the grace
//! period, [`crate::stress`] for the harness, and the loom tests).
//!
//! Fast-path operations (`get`, `put`, `tryget*`) are lock-free and may run on
//! any thread, with one rule the kernel has too: a CPU's counter is updated
//! only by the thread running as that CPU (`this_cpu_add` is a plain add, not
//! a locked one — which is what makes the percpu path cheap). Control operations (`kill`, switches, `grace_period`,
//! `resurrect`, `reinit`, `exit`) must be serialized by the caller — the
//! kernel serializes them with the global `percpu_ref_switch_lock`; the
//! simulation is single-threaded; [`crate::stress::SharedRef`] holds a mutex.
//!
//! # Misuse
//!
//! Whatever the kernel WARNs about, BUGs on, or silently corrupts is reported
//! as a [`RefEvent`] in the returned [`Effects`] and the operation then does
//! what the kernel code would do next (a double kill still drops the
//! "initial" reference a second time). Nothing here panics.

use crate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release};
use crate::word::Word;

/// `PERCPU_COUNT_BIAS = 1UL << (BITS_PER_LONG - 1)`.
pub const PERCPU_COUNT_BIAS: u64 = 1 << 63;

/// `percpu_ref_init()` flags, with the kernel's values.
pub mod init_flags {
    /// `PERCPU_REF_INIT_ATOMIC`: start (and stay, "sticky") in atomic mode.
    pub const INIT_ATOMIC: u32 = 1; // bit 0
    /// `PERCPU_REF_INIT_DEAD`: start killed with a count of zero.
    pub const INIT_DEAD: u32 = 1 << 1;
    /// `PERCPU_REF_ALLOW_REINIT`: keep the per-CPU counters after a switch to
    /// atomic mode so that the ref can go back to percpu mode.
    pub const ALLOW_REINIT: u32 = 1 << 2;
    pub const ALL: u32 = INIT_ATOMIC | INIT_DEAD | ALLOW_REINIT;
}

// Low bits of `percpu_count_ptr` — what the fast path reads.
/// `__PERCPU_REF_ATOMIC`.
const PTR_ATOMIC: u64 = 1; // bit 0
/// `__PERCPU_REF_DEAD`.
const PTR_DEAD: u64 = 1 << 1;
/// The per-CPU pointer itself is NULL (freed by `__percpu_ref_exit`).
const PTR_NO_PERCPU: u64 = 1 << 2;
/// `__PERCPU_REF_ATOMIC_DEAD`: a get/put is percpu iff neither bit is set.
const PTR_ATOMIC_DEAD: u64 = PTR_ATOMIC | PTR_DEAD;

// Control state (the kernel's `percpu_ref_data` fields), changed only by
// serialized control operations, except RELEASED which the final put sets.
const CTL_FORCE_ATOMIC: u64 = 1; // bit 0
const CTL_ALLOW_REINIT: u64 = 1 << 1;
/// `confirm_switch != NULL`: a percpu→atomic switch waits for its grace period.
const CTL_SWITCHING: u64 = 1 << 2;
/// The pending switch carries a caller's confirm callback (kill_and_confirm).
const CTL_CONFIRM: u64 = 1 << 3;
/// The bias is in the atomic counter and the per-CPU counters are live.
const CTL_BIAS: u64 = 1 << 4;
/// `ref->data == NULL`: exited, or never initialised.
const CTL_NO_DATA: u64 = 1 << 5;
/// `release()` already ran in this init/reinit cycle.
const CTL_RELEASED: u64 = 1 << 6;

/// Something the kernel warns about, BUGs on, or silently gets wrong.
/// The names (see [`RefEvent::name`]) are stable: the oracle, the Python API
/// and reproducers use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RefEvent {
    /// `WARN_ONCE(... "called more than once")` in `percpu_ref_kill_and_confirm`.
    DoubleKill = 0,
    /// `WARN_ON_ONCE(!percpu_ref_is_zero(ref))` in `percpu_ref_reinit`.
    ReinitNotZero,
    /// `WARN_ON_ONCE(!DEAD)` in `percpu_ref_resurrect`.
    ResurrectNotDead,
    /// `WARN_ON_ONCE(__ref_is_percpu())` in `percpu_ref_resurrect`.
    ResurrectPercpu,
    /// A get, put, tryget or control operation after `percpu_ref_exit` (or
    /// before init): v5.10+ dereferences the NULL `ref->data`.
    UseAfterExit,
    /// `WARN_ONCE("percpu ref <= 0 after switching to atomic")` at the fold.
    Underflow,
    /// A put drove the authoritative (atomic, unbiased) count below zero:
    /// `atomic_long_sub_and_test` does not notice, nothing warns.
    PutBelowZero,
    /// `WARN_ON_ONCE(ref->data->confirm_switch)` in `percpu_ref_exit`.
    ExitDuringSwitch,
    /// Back to percpu mode without `PERCPU_REF_ALLOW_REINIT`: the
    /// `WARN_ON_ONCE(!allow_reinit)` in `__percpu_ref_switch_to_percpu`, or its
    /// `BUG_ON(!percpu_count)` when the counters were already freed after a kill.
    SwitchPercpuNoReinit,
    /// The count reached zero a second time in one init/reinit cycle, so
    /// `release()` ran twice.
    DoubleRelease,
}

impl RefEvent {
    pub const ALL: [RefEvent; 10] = [
        RefEvent::DoubleKill,
        RefEvent::ReinitNotZero,
        RefEvent::ResurrectNotDead,
        RefEvent::ResurrectPercpu,
        RefEvent::UseAfterExit,
        RefEvent::Underflow,
        RefEvent::PutBelowZero,
        RefEvent::ExitDuringSwitch,
        RefEvent::SwitchPercpuNoReinit,
        RefEvent::DoubleRelease,
    ];

    /// The stable name of the event.
    pub const fn name(self) -> &'static str {
        match self {
            RefEvent::DoubleKill => "double_kill",
            RefEvent::ReinitNotZero => "reinit_not_zero",
            RefEvent::ResurrectNotDead => "resurrect_not_dead",
            RefEvent::ResurrectPercpu => "resurrect_percpu",
            RefEvent::UseAfterExit => "use_after_exit",
            RefEvent::Underflow => "underflow",
            RefEvent::PutBelowZero => "put_below_zero",
            RefEvent::ExitDuringSwitch => "exit_during_switch",
            RefEvent::SwitchPercpuNoReinit => "switch_percpu_no_reinit",
            RefEvent::DoubleRelease => "double_release",
        }
    }

    /// The invariant (docs/model.md §1, misuse events) the event breaks.
    pub const fn invariant(self) -> crate::oracle::Invariant {
        crate::oracle::Invariant::of_ref_event(self)
    }

    pub fn from_name(name: &str) -> Option<RefEvent> {
        RefEvent::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// A set of [`RefEvent`]s, as a bit mask (no allocation on the hot path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Events(u16);

impl Events {
    pub const NONE: Events = Events(0);
    #[inline]
    pub fn insert(&mut self, e: RefEvent) {
        self.0 |= 1 << e as u8;
    }
    #[inline]
    pub fn contains(self, e: RefEvent) -> bool {
        self.0 & (1 << e as u8) != 0
    }
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    #[inline]
    pub fn union(self, other: Events) -> Events {
        Events(self.0 | other.0)
    }
    pub fn bits(self) -> u16 {
        self.0
    }
    /// The events in a fixed order (declaration order).
    pub fn iter(self) -> impl Iterator<Item = RefEvent> {
        RefEvent::ALL.into_iter().filter(move |e| self.contains(*e))
    }
}

/// What one operation did besides its return value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// `release()` ran during this operation (the count hit exactly zero).
    pub released: bool,
    /// A kill/switch confirmation callback ran during this operation.
    pub confirmed: bool,
    /// The operation had to wait for a pending switch's grace period (the
    /// kernel's `wait_event_lock_irq` in `__percpu_ref_switch_mode`); in the
    /// deterministic model that grace period elapses inside the call.
    pub waited: bool,
    /// Misuse detected.
    pub events: Events,
    /// For [`RefEvent::Underflow`] / [`RefEvent::PutBelowZero`]: the value seen.
    pub value: i64,
}

impl Effects {
    #[inline]
    fn event(&mut self, e: RefEvent) {
        self.events.insert(e);
    }
    /// Merge the effects of a nested step (a put inside kill, a fold inside a switch).
    #[inline]
    pub fn absorb(&mut self, other: Effects) {
        self.released |= other.released;
        self.confirmed |= other.confirmed;
        self.waited |= other.waited;
        if !other.events.is_empty() && other.value != 0 {
            self.value = other.value;
        }
        self.events = self.events.union(other.events);
    }
}

/// A CPU number that does not exist on this ref.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSuchCpu {
    pub cpu: usize,
    pub cpus: usize,
}

impl std::fmt::Display for NoSuchCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cpu {} does not exist (the ref has {} cpus: 0..{})", self.cpu, self.cpus, self.cpus)
    }
}

impl std::error::Error for NoSuchCpu {}

/// Which counter the fast path uses right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Percpu,
    Atomic,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Percpu => "percpu",
            Mode::Atomic => "atomic",
        }
    }
}

/// `struct percpu_ref` plus its `percpu_ref_data`.
#[derive(Debug)]
pub struct PercpuRef<W: Word> {
    /// Flag bits of `percpu_count_ptr` (PTR_*).
    ptr: W,
    /// `data->count`, the shared `atomic_long_t`.
    count: W,
    /// The per-CPU `unsigned long`s.
    slots: Box<[W]>,
    /// The rest of `percpu_ref_data` (CTL_*).
    ctl: W,
    /// How many times `release()` has run, over the ref's whole life.
    released: W,
}

impl<W: Word + Clone> Clone for PercpuRef<W> {
    fn clone(&self) -> Self {
        PercpuRef {
            ptr: self.ptr.clone(),
            count: self.count.clone(),
            slots: self.slots.clone(),
            ctl: self.ctl.clone(),
            released: self.released.clone(),
        }
    }
}

impl<W: Word> PercpuRef<W> {
    /// An all-zero `struct percpu_ref` that was never initialised (or whose
    /// init failed). `exit` on it is a harmless no-op (I-R7); anything else is
    /// [`RefEvent::UseAfterExit`].
    pub fn uninit(cpus: usize) -> Self {
        let cpus = cpus.max(1);
        PercpuRef {
            ptr: W::new(PTR_ATOMIC_DEAD | PTR_NO_PERCPU),
            count: W::new(0),
            slots: (0..cpus).map(|_| W::new(0)).collect(),
            ctl: W::new(CTL_NO_DATA),
            released: W::new(0),
        }
    }

    /// Back to the never-initialised state, keeping the per-CPU storage.
    pub fn deinit(&self) {
        for s in self.slots.iter() {
            s.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.ctl.store(CTL_NO_DATA, Relaxed);
        self.released.store(0, Relaxed);
        self.ptr.store(PTR_ATOMIC_DEAD | PTR_NO_PERCPU, Release);
    }

    /// `percpu_ref_init(ref, release, flags, gfp)`. Unknown flag bits are ignored.
    pub fn new(cpus: usize, flags: u32) -> Self {
        let r = Self::uninit(cpus);
        r.init(flags);
        r
    }

    /// (Re)initialise in place, reusing the per-CPU storage: the model's
    /// `memremap_pages` calls this on a pgmap that may have lived before.
    pub fn init(&self, flags: u32) {
        let mut ptr = 0;
        let mut ctl = 0;
        let mut start: u64 = 0;
        if flags & init_flags::ALLOW_REINIT != 0 {
            ctl |= CTL_ALLOW_REINIT;
        }
        if flags & init_flags::INIT_ATOMIC != 0 {
            ctl |= CTL_FORCE_ATOMIC;
        }
        if flags & (init_flags::INIT_ATOMIC | init_flags::INIT_DEAD) != 0 {
            // An atomic or dead start implies ALLOW_REINIT: the ref will have
            // to switch to percpu later, so the counters must stay allocated.
            ptr |= PTR_ATOMIC;
            ctl |= CTL_ALLOW_REINIT;
        } else {
            start = start.wrapping_add(PERCPU_COUNT_BIAS);
            ctl |= CTL_BIAS;
        }
        if flags & init_flags::INIT_DEAD != 0 {
            ptr |= PTR_DEAD;
        } else {
            start = start.wrapping_add(1); // the initial reference
        }
        for s in self.slots.iter() {
            s.store(0, Relaxed);
        }
        self.count.store(start, Relaxed);
        self.ctl.store(ctl, Relaxed);
        self.released.store(0, Relaxed);
        self.ptr.store(ptr, Release);
    }

    pub fn cpus(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn slot(&self, cpu: usize) -> Result<&W, NoSuchCpu> {
        self.slots.get(cpu).ok_or(NoSuchCpu { cpu, cpus: self.slots.len() })
    }

    /// Is the atomic path unusable because `ref->data` is gone?
    #[inline]
    fn no_data(&self) -> bool {
        self.ctl.load(Acquire) & CTL_NO_DATA != 0
    }

    // ----------------------------------------------------------------------
    // Fast path
    // ----------------------------------------------------------------------

    /// `percpu_ref_get_many(ref, nr)` on `cpu`.
    #[inline]
    pub fn get_many(&self, cpu: usize, nr: u64) -> Result<Effects, NoSuchCpu> {
        let slot = self.slot(cpu)?;
        let mut fx = Effects::default();
        // `__ref_is_percpu`: read the pointer once; percpu iff no flag bit.
        // Acquire pairs with the Release that clears ATOMIC in
        // switch_to_percpu, so a percpu update never lands on a counter that
        // is about to be zeroed.
        if self.ptr.load(Acquire) & PTR_ATOMIC_DEAD == 0 {
            slot.owner_add(nr);
        } else if self.no_data() {
            fx.event(RefEvent::UseAfterExit);
        } else {
            self.count.fetch_add(nr, Relaxed);
        }
        Ok(fx)
    }

    /// `percpu_ref_get(ref)`.
    #[inline]
    pub fn get(&self, cpu: usize) -> Result<Effects, NoSuchCpu> {
        self.get_many(cpu, 1)
    }

    /// `percpu_ref_put_many(ref, nr)` on `cpu`; may run `release()`.
    #[inline]
    pub fn put_many(&self, cpu: usize, nr: u64) -> Result<Effects, NoSuchCpu> {
        let slot = self.slot(cpu)?;
        if self.ptr.load(Acquire) & PTR_ATOMIC_DEAD == 0 {
            // No zero test in percpu mode: that is the point of the bias.
            slot.owner_add(nr.wrapping_neg());
            return Ok(Effects::default());
        }
        Ok(self.put_atomic(nr))
    }

    /// `percpu_ref_put(ref)`.
    #[inline]
    pub fn put(&self, cpu: usize) -> Result<Effects, NoSuchCpu> {
        self.put_many(cpu, 1)
    }

    /// The atomic half of `percpu_ref_put_many`:
    /// `if (unlikely(atomic_long_sub_and_test(nr, &ref->data->count))) ref->data->release(ref);`
    fn put_atomic(&self, nr: u64) -> Effects {
        let mut fx = Effects::default();
        if self.no_data() {
            fx.event(RefEvent::UseAfterExit);
            return fx;
        }
        // AcqRel: every put before the last happens-before the release.
        let prev = self.count.fetch_sub(nr, AcqRel);
        let new = prev.wrapping_sub(nr);
        if prev < nr {
            // Borrowing below zero is only possible once the bias is gone
            // (with the bias in, the counter sits near 2^63): the
            // authoritative count went negative. The kernel does not notice.
            fx.event(RefEvent::PutBelowZero);
            fx.value = new as i64;
        } else if new == 0 {
            fx.released = true;
            self.released.fetch_add(1, Relaxed);
            let was = self.ctl.fetch_or(CTL_RELEASED, AcqRel);
            if was & CTL_RELEASED != 0 {
                fx.event(RefEvent::DoubleRelease);
            }
        }
        fx
    }

    /// `percpu_ref_tryget_many(ref, nr)`: succeeds in percpu mode; in atomic
    /// mode adds unless the count is zero. It does **not** look at DEAD: after
    /// a kill it still succeeds while the count is above zero (E5 relies on it).
    #[inline]
    pub fn tryget_many(&self, cpu: usize, nr: u64) -> Result<(bool, Effects), NoSuchCpu> {
        let slot = self.slot(cpu)?;
        if self.ptr.load(Acquire) & PTR_ATOMIC_DEAD == 0 {
            slot.owner_add(nr);
            return Ok((true, Effects::default()));
        }
        if self.no_data() {
            let mut fx = Effects::default();
            fx.event(RefEvent::UseAfterExit);
            return Ok((false, fx));
        }
        // atomic_long_add_unless(&count, nr, 0)
        Ok((self.add_unless_zero(nr), Effects::default()))
    }

    /// `percpu_ref_tryget(ref)`.
    #[inline]
    pub fn tryget(&self, cpu: usize) -> Result<(bool, Effects), NoSuchCpu> {
        self.tryget_many(cpu, 1)
    }

    /// `percpu_ref_tryget_live(ref)`: like tryget, but fails once DEAD is set.
    #[inline]
    pub fn tryget_live(&self, cpu: usize) -> Result<(bool, Effects), NoSuchCpu> {
        let slot = self.slot(cpu)?;
        let ptr = self.ptr.load(Acquire);
        if ptr & PTR_ATOMIC_DEAD == 0 {
            slot.owner_add(1);
            return Ok((true, Effects::default()));
        }
        if self.no_data() {
            let mut fx = Effects::default();
            fx.event(RefEvent::UseAfterExit);
            return Ok((false, fx));
        }
        if ptr & PTR_DEAD != 0 {
            return Ok((false, Effects::default()));
        }
        // atomic_long_inc_not_zero
        Ok((self.add_unless_zero(1), Effects::default()))
    }

    fn add_unless_zero(&self, nr: u64) -> bool {
        let mut cur = self.count.load(Relaxed);
        loop {
            if cur == 0 {
                return false;
            }
            match self.count.compare_exchange(cur, cur.wrapping_add(nr), AcqRel) {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }

    // ----------------------------------------------------------------------
    // Queries
    // ----------------------------------------------------------------------

    /// The logical count R (see the module comment) of the references users
    /// hold: the reference a pending switch holds on itself until its grace
    /// period is not counted. Exact when no fast-path operation runs
    /// concurrently.
    pub fn count(&self) -> i64 {
        let ctl = self.ctl.load(Acquire);
        let mut v = self.count.load(Acquire);
        if ctl & CTL_BIAS != 0 {
            v = v.wrapping_sub(PERCPU_COUNT_BIAS);
            for s in self.slots.iter() {
                v = v.wrapping_add(s.load(Relaxed));
            }
        }
        if ctl & CTL_SWITCHING != 0 {
            v = v.wrapping_sub(1);
        }
        v as i64
    }

    /// `percpu_ref_is_zero(ref)`: never true in percpu mode; after exit it
    /// reads the count `percpu_ref_exit` stashed (our `count` word keeps it).
    pub fn is_zero(&self) -> bool {
        if self.ptr.load(Acquire) & PTR_ATOMIC_DEAD == 0 {
            return false;
        }
        self.count.load(Acquire) == 0
    }

    /// `percpu_ref_is_dying(ref)`: the DEAD bit.
    pub fn is_dying(&self) -> bool {
        self.ptr.load(Acquire) & PTR_DEAD != 0
    }

    /// Which counter gets and puts use now.
    pub fn mode(&self) -> Mode {
        if self.ptr.load(Acquire) & PTR_ATOMIC_DEAD == 0 {
            Mode::Percpu
        } else {
            Mode::Atomic
        }
    }

    /// A percpu→atomic switch is waiting for its grace period.
    pub fn switch_pending(&self) -> bool {
        self.ctl.load(Acquire) & CTL_SWITCHING != 0
    }

    /// `percpu_ref_exit` has run (or the ref was never initialised).
    pub fn is_exited(&self) -> bool {
        self.no_data()
    }

    /// How many times `release()` ran since init.
    pub fn released(&self) -> u64 {
        self.released.load(Acquire)
    }

    /// The raw words, for canonical state hashing: (ptr flags, atomic
    /// counter, control flags). Per-CPU slots via [`PercpuRef::slot_value`].
    pub fn raw(&self) -> (u64, u64, u64) {
        (self.ptr.load(Relaxed), self.count.load(Relaxed), self.ctl.load(Relaxed))
    }

    pub fn slot_value(&self, cpu: usize) -> u64 {
        self.slots.get(cpu).map_or(0, |s| s.load(Relaxed))
    }

    /// Every word of the ref as (ptr flags, atomic counter, control flags,
    /// release count); with [`PercpuRef::slot_value`] this is the whole
    /// state. The explorer stores states as these words
    /// (`crate::fingerprint`).
    pub fn words(&self) -> [u64; 4] {
        [self.ptr.load(Relaxed), self.count.load(Relaxed), self.ctl.load(Relaxed), self.released.load(Relaxed)]
    }

    /// Restore a state saved with [`PercpuRef::words`] and the slot values
    /// (missing slots become 0, extra values are ignored). Like the control
    /// operations, the caller serializes this with every other use.
    pub fn set_words(&self, words: [u64; 4], slots: impl IntoIterator<Item = u64>) {
        let mut it = slots.into_iter();
        for s in self.slots.iter() {
            s.store(it.next().unwrap_or(0), Relaxed);
        }
        self.count.store(words[1], Relaxed);
        self.ctl.store(words[2], Relaxed);
        self.released.store(words[3], Relaxed);
        self.ptr.store(words[0], Release);
    }

    /// Become a copy of `src` without allocating (the explorer restores a
    /// parent state before each successor). Slot counts must match; extra
    /// slots on either side are zeroed / ignored.
    pub fn copy_from(&self, src: &Self) {
        self.set_words(src.words(), src.slots.iter().map(|s| s.load(Relaxed)));
    }

    /// Is the bias in the atomic counter, i.e. are the per-CPU counters
    /// live? When it is not, their values are never read again before they
    /// are zeroed (switch to percpu, init), so a canonical state can ignore
    /// them.
    pub fn percpu_counters_live(&self) -> bool {
        self.ctl.load(Relaxed) & CTL_BIAS != 0
    }

    // ----------------------------------------------------------------------
    // Control path (caller serializes; the kernel's percpu_ref_switch_lock)
    // ----------------------------------------------------------------------

    /// `wait_event_lock_irq(percpu_ref_switch_waitq, !confirm_switch)`: a
    /// switch may not start while another one waits for its grace period. The
    /// kernel sleeps until the RCU callback ran; in the model that grace
    /// period elapses now. (Real-thread callers synchronize RCU first.)
    fn wait_for_switch(&self, fx: &mut Effects) {
        if self.switch_pending() {
            fx.waited = true;
            fx.absorb(self.grace_period());
        }
    }

    /// `__percpu_ref_switch_mode(ref, confirm)`.
    fn switch_mode(&self, confirm: bool, fx: &mut Effects) {
        self.wait_for_switch(fx);
        let ctl = self.ctl.load(Relaxed);
        let ptr = self.ptr.load(Relaxed);
        if ctl & CTL_FORCE_ATOMIC != 0 || ptr & PTR_DEAD != 0 {
            self.switch_to_atomic_locked(confirm, fx);
        } else {
            self.switch_to_percpu_locked(fx);
        }
    }

    /// `__percpu_ref_switch_to_atomic(ref, confirm)`.
    fn switch_to_atomic_locked(&self, confirm: bool, fx: &mut Effects) {
        if self.ptr.load(Relaxed) & PTR_ATOMIC != 0 {
            // Already atomic: confirm right away, no grace period involved.
            fx.confirmed |= confirm;
            return;
        }
        // From here a get/put that sees the bit uses the atomic counter; one
        // that read the pointer before may still update its CPU's counter
        // until the grace period — the bias keeps the atomic counter away
        // from zero meanwhile.
        self.ptr.fetch_or(PTR_ATOMIC, AcqRel);
        let pending = CTL_SWITCHING | if confirm { CTL_CONFIRM } else { 0 };
        self.ctl.fetch_or(pending, AcqRel);
        // percpu_ref_get(ref): keep the ref alive until the confirmation.
        self.count.fetch_add(1, Relaxed);
        // call_rcu(..., percpu_ref_switch_to_atomic_rcu) — see grace_period().
    }

    /// `__percpu_ref_switch_to_percpu(ref)`.
    fn switch_to_percpu_locked(&self, fx: &mut Effects) {
        let ptr = self.ptr.load(Relaxed);
        if ptr & PTR_NO_PERCPU != 0 {
            // BUG_ON(!percpu_count): the counters were freed after an atomic
            // switch on a ref without ALLOW_REINIT.
            fx.event(RefEvent::SwitchPercpuNoReinit);
            return;
        }
        if ptr & PTR_ATOMIC == 0 {
            return;
        }
        if self.ctl.load(Relaxed) & CTL_ALLOW_REINIT == 0 {
            fx.event(RefEvent::SwitchPercpuNoReinit);
            return;
        }
        self.count.fetch_add(PERCPU_COUNT_BIAS, AcqRel);
        for s in self.slots.iter() {
            s.store(0, Relaxed);
        }
        self.ctl.fetch_or(CTL_BIAS, AcqRel);
        // smp_store_release: the zeroed counters are visible to any CPU that
        // sees ATOMIC cleared.
        self.ptr.fetch_and(!PTR_ATOMIC, Release);
    }

    /// The RCU callback `percpu_ref_switch_to_atomic_rcu` followed by
    /// `percpu_ref_call_confirm_rcu`: call when a grace period has elapsed
    /// since the pending switch began (the model's `rcu_grace_period` event).
    /// A no-op when no switch is pending.
    pub fn grace_period(&self) -> Effects {
        let mut fx = Effects::default();
        let ctl = self.ctl.load(Acquire);
        if ctl & CTL_SWITCHING == 0 {
            return fx;
        }
        // Sum the per-CPU counters *before* adding them: a get on one CPU
        // and the matching put on another only cancel in the sum.
        let mut sum: u64 = 0;
        for s in self.slots.iter() {
            sum = sum.wrapping_add(s.load(Relaxed));
        }
        // Add the sum and remove the bias in one atomic step.
        let after = self
            .count
            .fetch_add(sum.wrapping_sub(PERCPU_COUNT_BIAS), AcqRel)
            .wrapping_add(sum.wrapping_sub(PERCPU_COUNT_BIAS));
        self.ctl.fetch_and(!CTL_BIAS, AcqRel);
        if (after as i64) <= 0 {
            // WARN_ONCE("percpu ref (%ps) <= 0 (%ld) after switching to atomic"):
            // the switch's own reference is still in, so <= 0 means the
            // users' count is negative.
            fx.event(RefEvent::Underflow);
            fx.value = after as i64;
        }
        // percpu_ref_call_confirm_rcu: confirm, clear confirm_switch, wake.
        fx.confirmed |= ctl & CTL_CONFIRM != 0;
        self.ctl.fetch_and(!(CTL_SWITCHING | CTL_CONFIRM), AcqRel);
        if ctl & CTL_ALLOW_REINIT == 0 {
            // __percpu_ref_exit: free the counters; the pointer becomes
            // __PERCPU_REF_ATOMIC_DEAD, so even a plain switch_to_atomic
            // leaves the ref looking dead from now on.
            self.ptr.fetch_or(PTR_ATOMIC_DEAD | PTR_NO_PERCPU, AcqRel);
        }
        // Drop the reference taken by __percpu_ref_switch_to_atomic.
        fx.absorb(self.put_atomic(1));
        fx
    }

    /// `percpu_ref_kill_and_confirm(ref, confirm)`; `confirm` says whether a
    /// confirmation callback was passed (reported in `Effects::confirmed`).
    pub fn kill_and_confirm(&self, confirm: bool) -> Effects {
        let mut fx = Effects::default();
        if self.no_data() {
            fx.event(RefEvent::UseAfterExit);
            return fx;
        }
        if self.ptr.load(Relaxed) & PTR_DEAD != 0 {
            fx.event(RefEvent::DoubleKill);
        }
        self.ptr.fetch_or(PTR_DEAD, AcqRel);
        self.switch_mode(confirm, &mut fx);
        // Drop the initial reference. The ref is atomic now; if no switch is
        // pending this put may release synchronously — "there are no implied
        // RCU grace periods between kill and release".
        fx.absorb(self.put_atomic(1));
        fx
    }

    /// `percpu_ref_kill(ref)`.
    pub fn kill(&self) -> Effects {
        self.kill_and_confirm(false)
    }

    /// `percpu_ref_switch_to_atomic(ref, confirm)`: sticky until
    /// `switch_to_percpu`.
    pub fn switch_to_atomic(&self, confirm: bool) -> Effects {
        let mut fx = Effects::default();
        if self.no_data() {
            fx.event(RefEvent::UseAfterExit);
            return fx;
        }
        self.ctl.fetch_or(CTL_FORCE_ATOMIC, AcqRel);
        self.switch_mode(confirm, &mut fx);
        fx
    }

    /// `percpu_ref_switch_to_atomic_sync(ref)`: switch and wait for the
    /// confirmation (the grace period elapses inside the call).
    pub fn switch_to_atomic_sync(&self) -> Effects {
        let mut fx = self.switch_to_atomic(false);
        if self.switch_pending() {
            fx.waited = true;
            fx.absorb(self.grace_period());
        }
        fx
    }

    /// `percpu_ref_switch_to_percpu(ref)`: clears the sticky atomic state; on
    /// a dying ref the switch only happens at the next reinit.
    pub fn switch_to_percpu(&self) -> Effects {
        let mut fx = Effects::default();
        if self.no_data() {
            fx.event(RefEvent::UseAfterExit);
            return fx;
        }
        self.ctl.fetch_and(!CTL_FORCE_ATOMIC, AcqRel);
        self.switch_mode(false, &mut fx);
        fx
    }

    /// `percpu_ref_resurrect(ref)`: dead → live, re-taking the initial reference.
    pub fn resurrect(&self) -> Effects {
        let mut fx = Effects::default();
        if self.no_data() {
            fx.event(RefEvent::UseAfterExit);
            return fx;
        }
        let ptr = self.ptr.load(Relaxed);
        if ptr & PTR_DEAD == 0 {
            fx.event(RefEvent::ResurrectNotDead);
        }
        if ptr & PTR_ATOMIC_DEAD == 0 {
            fx.event(RefEvent::ResurrectPercpu);
        }
        self.ptr.fetch_and(!PTR_DEAD, AcqRel);
        // A new init/reinit cycle begins: release may run once more.
        self.ctl.fetch_and(!CTL_RELEASED, AcqRel);
        // percpu_ref_get(ref): lands on whichever counter is current.
        if self.ptr.load(Acquire) & PTR_ATOMIC_DEAD == 0 {
            if let Some(s) = self.slots.first() {
                s.fetch_add(1, Relaxed);
            }
        } else {
            self.count.fetch_add(1, Relaxed);
        }
        self.switch_mode(false, &mut fx);
        fx
    }

    /// `percpu_ref_reinit(ref)`: only legal once the count reached zero.
    pub fn reinit(&self) -> Effects {
        let mut fx = Effects::default();
        if self.no_data() {
            fx.event(RefEvent::UseAfterExit);
            return fx;
        }
        if !self.is_zero() {
            fx.event(RefEvent::ReinitNotZero);
        }
        fx.absorb(self.resurrect());
        fx
    }

    /// `percpu_ref_exit(ref)`: frees the counters and `ref->data`. A second
    /// exit, or exit of a never-initialised ref, is a no-op.
    pub fn exit(&self) -> Effects {
        let mut fx = Effects::default();
        if self.ptr.load(Relaxed) & PTR_NO_PERCPU == 0 && self.switch_pending() {
            fx.event(RefEvent::ExitDuringSwitch);
        }
        if self.no_data() {
            return fx;
        }
        // The pending switch (if any) is abandoned: its RCU callback would
        // touch freed memory. The atomic counter is what the kernel stashes
        // in the pointer bits for percpu_ref_is_zero(). Fold a still-live
        // percpu state into it so is_zero()/count() stay meaningful.
        let logical = self.count() as u64;
        self.count.store(logical, Relaxed);
        self.ctl.store((self.ctl.load(Relaxed) & CTL_RELEASED) | CTL_NO_DATA, Release);
        self.ptr.fetch_or(PTR_ATOMIC_DEAD | PTR_NO_PERCPU, Release);
        fx
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::init_flags::*;
    use super::*;
    use std::cell::Cell;

    type SimRef = PercpuRef<Cell<u64>>;

    /// The flags carry the kernel's values (include/linux/percpu-refcount.h).
    #[test]
    fn init_flags_have_the_kernels_values() {
        assert_eq!((INIT_ATOMIC, INIT_DEAD, ALLOW_REINIT, ALL), (1, 2, 4, 7));
    }

    /// `percpu_ref_kill_and_confirm`: the confirmation runs after the grace
    /// period, and only when one was asked for.
    #[test]
    fn a_kill_confirms_only_when_asked() {
        for confirm in [true, false] {
            let r = SimRef::new(2, 0);
            assert!(!r.kill_and_confirm(confirm).confirmed);
            let fx = r.grace_period();
            assert_eq!(fx.confirmed, confirm);
            assert!(!r.switch_pending());
            // a second grace period has nothing left to confirm
            assert!(!r.grace_period().confirmed);
        }
    }

    /// The point of a percpu_ref: while it is in percpu mode, gets and puts
    /// land on the CPU's own counter and leave the shared one alone; once
    /// killed and past the grace period, they go to the shared counter.
    #[test]
    fn percpu_mode_uses_the_cpus_counter_and_atomic_mode_the_shared_one() {
        let r = SimRef::new(2, 0);
        let shared = r.raw().1;
        r.get(1).unwrap();
        r.get_many(1, 3).unwrap();
        assert!(r.tryget_many(1, 2).unwrap().0);
        assert!(r.tryget(1).unwrap().0 && r.tryget_live(1).unwrap().0);
        assert_eq!(r.slot_value(1), 8);
        r.put_many(1, 5).unwrap();
        r.put(1).unwrap();
        assert_eq!((r.slot_value(1), r.slot_value(0), r.raw().1), (2, 0, shared));
        assert_eq!(r.count(), 3);
        r.kill();
        r.grace_period();
        let shared = r.raw().1;
        r.get(0).unwrap();
        r.get_many(0, 2).unwrap();
        assert!(r.tryget_many(0, 1).unwrap().0);
        assert_eq!((r.slot_value(0), r.raw().1), (0, shared + 4));
        r.put_many(0, 4).unwrap();
        assert_eq!((r.slot_value(0), r.raw().1), (0, shared));
    }

    /// A ref that was never initialised (or was put back to that state) is
    /// not in percpu mode: using it is a use after exit, exiting it is a
    /// harmless no-op.
    #[test]
    fn an_uninitialised_ref_is_used_after_exit() {
        assert!(!SimRef::new(2, 0).is_exited(), "a live ref is not exited");
        assert!(!SimRef::new(2, init_flags::INIT_ATOMIC).is_exited());
        let fresh = SimRef::uninit(2);
        let again = SimRef::new(2, 0);
        again.deinit();
        for r in [&fresh, &again] {
            assert!(r.exit().events.is_empty());
            assert!(r.get(0).unwrap().events.contains(RefEvent::UseAfterExit));
            assert_eq!(r.slot_value(0), 0);
            let (ok, fx) = r.tryget_many(0, 1).unwrap();
            assert!(!ok && fx.events.contains(RefEvent::UseAfterExit));
            assert!(r.put_many(0, 1).unwrap().events.contains(RefEvent::UseAfterExit));
            assert!(r.is_exited());
        }
    }

    /// `tryget_live` fails on a killed ref only: an atomic ref that is alive
    /// (started atomic, or switched without a kill) still hands out references.
    #[test]
    fn tryget_live_fails_only_once_killed() {
        let atomic = SimRef::new(2, INIT_ATOMIC);
        assert_eq!(atomic.mode(), Mode::Atomic);
        assert!(atomic.tryget_live(0).unwrap().0);
        let switched = SimRef::new(2, ALLOW_REINIT);
        switched.switch_to_atomic_sync();
        assert!(switched.tryget_live(1).unwrap().0);
        switched.kill();
        assert!(!switched.tryget_live(1).unwrap().0);
        assert!(switched.tryget(1).unwrap().0, "a plain tryget still succeeds above zero");
    }

    /// The per-CPU counters are live exactly while the bias is in the shared
    /// counter: in percpu mode, until the switch to atomic completes.
    #[test]
    fn per_cpu_counters_are_live_in_percpu_mode_only() {
        let r = SimRef::new(2, ALLOW_REINIT);
        assert!(r.percpu_counters_live());
        r.switch_to_atomic(false);
        assert!(r.percpu_counters_live(), "until the grace period folds them");
        r.grace_period();
        assert!(!r.percpu_counters_live());
        r.switch_to_percpu();
        assert!(r.percpu_counters_live());
        assert!(!SimRef::new(2, INIT_ATOMIC).percpu_counters_live());
        assert!(!SimRef::uninit(2).percpu_counters_live());
    }

    /// `percpu_ref_exit` of a live ref that is not switching warns about
    /// nothing; the ref is then dead to every user.
    #[test]
    fn exit_of_a_quiet_ref() {
        let r = SimRef::new(2, ALLOW_REINIT);
        r.get(1).unwrap();
        assert!(r.exit().events.is_empty());
        assert!(r.is_exited() && !r.percpu_counters_live());
        assert!(r.get(0).unwrap().events.contains(RefEvent::UseAfterExit));
        assert_eq!(r.slot_value(0), 0);
        // exiting while a switch waits for its grace period is a misuse
        let s = SimRef::new(2, 0);
        s.kill();
        assert!(s.exit().events.contains(RefEvent::ExitDuringSwitch));
    }

    /// Switching a ref that is already in percpu mode to percpu does
    /// nothing (no second bias).
    #[test]
    fn switch_to_percpu_of_a_percpu_ref_is_a_no_op() {
        let r = SimRef::new(2, ALLOW_REINIT);
        r.get(0).unwrap();
        let before = (r.words(), r.slot_value(0), r.slot_value(1));
        assert!(r.switch_to_percpu().events.is_empty());
        assert_eq!((r.words(), r.slot_value(0), r.slot_value(1)), before);
        assert_eq!(r.count(), 2);
    }

    /// Resurrecting a live percpu ref is a misuse; its reference still lands
    /// on the current counter (the first CPU's).
    #[test]
    fn resurrect_of_a_live_ref() {
        let r = SimRef::new(2, 0);
        let shared = r.raw().1;
        let fx = r.resurrect();
        assert!(fx.events.contains(RefEvent::ResurrectNotDead) && fx.events.contains(RefEvent::ResurrectPercpu));
        assert_eq!((r.slot_value(0), r.raw().1), (1, shared));
        // the legal case: killed, past the grace period, back to live
        let k = SimRef::new(2, ALLOW_REINIT);
        k.kill();
        k.grace_period();
        assert_eq!(k.count(), 0, "the kill dropped the initial reference");
        assert!(k.resurrect().events.is_empty());
        assert!(!k.is_dying());
        assert_eq!(k.count(), 1, "the initial reference is back");
    }

    /// The mode names the Python API and the trace use.
    #[test]
    fn mode_names() {
        let r = SimRef::new(1, 0);
        assert_eq!(r.mode().name(), "percpu");
        r.kill();
        assert_eq!(r.mode().name(), "atomic");
    }

    /// An event set is a bit mask over the events, in declaration order.
    #[test]
    fn event_sets() {
        let mut a = Events::NONE;
        assert!(a.is_empty() && a.bits() == 0 && a.iter().count() == 0);
        a.insert(RefEvent::Underflow);
        assert!(!a.is_empty() && a.contains(RefEvent::Underflow) && !a.contains(RefEvent::PutBelowZero));
        assert_eq!(a.bits(), 1 << RefEvent::Underflow as u8);
        let mut b = Events::NONE;
        b.insert(RefEvent::PutBelowZero);
        b.insert(RefEvent::Underflow);
        let u = a.union(b);
        assert_eq!(u.bits(), (1 << RefEvent::Underflow as u8) | (1 << RefEvent::PutBelowZero as u8));
        assert_eq!(u.iter().count(), 2);
        assert_eq!(a.union(a), a, "a union with itself is itself");
    }

    /// A nested step's value is kept only when it reported an event with one.
    #[test]
    fn absorbed_effects_keep_the_value_of_an_event() {
        let mut outer = Effects { value: 7, ..Effects::default() };
        outer.absorb(Effects { value: -3, ..Effects::default() });
        assert_eq!(outer.value, 7, "no event: the nested value is not one");
        let mut ev = Events::NONE;
        ev.insert(RefEvent::Underflow);
        outer.absorb(Effects { events: ev, value: 0, ..Effects::default() });
        assert_eq!(outer.value, 7, "an event without a value");
        assert!(outer.events.contains(RefEvent::Underflow));
        outer.absorb(Effects { events: ev, value: -2, released: true, ..Effects::default() });
        assert_eq!(outer.value, -2);
        assert!(outer.released && !outer.confirmed && !outer.waited);
    }

    #[test]
    fn issue_example_holds() {
        // new ref -> count 1; get(0), get(1), put(0); kill -> dying;
        // grace period; put(1) -> count 0, released once.
        let r = SimRef::new(4, 0);
        assert_eq!(r.count(), 1);
        r.get(0).unwrap();
        r.get(1).unwrap();
        r.put(0).unwrap();
        assert_eq!(r.count(), 2);
        let fx = r.kill();
        assert!(r.is_dying());
        assert!(!fx.released);
        assert_eq!(r.mode(), Mode::Atomic);
        assert!(r.switch_pending());
        let fx = r.grace_period();
        assert!(fx.events.is_empty(), "{fx:?}");
        assert!(!fx.released);
        let fx = r.put(1).unwrap();
        assert!(fx.released);
        assert_eq!(r.count(), 0);
        assert_eq!(r.released(), 1);
        assert!(r.is_zero());
    }

    #[test]
    fn zero_is_never_seen_in_percpu_mode() {
        let r = SimRef::new(2, 0);
        // Drop the initial ref on cpu 1 without killing: percpu counters sum
        // to zero, but nobody notices (no release, is_zero false).
        let fx = r.put(1).unwrap();
        assert!(!fx.released);
        assert_eq!(r.count(), 0);
        assert!(!r.is_zero());
        assert_eq!(r.released(), 0);
    }

    #[test]
    fn release_waits_for_the_grace_period_fold() {
        // A get on cpu 0 is matched by a put on cpu 1 after the kill: the
        // bias keeps the atomic counter from hitting zero before the fold.
        let r = SimRef::new(2, 0);
        r.get(0).unwrap();
        r.kill();
        let fx = r.put(1).unwrap(); // lands on the atomic counter (biased)
        assert!(!fx.released);
        assert_eq!(r.count(), 0, "logically zero, but not yet authoritative");
        let fx = r.grace_period();
        assert!(fx.released, "fold then the switch's own put releases");
        assert!(fx.events.is_empty(), "{fx:?}");
        assert_eq!(r.released(), 1);
    }

    #[test]
    fn kill_of_an_atomic_ref_releases_synchronously() {
        let r = SimRef::new(2, INIT_ATOMIC);
        assert_eq!(r.mode(), Mode::Atomic);
        let fx = r.kill_and_confirm(true);
        assert!(fx.released, "no grace period between kill and release");
        assert!(fx.confirmed, "already atomic: confirm runs synchronously");
        assert!(!r.switch_pending());
    }

    #[test]
    fn grace_period_underflow_is_reported() {
        let r = SimRef::new(2, 0);
        r.put(0).unwrap(); // drops the initial ref early (percpu: unseen)
        r.put(1).unwrap(); // and one more nobody owned
        let fx = r.kill();
        assert!(fx.events.is_empty());
        let fx = r.grace_period();
        assert!(fx.events.contains(RefEvent::Underflow), "{fx:?}");
        assert!(fx.value <= 0);
    }

    #[test]
    fn put_below_zero_in_atomic_mode_is_reported_and_does_not_release_again() {
        let r = SimRef::new(1, INIT_ATOMIC);
        assert!(r.put(0).unwrap().released);
        let fx = r.put(0).unwrap();
        assert!(fx.events.contains(RefEvent::PutBelowZero));
        assert!(!fx.released);
        assert_eq!(r.count(), -1);
        assert_eq!(r.released(), 1);
    }

    #[test]
    fn second_release_in_one_cycle_is_reported() {
        let r = SimRef::new(1, INIT_ATOMIC);
        assert!(r.put(0).unwrap().released);
        r.get(0).unwrap(); // a stale user revives a released ref
        let fx = r.put(0).unwrap();
        assert!(fx.released);
        assert!(fx.events.contains(RefEvent::DoubleRelease));
    }

    #[test]
    fn double_kill_warns_and_drops_the_initial_ref_again() {
        let r = SimRef::new(1, 0);
        r.get(0).unwrap();
        r.kill();
        r.grace_period();
        assert_eq!(r.count(), 1);
        let fx = r.kill();
        assert!(fx.events.contains(RefEvent::DoubleKill));
        assert!(fx.released, "the second kill drops a reference it did not own");
    }

    #[test]
    fn tryget_live_fails_after_kill_but_tryget_does_not() {
        let r = SimRef::new(2, 0);
        r.get(0).unwrap();
        r.kill();
        assert!(!r.tryget_live(1).unwrap().0);
        assert!(r.tryget(1).unwrap().0, "tryget ignores DEAD while count > 0");
        r.grace_period();
        r.put(1).unwrap();
        assert!(r.put(0).unwrap().released);
        assert!(!r.tryget(1).unwrap().0, "tryget fails at zero");
    }

    #[test]
    fn reinit_cycle_with_allow_reinit() {
        let r = SimRef::new(2, ALLOW_REINIT);
        r.kill();
        let fx = r.grace_period();
        assert!(fx.released);
        let fx = r.reinit();
        assert!(fx.events.is_empty(), "{fx:?}");
        assert_eq!(r.mode(), Mode::Percpu);
        assert!(!r.is_dying());
        assert_eq!(r.count(), 1);
        r.kill();
        assert!(r.grace_period().released, "a new cycle may release again");
        assert_eq!(r.released(), 2);
    }

    #[test]
    fn reinit_while_not_zero_warns() {
        let r = SimRef::new(1, ALLOW_REINIT);
        r.get(0).unwrap();
        r.kill();
        r.grace_period();
        let fx = r.reinit();
        assert!(fx.events.contains(RefEvent::ReinitNotZero));
    }

    #[test]
    fn resurrect_without_allow_reinit_hits_the_freed_counters() {
        let r = SimRef::new(1, 0);
        r.get(0).unwrap();
        r.kill();
        r.grace_period(); // frees the percpu counters (no ALLOW_REINIT)
        let fx = r.resurrect();
        assert!(fx.events.contains(RefEvent::SwitchPercpuNoReinit), "{fx:?}");
    }

    #[test]
    fn resurrect_of_a_live_ref_warns() {
        let r = SimRef::new(1, 0);
        let fx = r.resurrect();
        assert!(fx.events.contains(RefEvent::ResurrectNotDead));
        assert!(fx.events.contains(RefEvent::ResurrectPercpu));
    }

    #[test]
    fn plain_atomic_switch_without_reinit_leaves_the_ref_dead() {
        // A quirk of the kernel code: the confirm callback frees the per-CPU
        // counters and sets the pointer to __PERCPU_REF_ATOMIC_DEAD.
        let r = SimRef::new(1, 0);
        r.switch_to_atomic(false);
        assert!(!r.is_dying());
        r.grace_period();
        assert!(r.is_dying());
        assert!(!r.tryget_live(0).unwrap().0);
        // switching back is then a no-op (the ref looks dying)
        let fx = r.switch_to_percpu();
        assert!(fx.events.is_empty());
        assert_eq!(r.mode(), Mode::Atomic);
    }

    #[test]
    fn sticky_atomic_and_back_with_allow_reinit() {
        let r = SimRef::new(2, ALLOW_REINIT);
        r.get(1).unwrap();
        let fx = r.switch_to_atomic_sync();
        assert!(fx.waited);
        assert_eq!(r.mode(), Mode::Atomic);
        assert_eq!(r.count(), 2);
        let fx = r.switch_to_percpu();
        assert!(fx.events.is_empty());
        assert_eq!(r.mode(), Mode::Percpu);
        assert_eq!(r.count(), 2);
        r.put(0).unwrap();
        r.put(1).unwrap();
        assert_eq!(r.count(), 0);
        assert_eq!(r.released(), 0, "percpu mode never releases");
    }

    #[test]
    fn a_switch_waits_for_the_pending_one() {
        let r = SimRef::new(1, ALLOW_REINIT);
        r.switch_to_atomic(false);
        assert!(r.switch_pending());
        let fx = r.kill_and_confirm(true);
        assert!(fx.waited, "kill had to wait for the grace period");
        assert!(fx.confirmed, "already atomic after the wait: synchronous confirm");
        assert!(fx.released);
    }

    #[test]
    fn exit_during_switch_and_use_after_exit() {
        let r = SimRef::new(2, 0);
        r.kill();
        let fx = r.exit();
        assert!(fx.events.contains(RefEvent::ExitDuringSwitch));
        assert!(r.get(0).unwrap().events.contains(RefEvent::UseAfterExit));
        assert!(r.put(1).unwrap().events.contains(RefEvent::UseAfterExit));
        assert!(r.tryget_live(0).unwrap().1.events.contains(RefEvent::UseAfterExit));
        assert!(r.kill().events.contains(RefEvent::UseAfterExit));
        assert!(r.exit().events.is_empty(), "second exit is a no-op");
    }

    #[test]
    fn exit_of_an_uninitialised_ref_is_harmless() {
        let r = SimRef::uninit(2);
        assert!(r.exit().events.is_empty());
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn is_zero_works_after_exit() {
        let r = SimRef::new(1, 0);
        r.kill();
        assert!(r.grace_period().released);
        assert!(r.exit().events.is_empty());
        assert!(r.is_zero());
    }

    #[test]
    fn init_dead_starts_at_zero() {
        let r = SimRef::new(1, INIT_DEAD);
        assert!(r.is_dying());
        assert!(r.is_zero());
        let fx = r.reinit();
        assert!(fx.events.is_empty(), "{fx:?}");
        assert_eq!(r.mode(), Mode::Percpu);
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn bad_cpu_is_an_error_not_a_panic() {
        let r = SimRef::new(2, 0);
        assert_eq!(r.get(2), Err(NoSuchCpu { cpu: 2, cpus: 2 }));
        assert!(r.tryget_live(usize::MAX).is_err());
    }

    #[test]
    fn event_names_round_trip() {
        for e in RefEvent::ALL {
            assert_eq!(RefEvent::from_name(e.name()), Some(e));
        }
        let mut s = Events::NONE;
        s.insert(RefEvent::Underflow);
        s.insert(RefEvent::DoubleKill);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![RefEvent::DoubleKill, RefEvent::Underflow]);
    }
}
