//! The invariant table as reports, JSON and signatures spell it: each id is
//! `I-<letter><number>`, unique, with a plain-words meaning, and its class
//! named as docs/json.md lists (`safety`, `liveness`, `conformance`).
#![cfg(not(loom))]

use std::collections::HashSet;
use zdfuzz_core::{Class, Invariant};

#[test]
fn class_names_are_the_documented_words() {
    assert_eq!(Class::Safety.name(), "safety");
    assert_eq!(Class::Liveness.name(), "liveness");
    assert_eq!(Class::Conformance.name(), "conformance");
}

#[test]
fn every_invariant_has_a_unique_id_a_meaning_and_a_class() {
    let mut seen = HashSet::new();
    for &inv in Invariant::ALL {
        let id = inv.id();
        let rest = id.strip_prefix("I-").unwrap_or_else(|| panic!("{id}"));
        assert!(rest.starts_with(|c: char| c.is_ascii_uppercase()), "{id}");
        assert!(rest[1..].chars().all(|c| c.is_ascii_digit()) && rest.len() > 1, "{id}");
        assert!(seen.insert(id), "{id} twice");
        assert!(inv.doc().len() > 20, "{id}: {}", inv.doc());
        // conformance checks judge the preset against itself and say so
        assert_eq!(inv.class() == Class::Conformance, inv.doc().ends_with("(conformance)"), "{id}");
    }
    // a few the documentation leans on
    let class = |id: &str| Invariant::ALL.iter().find(|i| i.id() == id).map(|i| i.class().name());
    assert_eq!(class("I-L2"), Some("safety"));
    assert_eq!(class("I-L4"), Some("liveness"));
    assert_eq!(class("I-P1"), Some("conformance"));
}
