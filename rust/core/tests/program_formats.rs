//! The three program encodings round-trip.
#![cfg(not(loom))]

use proptest::prelude::*;
use zdfuzz_core::program::json::{program_from_json_str, program_to_json_string};
use zdfuzz_core::program::text::{parse_program, program_to_text};
use zdfuzz_core::{Config, DeviceType, Machine, Program, Rules, Shape};

fn shapes() -> impl Strategy<Value = Shape> {
    (prop::sample::subsequence(DeviceType::DEFAULT.to_vec(), 1..=4), 1usize..=2, 1usize..=6, 1usize..=3)
        .prop_map(|(types, pgmaps, pages, cpus)| Shape { types, pgmaps, pages, cpus, ..Shape::default() })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Decoded programs are canonical: bytes -> ops -> bytes -> the same ops;
    /// and text and JSON round-trip exactly.
    #[test]
    fn encodings_round_trip(preset in prop::sample::select(vec!["e1", "e2", "e3", "e4", "p20"]),
                            shape in shapes(),
                            data in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut m = Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), shape.clone())).unwrap();
        let ops = m.decode_program(&data);
        let p = Program::new(preset, shape, ops.clone());
        let bytes = m.encode_program(&ops);
        prop_assert_eq!(m.decode_program(&bytes), ops.clone(), "bytes round trip");
        let text = program_to_text(&p);
        let back = parse_program(&text).unwrap();
        prop_assert_eq!(&back.ops, &p.ops);
        prop_assert_eq!(&back.shape, &p.shape);
        prop_assert_eq!(&back.rules, &p.rules);
        prop_assert_eq!(program_to_text(&back), text, "text is canonical");
        let json = program_to_json_string(&p);
        let back = program_from_json_str(&json).unwrap();
        prop_assert_eq!(&back.ops, &p.ops);
        prop_assert_eq!(&back.shape, &p.shape);
    }

    /// The decoder is total and deterministic: any bytes decode, twice the same.
    #[test]
    fn decoder_is_total_and_deterministic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut m = Machine::new(Config::new(Rules::preset("e3").unwrap())).unwrap();
        let a = m.decode_program(&data);
        let b = m.decode_program(&data);
        prop_assert_eq!(a, b);
        let v1 = m.run_bytes(&data);
        let v2 = m.run_bytes(&data);
        prop_assert_eq!(v1, v2);
    }
}

#[test]
fn a_one_byte_mutation_changes_little() {
    // mutations stay meaningful: flipping one operand byte changes at most
    // the actions from there on, never the prefix
    let mut m = Machine::new(Config::new(Rules::preset("e3").unwrap())).unwrap();
    let data: Vec<u8> = (0..120u32).map(|i| (i * 37 % 251) as u8).collect();
    let a = m.decode_program(&data);
    let mut d2 = data.clone();
    d2[60] ^= 1;
    let b = m.decode_program(&d2);
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    assert!(common >= 10, "prefix shared: {common} of {}", a.len());
}

#[test]
fn json_errors_are_clear() {
    let e = program_from_json_str("{\"ops\": [{\"op\": \"fork\", \"proc\": 0}]}").unwrap_err();
    assert!(e.message.contains("ops[0]") && e.message.contains("child"), "{e}");
    let e = program_from_json_str("{\"ops\": [}").unwrap_err();
    assert_eq!(e.line, 1, "{e}");
}
