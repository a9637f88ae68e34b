//! The oracle's view of who holds a struct page (`Holders`): every kind of
//! holder alone, two kinds at once, and a kernel user alone, decide "in use"
//! (a free or teardown under it is a use after free), "anyone" (a file
//! association counts), the references a migration cannot account for
//! (I-M2) and the DAX "busy" references — and each says so in the message.
#![cfg(not(loom))]

use zdfuzz_core::oracle::Holders;

/// One holder of each kind, alone: (name, holders, counts as in use,
/// unexplained for migration, extra (busy) references, message text).
fn each_alone() -> Vec<(&'static str, Holders, bool, u16, u16, &'static str)> {
    let z = Holders::default();
    vec![
        ("maps", Holders { maps: 2, ..z }, true, 0, 0, "2 mapping(s)"),
        ("gup_gets", Holders { gup_gets: 2, ..z }, true, 2, 2, "2 GUP reference(s)"),
        ("gup_pins", Holders { gup_pins: 3, ..z }, true, 3, 3, "3 GUP pin(s)"),
        ("kernel_gets", Holders { kernel_gets: 1, ..z }, true, 1, 1, "1 kernel reference(s)"),
        ("collect", Holders { collect: 1, ..z }, true, 0, 0, "1 migration collect reference(s)"),
        ("fault", Holders { fault: 2, ..z }, true, 2, 0, "2 fault-path reference(s)"),
        ("mig_entries", Holders { mig_entries: 1, ..z }, true, 0, 0, "1 migration entr(ies)"),
        ("mig_dst", Holders { mig_dst: true, ..z }, true, 0, 0, "a migration in flight (destination)"),
        ("driver", Holders { driver: true, ..z }, true, 0, 0, "its driver's allocation"),
        ("p2p_kernel", Holders { p2p_kernel: true, ..z }, true, 0, 0, "a live pci_alloc_p2pmem allocation"),
        // a file association alone keeps the page owned, not in use
        ("fs", Holders { fs: true, ..z }, false, 0, 0, "a filesystem block association"),
        // a longterm pin is also a pin: alone (inconsistent) it is no holder
        ("longterm_pins", Holders { longterm_pins: 1, ..z }, false, 0, 0, "nobody"),
    ]
}

#[test]
fn nobody_holds_a_fresh_page() {
    let h = Holders::default();
    assert!(!h.in_use() && !h.anyone());
    assert_eq!((h.unexplained_for_migration(), h.extra_refs()), (0, 0));
    assert_eq!(h.describe(), "nobody");
}

#[test]
fn each_kind_of_holder_alone() {
    for (name, h, in_use, unexplained, extra, text) in each_alone() {
        assert_eq!(h.in_use(), in_use, "{name}");
        assert_eq!(h.anyone(), in_use || h.fs, "{name}");
        assert_eq!(h.unexplained_for_migration(), unexplained, "{name}");
        assert_eq!(h.extra_refs(), extra, "{name}");
        assert_eq!(h.describe(), text, "{name}");
    }
}

#[test]
fn two_kinds_of_holder_at_once_add_up() {
    let all = each_alone();
    for (a, ha, ia, ua, ea, ta) in &all {
        for (b, hb, ib, ub, eb, tb) in &all {
            if a >= b {
                continue;
            }
            // the union of the two holders (counts from one, flags from both)
            let h = Holders {
                maps: ha.maps + hb.maps,
                gup_gets: ha.gup_gets + hb.gup_gets,
                gup_pins: ha.gup_pins + hb.gup_pins,
                longterm_pins: ha.longterm_pins + hb.longterm_pins,
                kernel_gets: ha.kernel_gets + hb.kernel_gets,
                driver: ha.driver || hb.driver,
                p2p_kernel: ha.p2p_kernel || hb.p2p_kernel,
                fs: ha.fs || hb.fs,
                collect: ha.collect + hb.collect,
                fault: ha.fault + hb.fault,
                mig_dst: ha.mig_dst || hb.mig_dst,
                mig_entries: ha.mig_entries + hb.mig_entries,
                dirty_pte: false,
            };
            assert_eq!(h.in_use(), *ia || *ib, "{a} + {b}");
            assert_eq!(h.unexplained_for_migration(), ua + ub, "{a} + {b}");
            assert_eq!(h.extra_refs(), ea + eb, "{a} + {b}");
            // both appear in the message, in a fixed order
            let d = h.describe();
            for t in [ta, tb] {
                assert!(*t == "nobody" || d.contains(t), "{a} + {b}: {d}");
            }
        }
    }
}
