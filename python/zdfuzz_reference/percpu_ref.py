"""percpu_ref: the per-CPU reference count behind ``pgmap->ref``.

Mirrors lib/percpu-refcount.c (v5.10+, the ``percpu_ref_data`` split) the way
``rust/core/src/percpu_ref.rs`` models it for the deterministic simulation:
one counter per CPU plus a shared atomic counter, the 2^63 bias that keeps the
atomic counter away from zero until the RCU callback folds the per-CPU sums in,
``percpu_ref_kill`` (DEAD, switch to atomic, drop the initial reference), the
RCU grace period as an explicit call, ``percpu_ref_tryget_live``,
``percpu_ref_tryget_many``, ``percpu_ref_exit``.

Everything is single-threaded here, so the words are plain Python ints kept
modulo 2^64 (the kernel's ``unsigned long`` arithmetic). Misuse the kernel
WARNs about, BUGs on or silently gets wrong is reported as an event name in
the returned :class:`Effects`; the operation then does what the kernel code
would do next.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MASK = (1 << 64) - 1
#: ``PERCPU_COUNT_BIAS = 1UL << (BITS_PER_LONG - 1)``
BIAS = 1 << 63

# percpu_ref_init() flags
INIT_ATOMIC = 1 << 0
INIT_DEAD = 1 << 1
ALLOW_REINIT = 1 << 2

# Low bits of percpu_count_ptr: what the fast path reads.
_PTR_ATOMIC = 1 << 0  # __PERCPU_REF_ATOMIC
_PTR_DEAD = 1 << 1  # __PERCPU_REF_DEAD
_PTR_NO_PERCPU = 1 << 2  # the per-CPU counters were freed
_PTR_ATOMIC_DEAD = _PTR_ATOMIC | _PTR_DEAD

# The rest of percpu_ref_data.
_CTL_FORCE_ATOMIC = 1 << 0
_CTL_ALLOW_REINIT = 1 << 1
_CTL_SWITCHING = 1 << 2  # confirm_switch != NULL: waits for its grace period
_CTL_CONFIRM = 1 << 3
_CTL_BIAS = 1 << 4  # the bias is in the atomic counter
_CTL_NO_DATA = 1 << 5  # ref->data == NULL (exited, or never initialised)
_CTL_RELEASED = 1 << 6  # release() ran in this init/reinit cycle

#: event name -> the invariant it breaks (docs/model.md §1), in declaration order
EVENTS: dict[str, str] = {
    "double_kill": "I-R4",
    "reinit_not_zero": "I-R4",
    "resurrect_not_dead": "I-R4",
    "resurrect_percpu": "I-R4",
    "use_after_exit": "I-R7",
    "underflow": "I-R1",
    "put_below_zero": "I-R1",
    "exit_during_switch": "I-R8",
    "switch_percpu_no_reinit": "I-R4",
    "double_release": "I-R2",
}


def _signed(v: int) -> int:
    """A 64-bit word read as ``long``."""
    v &= MASK
    return v - (1 << 64) if v >= BIAS else v


@dataclass
class Effects:
    """What one operation did besides its return value."""

    released: bool = False
    confirmed: bool = False
    waited: bool = False
    events: set[str] = field(default_factory=set)
    #: the count seen, for underflow / put_below_zero
    value: int = 0

    def absorb(self, other: Effects) -> None:
        """Merge the effects of a nested step (a put inside kill, ...)."""
        self.released |= other.released
        self.confirmed |= other.confirmed
        self.waited |= other.waited
        if other.events and other.value != 0:
            self.value = other.value
        self.events |= other.events

    def ordered_events(self) -> list[str]:
        """The events in declaration order (the order the Rust bit set iterates)."""
        return [e for e in EVENTS if e in self.events]


class PercpuRef:
    """``struct percpu_ref`` plus its ``percpu_ref_data``."""

    def __init__(self, cpus: int) -> None:
        self.slots = [0] * max(cpus, 1)
        self.ptr = 0
        self.count_word = 0
        self.ctl = 0
        self.released_times = 0
        self.deinit()

    def deinit(self) -> None:
        """Back to the never-initialised state (all-zero struct, no data)."""
        self.slots = [0] * len(self.slots)
        self.count_word = 0
        self.ctl = _CTL_NO_DATA
        self.released_times = 0
        self.ptr = _PTR_ATOMIC_DEAD | _PTR_NO_PERCPU

    def init(self, flags: int) -> None:
        """``percpu_ref_init(ref, release, flags, gfp)``."""
        ptr = 0
        ctl = 0
        start = 0
        if flags & ALLOW_REINIT:
            ctl |= _CTL_ALLOW_REINIT
        if flags & INIT_ATOMIC:
            ctl |= _CTL_FORCE_ATOMIC
        if flags & (INIT_ATOMIC | INIT_DEAD):
            ptr |= _PTR_ATOMIC
            ctl |= _CTL_ALLOW_REINIT
        else:
            start += BIAS
            ctl |= _CTL_BIAS
        if flags & INIT_DEAD:
            ptr |= _PTR_DEAD
        else:
            start += 1  # the initial reference
        self.slots = [0] * len(self.slots)
        self.count_word = start & MASK
        self.ctl = ctl
        self.released_times = 0
        self.ptr = ptr

    # -- fast path ---------------------------------------------------------

    def _no_data(self) -> bool:
        return self.ctl & _CTL_NO_DATA != 0

    def _percpu(self) -> bool:
        """``__ref_is_percpu``: neither ATOMIC nor DEAD is set."""
        return self.ptr & _PTR_ATOMIC_DEAD == 0

    def get_many(self, cpu: int, nr: int) -> Effects:
        """``percpu_ref_get_many(ref, nr)`` on ``cpu``."""
        fx = Effects()
        if self._percpu():
            self.slots[cpu] = (self.slots[cpu] + nr) & MASK
        elif self._no_data():
            fx.events.add("use_after_exit")
        else:
            self.count_word = (self.count_word + nr) & MASK
        return fx

    def put_many(self, cpu: int, nr: int) -> Effects:
        """``percpu_ref_put_many(ref, nr)``: no zero test in percpu mode."""
        if self._percpu():
            self.slots[cpu] = (self.slots[cpu] - nr) & MASK
            return Effects()
        return self._put_atomic(nr)

    def _put_atomic(self, nr: int) -> Effects:
        """``if (atomic_long_sub_and_test(nr, &data->count)) release(ref)``."""
        fx = Effects()
        if self._no_data():
            fx.events.add("use_after_exit")
            return fx
        prev = self.count_word
        new = (prev - nr) & MASK
        self.count_word = new
        if prev < nr:
            # the unbiased, authoritative counter went below zero unnoticed
            fx.events.add("put_below_zero")
            fx.value = _signed(new)
        elif new == 0:
            fx.released = True
            self.released_times += 1
            if self.ctl & _CTL_RELEASED:
                fx.events.add("double_release")
            self.ctl |= _CTL_RELEASED
        return fx

    def tryget_many(self, cpu: int, nr: int) -> tuple[bool, Effects]:
        """``percpu_ref_tryget_many``: ignores DEAD; fails only at zero."""
        if self._percpu():
            self.slots[cpu] = (self.slots[cpu] + nr) & MASK
            return True, Effects()
        if self._no_data():
            fx = Effects()
            fx.events.add("use_after_exit")
            return False, fx
        return self._add_unless_zero(nr), Effects()

    def tryget_live(self, cpu: int) -> tuple[bool, Effects]:
        """``percpu_ref_tryget_live``: fails once DEAD is set."""
        if self._percpu():
            self.slots[cpu] = (self.slots[cpu] + 1) & MASK
            return True, Effects()
        if self._no_data():
            fx = Effects()
            fx.events.add("use_after_exit")
            return False, fx
        if self.ptr & _PTR_DEAD:
            return False, Effects()
        return self._add_unless_zero(1), Effects()

    def _add_unless_zero(self, nr: int) -> bool:
        if self.count_word == 0:
            return False
        self.count_word = (self.count_word + nr) & MASK
        return True

    # -- queries -----------------------------------------------------------

    def count(self) -> int:
        """The users' logical count: atomic - bias + per-CPU sums, without the
        reference a pending switch holds on itself."""
        v = self.count_word
        if self.ctl & _CTL_BIAS:
            v -= BIAS
            v += sum(self.slots)
        if self.ctl & _CTL_SWITCHING:
            v -= 1
        return _signed(v)

    def is_dying(self) -> bool:
        """``percpu_ref_is_dying``: the DEAD bit."""
        return self.ptr & _PTR_DEAD != 0

    def switch_pending(self) -> bool:
        """A percpu->atomic switch waits for its grace period."""
        return self.ctl & _CTL_SWITCHING != 0

    def mode(self) -> str:
        return "percpu" if self._percpu() else "atomic"

    # -- control path --------------------------------------------------------

    def _wait_for_switch(self, fx: Effects) -> None:
        """A switch may not start while another waits for its grace period: in
        the model that grace period elapses now."""
        if self.switch_pending():
            fx.waited = True
            fx.absorb(self.grace_period())

    def _switch_mode(self, confirm: bool, fx: Effects) -> None:
        """``__percpu_ref_switch_mode``."""
        self._wait_for_switch(fx)
        if self.ctl & _CTL_FORCE_ATOMIC or self.ptr & _PTR_DEAD:
            self._switch_to_atomic_locked(confirm, fx)
        else:
            self._switch_to_percpu_locked(fx)

    def _switch_to_atomic_locked(self, confirm: bool, fx: Effects) -> None:
        if self.ptr & _PTR_ATOMIC:
            fx.confirmed |= confirm  # already atomic: confirm at once
            return
        self.ptr |= _PTR_ATOMIC
        self.ctl |= _CTL_SWITCHING | (_CTL_CONFIRM if confirm else 0)
        # the switch's own reference, dropped by the RCU callback
        self.count_word = (self.count_word + 1) & MASK

    def _switch_to_percpu_locked(self, fx: Effects) -> None:
        if self.ptr & _PTR_NO_PERCPU:
            fx.events.add("switch_percpu_no_reinit")  # BUG_ON(!percpu_count)
            return
        if not self.ptr & _PTR_ATOMIC:
            return
        if not self.ctl & _CTL_ALLOW_REINIT:
            fx.events.add("switch_percpu_no_reinit")
            return
        self.count_word = (self.count_word + BIAS) & MASK
        self.slots = [0] * len(self.slots)
        self.ctl |= _CTL_BIAS
        self.ptr &= ~_PTR_ATOMIC

    def grace_period(self) -> Effects:
        """The RCU callback ``percpu_ref_switch_to_atomic_rcu``: fold the
        per-CPU sums in and remove the bias in one add, confirm, and drop the
        switch's own reference. A no-op when no switch is pending."""
        fx = Effects()
        ctl = self.ctl
        if not ctl & _CTL_SWITCHING:
            return fx
        delta = (sum(self.slots) - BIAS) & MASK
        self.count_word = (self.count_word + delta) & MASK
        after = self.count_word
        self.ctl &= ~_CTL_BIAS
        if _signed(after) <= 0:
            fx.events.add("underflow")
            fx.value = _signed(after)
        fx.confirmed |= ctl & _CTL_CONFIRM != 0
        self.ctl &= ~(_CTL_SWITCHING | _CTL_CONFIRM)
        if not ctl & _CTL_ALLOW_REINIT:
            # __percpu_ref_exit: the counters are freed, the ref looks dead
            self.ptr |= _PTR_ATOMIC_DEAD | _PTR_NO_PERCPU
        fx.absorb(self._put_atomic(1))
        return fx

    def kill(self) -> Effects:
        """``percpu_ref_kill``: DEAD, switch to atomic, drop the initial ref."""
        fx = Effects()
        if self._no_data():
            fx.events.add("use_after_exit")
            return fx
        if self.ptr & _PTR_DEAD:
            fx.events.add("double_kill")
        self.ptr |= _PTR_DEAD
        self._switch_mode(False, fx)
        fx.absorb(self._put_atomic(1))
        return fx

    def exit(self) -> Effects:
        """``percpu_ref_exit``: free the counters and ``ref->data``; the
        users' count stays readable (the kernel stashes it in the pointer)."""
        fx = Effects()
        if not self.ptr & _PTR_NO_PERCPU and self.switch_pending():
            fx.events.add("exit_during_switch")
        if self._no_data():
            return fx
        logical = self.count() & MASK
        self.count_word = logical
        self.ctl = (self.ctl & _CTL_RELEASED) | _CTL_NO_DATA
        self.ptr |= _PTR_ATOMIC_DEAD | _PTR_NO_PERCPU
        return fx
