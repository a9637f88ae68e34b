//! The `.zdf` text format.
//!
//! ```text
//! # anything after '#' is a comment
//! rules p20
//! config types=generic,p2pdma pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 files=2 file_pages=2 tasks=4
//! memremap_pages pgmap=0
//! dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0
//! get_user_pages proc=0 addr=0 flags=0 cpu=1
//! memunmap_pages pgmap=0 cpu=0
//! step task=0
//! ```
//!
//! Grammar (one item per line; blank lines and comments anywhere):
//!
//! ```text
//! program   := header* action*
//! header    := "rules" NAME | "config" (key "=" value)*
//! action    := KIND (operand "=" value)*          KIND: a kernel function name (see `zdfuzz kinds`)
//! value     := decimal | "none" (cached) | "gup" | "kernel" (by)
//!            | "0" | FOLL_LONGTERM | FOLL_PCI_P2PDMA | GUP_FAST, joined by | (flags)
//! ```
//!
//! Operands may come in any order; `cpu` defaults to 0 and `cached` to none.
//! The config keys are `types` (comma-separated) and the [`Shape`] fields.

use super::op::{
    Dim, Op, OpKind, BY_GUP, BY_KERNEL, FOLL_LONGTERM, FOLL_PCI_P2PDMA, GUP_FAST, KINDS, MAX_ARGS, SELECT_COMPOUND,
    SELECT_DEVICE_COHERENT, SELECT_DEVICE_PRIVATE, SELECT_SYSTEM, SELECT_VALUES, SITE_NAMES,
};
use super::{Program, ProgramError, Shape};
use crate::rules::DeviceType;
use std::fmt::Write;

fn flags_text(v: u16) -> String {
    let mut parts = Vec::new();
    if v & FOLL_LONGTERM != 0 {
        parts.push("FOLL_LONGTERM");
    }
    if v & FOLL_PCI_P2PDMA != 0 {
        parts.push("FOLL_PCI_P2PDMA");
    }
    if v & GUP_FAST != 0 {
        parts.push("GUP_FAST");
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join("|")
    }
}

/// `MIGRATE_VMA_SELECT_*` bits as text: "SYSTEM", "DEVICE_PRIVATE|COMPOUND", ...
pub fn select_text(v: u16) -> String {
    let mut parts = Vec::new();
    if v & SELECT_SYSTEM != 0 {
        parts.push("SYSTEM");
    }
    if v & SELECT_DEVICE_PRIVATE != 0 {
        parts.push("DEVICE_PRIVATE");
    }
    if v & SELECT_DEVICE_COHERENT != 0 {
        parts.push("DEVICE_COHERENT");
    }
    if v & SELECT_COMPOUND != 0 {
        parts.push("COMPOUND");
    }
    parts.join("|")
}

/// The text of an operand value (what `.zdf`, JSON and Python show).
pub fn value_text(dim: Dim, v: u16) -> Option<String> {
    match dim {
        Dim::Cached if v == 0 => Some("none".into()),
        Dim::Cached => None,
        Dim::By => Some(if v == BY_GUP { "gup" } else { "kernel" }.into()),
        Dim::Flags => Some(flags_text(v)),
        Dim::Select => Some(select_text(v)),
        Dim::Site => SITE_NAMES.get(v as usize).map(|s| s.to_string()),
        _ => None,
    }
}

/// One action as a line of text (no newline).
pub fn op_to_text(op: &Op) -> String {
    let info = op.kind.info();
    let mut s = String::from(info.name);
    for (i, (name, dim)) in info.args.iter().enumerate() {
        let v = op.args[i];
        let _ = match dim {
            Dim::Cached if v == 0 => write!(s, " {name}=none"),
            Dim::Cached => write!(s, " {name}={}", v - 1),
            Dim::By => write!(s, " {name}={}", if v == BY_GUP { "gup" } else { "kernel" }),
            Dim::Flags => write!(s, " {name}={}", flags_text(v)),
            Dim::Select => write!(s, " {name}={}", select_text(v)),
            Dim::Site => write!(s, " {name}={}", SITE_NAMES.get(v as usize).copied().unwrap_or("?")),
            _ => write!(s, " {name}={v}"),
        };
    }
    s
}

