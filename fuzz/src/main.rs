//! One libFuzzer target, three parsers: the first byte picks which one the
//! rest of the input goes to.
//!
//! - `0`: the `.zdf` text parser; a program that parses is run on a machine
//!   of its own shape (a shape out of range or an action out of its domain is
//!   an error, never a panic).
//! - `1`: the TOML rules loader (`Rules::from_toml_str`); rules that load are
//!   written back as TOML and loaded again, and must be the same rules.
//! - `2`: the byte decoder: the next two bytes pick the preset and a shape
//!   (up to 2 pgmaps per type, 8 pages, 4 CPUs, RAM and huge pages), the rest
//!   is `Machine::run_bytes`' input.
//!
//! The core must never panic on any input: a panic aborts (profile
//! `panic = "abort"`), and libFuzzer keeps the input as a crash.

use std::os::raw::{c_char, c_int};
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::rules::DeviceType;
use zdfuzz_core::{Config, Machine, Rules, Shape};

extern "C" {
    fn LLVMFuzzerRunDriver(
        argc: *mut c_int,
        argv: *mut *mut *mut c_char,
        callback: extern "C" fn(*const u8, usize) -> c_int,
    ) -> c_int;
}

fn zdf(text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    let Ok(program) = parse_program(&text) else { return };
    let rules = Rules::resolve(&program.rules).or_else(|_| Rules::resolve("e3"));
    let Ok(rules) = rules else { return };
    let Ok(mut m) = Machine::new(Config::with_shape(rules, program.shape.clone())) else { return };
    let _ = m.run(&program.ops);
}

fn toml(text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    if let Ok(r) = Rules::from_toml_str(&text, "fuzz.toml") {
        let again = Rules::from_toml_str(&r.to_toml(), "again.toml");
        assert_eq!(again.as_ref().ok(), Some(&r), "rules do not round-trip through TOML");
    }
}

fn bytes(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let presets = Rules::builtin();
    if presets.is_empty() {
        return;
    }
    let rules = presets[data[0] as usize % presets.len()].clone();
    let s = data[1] as usize;
    let all = DeviceType::ALL;
    let types: Vec<DeviceType> = all.iter().enumerate().filter(|(i, _)| s >> i & 1 == 1).map(|(_, t)| *t).collect();
    let shape = Shape {
        types: if types.is_empty() { vec![all[s % all.len()]] } else { types },
        pgmaps: 1 + (s >> 4 & 1),
        pages: 1 + (s >> 5 & 7),
        cpus: 1 + (s >> 1 & 3),
        ..Shape::default()
    };
    let Ok(mut m) = Machine::new(Config::with_shape(rules, shape)) else { return };
    let _ = m.run_bytes(&data[2..]);
}

extern "C" fn one_input(data: *const u8, size: usize) -> c_int {
    if data.is_null() || size == 0 {
        return 0;
    }
    // SAFETY: libFuzzer passes a buffer of `size` bytes that lives for the call
    #[allow(unsafe_code)]
    let data = unsafe { std::slice::from_raw_parts(data, size) };
    match data[0] % 3 {
        0 => zdf(&data[1..]),
        1 => toml(&data[1..]),
        _ => bytes(&data[1..]),
    }
    0
}

fn main() {
    let args: Vec<std::ffi::CString> =
        std::env::args().map(|a| std::ffi::CString::new(a).unwrap_or_default()).collect();
    let mut ptrs: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
    ptrs.push(std::ptr::null_mut());
    let mut argc = args.len() as c_int;
    let mut argv = ptrs.as_mut_ptr();
    // SAFETY: argv holds argc NUL-terminated strings (and a final NULL) that
    // outlive the call, as libFuzzer's driver expects
    #[allow(unsafe_code)]
    let rc = unsafe { LLVMFuzzerRunDriver(&mut argc, &mut argv, one_input) };
    std::process::exit(rc);
}
