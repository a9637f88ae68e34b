//! `run_bytes` allocates nothing per action: a counting allocator sees no
//! allocation while clean programs run on a reused Machine.
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use zdfuzz_core::{Config, DeviceType, Machine, Rules, Shape};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator, which
// upholds GlobalAlloc's contract; the counter has no effect on memory.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout the caller passed, as GlobalAlloc requires.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: p was allocated by System.alloc with layout l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn clean_programs_allocate_nothing() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut checked = 0;
    for preset in ["e1", "e2", "e3", "e4", "e5", "p20"] {
        for types in [vec![DeviceType::Private], vec![DeviceType::P2pdma], vec![DeviceType::Fsdax], DeviceType::ALL.to_vec()] {
            let shape = Shape { types, ..Shape::default() };
            let mut m = Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), shape)).unwrap();
            let mut data = vec![0u8; 256];
            for _ in 0..300 {
                for b in data.iter_mut() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *b = (seed >> 32) as u8;
                }
                let before = ALLOCS.load(Ordering::Relaxed);
                let v = m.run_bytes(&data);
                let after = ALLOCS.load(Ordering::Relaxed);
                if v.ok() {
                    assert_eq!(after, before, "{preset}: {} allocations in a clean run of {} steps", after - before, v.steps);
                    checked += v.steps;
                }
            }
        }
    }
    assert!(checked > 10_000, "too few clean steps checked: {checked}");
}