/// The whole program as `.zdf` text.
pub fn program_to_text(p: &Program) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "rules {}", p.rules);
    let types: Vec<&str> = p.shape.types.iter().map(|t| t.name()).collect();
    let _ = write!(s, "config types={}", types.join(","));
    for (k, v) in p.shape.header_fields() {
        let _ = write!(s, " {k}={v}");
    }
    s.push('\n');
    for op in &p.ops {
        s.push_str(&op_to_text(op));
        s.push('\n');
    }
    s
}

fn err(line: usize, col: usize, message: String) -> ProgramError {
    ProgramError { file: String::new(), line, col, message }
}

fn parse_value(dim: Dim, text: &str) -> Option<u16> {
    match dim {
        Dim::Cached if text == "none" => Some(0),
        Dim::Cached => text.parse::<u16>().ok()?.checked_add(1),
        Dim::By => match text {
            "gup" => Some(BY_GUP),
            "kernel" => Some(BY_KERNEL),
            _ => None,
        },
        Dim::Flags => {
            if let Ok(v) = text.parse::<u16>() {
                return (v < 8).then_some(v);
            }
            let mut v = 0;
            for part in text.split('|') {
                v |= match part.trim() {
                    "FOLL_LONGTERM" | "longterm" => FOLL_LONGTERM,
                    "FOLL_PCI_P2PDMA" | "p2pdma" => FOLL_PCI_P2PDMA,
                    "GUP_FAST" | "fast" => GUP_FAST,
                    _ => return None,
                };
            }
            Some(v)
        }
        Dim::Site => SITE_NAMES.iter().position(|s| *s == text).map(|i| i as u16),
        Dim::Select => {
            let mut v = 0;
            for part in text.split('|') {
                v |= match part.trim().trim_start_matches("MIGRATE_VMA_SELECT_") {
                    "SYSTEM" | "system" => SELECT_SYSTEM,
                    "DEVICE_PRIVATE" | "device_private" => SELECT_DEVICE_PRIVATE,
                    "DEVICE_COHERENT" | "device_coherent" => SELECT_DEVICE_COHERENT,
                    "COMPOUND" | "compound" => SELECT_COMPOUND,
                    _ => return None,
                };
            }
            SELECT_VALUES.contains(&v).then_some(v)
        }
        _ => text.parse::<u16>().ok(),
    }
}

/// Split a line into (column, word) pairs, dropping the comment.
fn words(line: &str) -> Vec<(usize, &str)> {
    let body = line.split('#').next().unwrap_or("");
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in body.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s + 1, &body[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s + 1, &body[s..]));
    }
    out
}

