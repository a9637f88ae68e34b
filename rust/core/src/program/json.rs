//! JSON for tools: `{"rules": ..., "config": {...}, "ops": [{"op": name, operand: value, ...}]}`.
//! Operand values are the text format's (numbers, "none", "gup", flag strings).

use super::op::{Dim, OpKind, BY_GUP};
use super::text::{parse_op, value_text};
use super::{Program, ProgramError, Shape};
use crate::rules::DeviceType;
use serde_json::{json, Map, Value};

pub fn program_to_json(p: &Program) -> Value {
    let mut config = Map::new();
    config.insert("types".into(), json!(p.shape.types.iter().map(|t| t.name()).collect::<Vec<_>>()));
    for (k, v) in p.shape.header_fields() {
        config.insert(k.into(), json!(v));
    }
    let ops: Vec<Value> = p
        .ops
        .iter()
        .map(|op| {
            let info = op.kind.info();
            let mut o = Map::new();
            o.insert("op".into(), json!(info.name));
            for (i, (name, dim)) in info.args.iter().enumerate() {
                let v = op.args[i];
                let val = match dim {
                    Dim::Cached if v == 0 => json!("none"),
                    Dim::Cached => json!(v - 1),
                    Dim::By => json!(if v == BY_GUP { "gup" } else { "kernel" }),
                    Dim::Flags | Dim::Select | Dim::Site => json!(value_text(*dim, v).unwrap_or_default()),
                    _ => json!(v),
                };
                o.insert((*name).into(), val);
            }
            Value::Object(o)
        })
        .collect();
    json!({"rules": p.rules, "config": config, "ops": ops})
}

fn jerr(message: String) -> ProgramError {
    ProgramError { file: String::new(), line: 0, col: 0, message }
}

pub fn program_from_json(v: &Value) -> Result<Program, ProgramError> {
    let obj = v.as_object().ok_or_else(|| jerr("a program is a JSON object".into()))?;
    let rules = obj.get("rules").and_then(|r| r.as_str()).unwrap_or("e3").to_string();
    let mut shape = Shape::default();
    let (mut ram_set, mut order_set) = (false, false);
    if let Some(c) = obj.get("config") {
        let c = c.as_object().ok_or_else(|| jerr("`config` must be an object".into()))?;
        for (k, v) in c {
            if k == "types" {
                let arr = v.as_array().ok_or_else(|| jerr("config.types must be a list".into()))?;
                shape.types = arr
                    .iter()
                    .map(|t| {
                        t.as_str()
                            .and_then(DeviceType::from_name)
                            .ok_or_else(|| jerr(format!("config.types: bad type {t}")))
                    })
                    .collect::<Result<_, _>>()?;
            } else {
                let n = v.as_u64().ok_or_else(|| jerr(format!("config.{k} must be a number")))?;
                ram_set |= k == "ram";
                order_set |= k == "order";
                if !shape.set(k, n as usize) {
                    return Err(jerr(format!("unknown config key `{k}`")));
                }
            }
        }
    }
    let ops_v = obj.get("ops").and_then(|o| o.as_array()).ok_or_else(|| jerr("`ops` must be a list".into()))?;
    let mut ops = Vec::new();
    for (i, o) in ops_v.iter().enumerate() {
        let o = o.as_object().ok_or_else(|| jerr(format!("ops[{i}] must be an object")))?;
        let name = o.get("op").and_then(|n| n.as_str()).ok_or_else(|| jerr(format!("ops[{i}] needs \"op\"")))?;
        if OpKind::from_name(name).is_none() {
            return Err(jerr(format!("ops[{i}]: unknown action `{name}`")));
        }
        // reuse the text parser on "name k=v ..." so both formats accept the same values
        let mut words: Vec<String> = vec![name.to_string()];
        for (k, v) in o {
            if k == "op" {
                continue;
            }
            let val = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            words.push(format!("{k}={val}"));
        }
        let ws: Vec<(usize, &str)> = words.iter().map(|w| (1, w.as_str())).collect();
        let op = parse_op(&ws, 0).map_err(|e| jerr(format!("ops[{i}]: {}", e.message)))?;
        ops.push(op);
    }
    shape.apply_memory_defaults(ram_set, order_set);
    Ok(Program { rules, shape, ops, lines: Vec::new() })
}

/// The JSON encoding as pretty text.
pub fn program_to_json_string(p: &Program) -> String {
    serde_json::to_string_pretty(&program_to_json(p)).unwrap_or_default()
}

/// Parse JSON text; syntax errors carry the line and column.
pub fn program_from_json_str(text: &str) -> Result<Program, ProgramError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ProgramError {
        file: String::new(),
        line: e.line(),
        col: e.column(),
        message: e.to_string(),
    })?;
    program_from_json(&v)
}
