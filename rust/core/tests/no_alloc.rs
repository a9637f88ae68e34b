//! `run_bytes` allocates nothing per action: a counting allocator sees no
//! allocation while clean programs run on a reused Machine.
#![cfg(not(loom))]

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocs_here;
use zdfuzz_core::{Config, DeviceType, Machine, Rules, Shape};

#[test]
fn clean_programs_allocate_nothing() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut checked = 0;
    for preset in ["e1", "e2", "e3", "e4", "e5", "p20"] {
        for types in
            [vec![DeviceType::Private], vec![DeviceType::P2pdma], vec![DeviceType::Fsdax], DeviceType::DEFAULT.to_vec()]
        {
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
                let before = allocs_here();
                let v = m.run_bytes(&data);
                let after = allocs_here();
                if v.ok() {
                    assert_eq!(
                        after,
                        before,
                        "{preset}: {} allocations in a clean run of {} steps",
                        after - before,
                        v.steps
                    );
                    checked += v.steps;
                }
            }
        }
    }
    assert!(checked > 10_000, "too few clean steps checked: {checked}");
}