/// Parse one action from its words (kind first).
pub fn parse_op(ws: &[(usize, &str)], line: usize) -> Result<Op, ProgramError> {
    let (col, name) = ws[0];
    let kind = OpKind::from_name(name).ok_or_else(|| {
        let close: Vec<&str> = KINDS.iter().map(|k| k.name).filter(|k| k.contains(name) || name.contains(k)).collect();
        err(
            line,
            col,
            format!(
                "unknown action `{name}`{}",
                if close.is_empty() { String::new() } else { format!(" (did you mean {}?)", close.join(", ")) }
            ),
        )
    })?;
    let info = kind.info();
    let mut args = [0u16; MAX_ARGS];
    let mut seen = [false; MAX_ARGS];
    for &(c, w) in &ws[1..] {
        let (k, v) = w.split_once('=').ok_or_else(|| err(line, c, format!("expected key=value, got `{w}`")))?;
        let i = info.args.iter().position(|(n, _)| *n == k).ok_or_else(|| {
            let known: Vec<&str> = info.args.iter().map(|(n, _)| *n).collect();
            err(
                line,
                c,
                format!(
                    "`{}` takes no operand `{k}` (operands: {})",
                    info.name,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            )
        })?;
        if seen[i] {
            return Err(err(line, c, format!("operand `{k}` given twice")));
        }
        let dim = info.args[i].1;
        args[i] = parse_value(dim, v).ok_or_else(|| {
            let what = match dim {
                Dim::Cached => "a pgmap number or none",
                Dim::By => "gup or kernel",
                Dim::Flags => "0, FOLL_LONGTERM, FOLL_PCI_P2PDMA, GUP_FAST (faults=1 shapes) or several joined by |",
                Dim::Select => "SYSTEM or DEVICE_PRIVATE, optionally |COMPOUND",
                Dim::Site => "vm_insert, try_grab, alloc or gen_pool",
                _ => "a non-negative number",
            };
            err(line, c + k.len() + 1, format!("bad value `{v}` for `{k}`: expected {what}"))
        })?;
        seen[i] = true;
    }
    for (i, (n, dim)) in info.args.iter().enumerate() {
        if !seen[i] && !matches!(dim, Dim::Cpu | Dim::Cached) {
            return Err(err(line, col, format!("`{}` needs operand `{n}`", info.name)));
        }
    }
    Ok(Op { kind, args })
}

/// Parse one action written as a line of text (comments allowed).
pub fn parse_action(line: &str) -> Result<Op, ProgramError> {
    let ws = words(line);
    if ws.is_empty() {
        return Err(err(1, 1, "empty action".into()));
    }
    parse_op(&ws, 1)
}

/// The lines of a text, whatever its line endings: `\n`, `\r\n` or a lone
/// `\r` (what Python's universal newlines accept, so `Program.parse` and a
/// file read in text mode agree on every line number).
pub fn text_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        match t.find(['\n', '\r']) {
            None => {
                rest = None;
                (!t.is_empty()).then_some(t)
            }
            Some(i) => {
                let skip = if t[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&t[i + skip..]);
                Some(&t[..i])
            }
        }
    })
}

/// Parse `.zdf` text.
pub fn parse_program(text: &str) -> Result<Program, ProgramError> {
    let mut rules = None;
    let mut shape = Shape::default();
    let (mut ram_set, mut order_set) = (false, false);
    let mut ops = Vec::new();
    let mut lines = Vec::new();
    let mut config_at = None;
    for (i, raw) in text_lines(text).enumerate() {
        let line = i + 1;
        let ws = words(raw);
        if ws.is_empty() {
            continue;
        }
        match ws[0].1 {
            "rules" => {
                if !ops.is_empty() {
                    return Err(err(line, ws[0].0, "`rules` must come before the first action".into()));
                }
                if ws.len() != 2 {
                    return Err(err(line, ws[0].0, "expected `rules NAME`".into()));
                }
                rules = Some(ws[1].1.to_string());
            }
            "config" => {
                if !ops.is_empty() {
                    return Err(err(line, ws[0].0, "`config` must come before the first action".into()));
                }
                config_at = Some((line, ws[0].0));
                for &(c, w) in &ws[1..] {
                    let (k, v) =
                        w.split_once('=').ok_or_else(|| err(line, c, format!("expected key=value, got `{w}`")))?;
                    if k == "types" {
                        let mut types = Vec::new();
                        for t in v.split(',') {
                            types.push(DeviceType::from_name(t).ok_or_else(|| {
                                err(
                                    line,
                                    c + 6,
                                    format!("unknown device type `{t}` ({})", DeviceType::names().join(", ")),
                                )
                            })?);
                        }
                        shape.types = types;
                    } else {
                        let n: usize = v
                            .parse()
                            .map_err(|_| err(line, c + k.len() + 1, format!("`{k}` needs a number, got `{v}`")))?;
                        ram_set |= k == "ram";
                        order_set |= k == "order";
                        if !shape.set(k, n) {
                            return Err(err(line, c, format!(
                                "unknown config key `{k}` (types, pgmaps, pages, cpus, procs, addrs, files, file_pages, tasks, ram, order, faults, devdax_pmd, fsdax_pmd)")));
                        }
                    }
                }
            }
            _ => {
                ops.push(parse_op(&ws, line)?);
                lines.push(line);
            }
        }
    }
    shape.apply_memory_defaults(ram_set, order_set);
    if let (Some((line, col)), Err(e)) = (config_at, shape.validate()) {
        return Err(err(line, col, e.0));
    }
    Ok(Program { rules: rules.unwrap_or_else(|| "e3".into()), shape, ops, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_line_and_column() {
        let e = parse_program("rules e1\n\nmemremap_pages pgmap=0\nput_page pfn=1 by=nobody\n").unwrap_err();
        assert_eq!((e.line, e.col), (4, 19), "{e}");
        assert!(e.message.contains("gup or kernel"), "{e}");
        let e = parse_program("memremap_page pgmap=0").unwrap_err();
        assert_eq!((e.line, e.col), (1, 1));
        assert!(e.message.contains("did you mean memremap_pages"), "{e}");
        let e = parse_program("  fork proc=0").unwrap_err();
        assert_eq!((e.line, e.col), (1, 3));
        assert!(e.message.contains("needs operand `child`"), "{e}");
        let e = parse_program("fork proc=0 child=1 cpu=1").unwrap_err();
        assert!(e.message.contains("takes no operand `cpu`"), "{e}");
        let e = parse_program("config types=private,gpu").unwrap_err();
        assert!(e.message.contains("unknown device type `gpu`"), "{e}");
        let e = parse_program("munmap proc=0 addr=x").unwrap_err();
        assert_eq!(e.col, 20, "{e}");
    }

    #[test]
    fn every_line_ending_counts_lines_alike() {
        let lf = "rules e1\nmemremap_pages pgmap=0\nfork proc=0\n";
        for text in [lf.to_string(), lf.replace('\n', "\r\n"), lf.replace('\n', "\r")] {
            let e = parse_program(&text).unwrap_err();
            assert_eq!((e.line, e.col), (3, 1), "{text:?}: {e}");
            let ok = text.replace("fork proc=0", "fork proc=0 child=1");
            assert_eq!(parse_program(&ok).unwrap().lines, vec![2, 3], "{text:?}");
        }
        assert_eq!(text_lines("a\r\rb\r\n\nc").collect::<Vec<_>>(), ["a", "", "b", "", "c"]);
        assert_eq!(text_lines("").count(), 0);
    }

    #[test]
    fn a_shape_out_of_range_is_reported_at_its_config_line() {
        let e = parse_program("rules e3\n\nconfig types=generic pages=100000\nmemremap_pages pgmap=0\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 1), "{e}");
        assert!(e.message.contains("pages (per pgmap) must be between 1 and 1024"), "{e}");
        let e = parse_program("config types=generic,generic\n").unwrap_err();
        assert!(e.message.contains("given twice"), "{e}");
    }

    #[test]
    fn text_round_trips() {
        let text = "rules p20\nconfig types=generic,p2pdma pgmaps=1 pages=4 cpus=2 procs=2 addrs=4 files=2 file_pages=2 tasks=4 \
                    ram=4 order=1\n\
                    memremap_pages pgmap=0\nget_dev_pagemap pfn=3 cached=none cpu=1\nget_dev_pagemap pfn=3 cached=0 cpu=0\n\
                    put_page pfn=1 by=kernel cpu=0\npin_user_pages proc=0 addr=1 flags=FOLL_LONGTERM|FOLL_PCI_P2PDMA cpu=1\n\
                    migrate_vma_setup proc=0 addr=2 pgmap=0 select=DEVICE_PRIVATE|COMPOUND cpu=1\n";
        let p = parse_program(text).unwrap();
        assert_eq!(program_to_text(&p), text);
        assert_eq!(p.lines, vec![3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn defaults_and_comments() {
        let p = parse_program("# a comment\nmemremap_pages pgmap=0   # trailing\nget_dev_pagemap pfn=0\n").unwrap();
        assert_eq!(p.rules, "e3");
        assert_eq!(p.ops[1].args, [0, 0, 0, 0, 0]);
        assert_eq!(p.lines, vec![2, 3]);
    }
}
