//! Mesos' JSON ⇄ protobuf rules (`stout/protobuf.hpp` and `JSON::Protobuf`), implemented
//! over prost-reflect `DynamicMessage`s and the descriptor set compiled by `build.rs`.
//!
//! Parsing: snake_case field names; unknown fields ignored; `null` = absent everywhere (also
//! inside arrays and maps); enums only by name (a number is an error; an unknown name drops
//! an optional field or a repeated element and is an error for a required field); bytes as
//! standard base64; integers from numbers or numeric strings; doubles also from `"Infinity"`,
//! `"-Infinity"` and numeric strings; bools also from `"true"`/`"false"`; maps as objects
//! (a scalar where a `{"value":…}` message is expected is wrapped, so both
//! `"limits":{"cpus":{"value":1}}` and `"limits":{"cpus":"Infinity"}` work).
//!
//! Printing: every set field; unset optional non-message fields with an explicit,
//! non-deprecated `[default = …]`; empty repeated fields omitted; 64-bit integers as JSON
//! numbers; non-finite doubles as `"Infinity"`/`"-Infinity"`/`"NaN"`.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use prost::bytes::Bytes;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};
use serde_json::{Map, Value as Json};

use super::CodecError;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(
        include_bytes!(concat!(env!("OUT_DIR"), "/mesos_descriptor.bin")).as_ref(),
    )
    .expect("the descriptor set compiled by build.rs is valid")
});

/// The descriptor pool of all Mesos v1 messages.
pub(crate) fn pool() -> &'static DescriptorPool {
    &POOL
}

/// The descriptor of the prost message `M`.
pub(crate) fn descriptor<M: prost::Name>() -> Result<MessageDescriptor, CodecError> {
    let name = M::full_name();
    pool()
        .get_message_by_name(&name)
        .ok_or(CodecError::UnknownMessage(name))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

// ---------------------------------------------------------------------------------------
// JSON → DynamicMessage

/// Parses a JSON value (which must be an object) into a message of type `desc`. Does not
/// check required fields; see [`missing_required`].
pub(crate) fn from_json(desc: &MessageDescriptor, v: &Json) -> Result<DynamicMessage, CodecError> {
    match v {
        Json::Object(obj) => parse_message(desc, obj, ""),
        _ => Err(CodecError::NotObject(desc.full_name().to_string())),
    }
}

fn parse_message(
    desc: &MessageDescriptor,
    obj: &Map<String, Json>,
    path: &str,
) -> Result<DynamicMessage, CodecError> {
    let mut msg = DynamicMessage::new(desc.clone());
    for (key, v) in obj {
        if v.is_null() {
            continue;
        }
        let Some(field) = desc.get_field_by_name(key) else {
            continue; // unknown fields are ignored, like Mesos does
        };
        let fpath = join(path, key);
        if field.is_map() {
            let map = parse_map(&field, v, &fpath)?;
            msg.set_field(&field, map);
        } else if field.is_list() {
            let Json::Array(items) = v else {
                return Err(CodecError::field(&fpath, "expected a JSON array"));
            };
            let kind = field.kind();
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if item.is_null() {
                    continue;
                }
                if let Some(val) = parse_single(&kind, item, &format!("{fpath}[{i}]"))? {
                    out.push(val);
                }
            }
            if !out.is_empty() {
                msg.set_field(&field, Value::List(out));
            }
        } else {
            match parse_single(&field.kind(), v, &fpath)? {
                Some(val) => msg.set_field(&field, val),
                None if field.is_required() => {
                    return Err(CodecError::field(
                        &fpath,
                        format!("unknown enum value {v} for a required field"),
                    ));
                }
                None => {} // unknown enum name on an optional field: dropped
            }
        }
    }
    Ok(msg)
}

fn parse_map(field: &FieldDescriptor, v: &Json, path: &str) -> Result<Value, CodecError> {
    let Json::Object(obj) = v else {
        return Err(CodecError::field(path, "expected a JSON object (a map)"));
    };
    let entry = field
        .kind()
        .as_message()
        .cloned()
        .expect("map fields have an entry message");
    let key_kind = entry.map_entry_key_field().kind();
    let value_kind = entry.map_entry_value_field().kind();
    let mut out = std::collections::HashMap::with_capacity(obj.len());
    for (k, item) in obj {
        if item.is_null() {
            continue;
        }
        let epath = format!("{path}[{k}]");
        let key = parse_map_key(&key_kind, k, &epath)?;
        // `"limits":{"cpus":"Infinity"}` as the scheduler docs show: wrap the scalar.
        let wrapped;
        let item = match (&value_kind, item) {
            (Kind::Message(m), Json::Number(_) | Json::String(_) | Json::Bool(_))
                if m.get_field_by_name("value").is_some() =>
            {
                let mut o = Map::new();
                o.insert("value".to_string(), item.clone());
                wrapped = Json::Object(o);
                &wrapped
            }
            _ => item,
        };
        if let Some(val) = parse_single(&value_kind, item, &epath)? {
            out.insert(key, val);
        }
    }
    Ok(Value::Map(out))
}

fn parse_map_key(kind: &Kind, k: &str, path: &str) -> Result<MapKey, CodecError> {
    let bad = || CodecError::field(path, format!("'{k}' is not a valid map key"));
    Ok(match kind {
        Kind::String => MapKey::String(k.to_string()),
        Kind::Bool => MapKey::Bool(k.parse().map_err(|_| bad())?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(k.parse().map_err(|_| bad())?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(k.parse().map_err(|_| bad())?),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(k.parse().map_err(|_| bad())?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(k.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    })
}

/// An integer from a JSON number (integral) or a numeric string.
fn parse_int<T>(v: &Json, path: &str, what: &str) -> Result<T, CodecError>
where
    T: TryFrom<i64> + TryFrom<u64> + std::str::FromStr,
{
    let err = || CodecError::field(path, format!("expected {what}"));
    match v {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                T::try_from(i).map_err(|_| err())
            } else if let Some(u) = n.as_u64() {
                T::try_from(u).map_err(|_| err())
            } else {
                // A float: accept it only when it is integral and in range.
                let f = n.as_f64().ok_or_else(err)?;
                if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.007_199_254_740_992e15 {
                    return Err(err());
                }
                T::try_from(f as i64).map_err(|_| err())
            }
        }
        Json::String(s) => s.trim().parse::<T>().map_err(|_| err()),
        _ => Err(err()),
    }
}

fn parse_double(v: &Json, path: &str) -> Result<f64, CodecError> {
    let err = || CodecError::field(path, "expected a number");
    match v {
        Json::Number(n) => n.as_f64().ok_or_else(err),
        Json::String(s) => match s.trim() {
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            "NaN" | "nan" => Ok(f64::NAN),
            t => t.parse::<f64>().map_err(|_| err()),
        },
        _ => Err(err()),
    }
}

/// One (non-repeated) value. `Ok(None)` = an unknown enum name (the caller drops it).
fn parse_single(kind: &Kind, v: &Json, path: &str) -> Result<Option<Value>, CodecError> {
    Ok(Some(match kind {
        Kind::Double => Value::F64(parse_double(v, path)?),
        Kind::Float => Value::F32(parse_double(v, path)? as f32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(parse_int(v, path, "a 32-bit integer")?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(parse_int(v, path, "a 64-bit integer")?)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            Value::U32(parse_int(v, path, "a non-negative 32-bit integer")?)
        }
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(parse_int(v, path, "a non-negative 64-bit integer")?)
        }
        Kind::Bool => match v {
            Json::Bool(b) => Value::Bool(*b),
            Json::String(s) if s == "true" => Value::Bool(true),
            Json::String(s) if s == "false" => Value::Bool(false),
            _ => return Err(CodecError::field(path, "expected a boolean")),
        },
        Kind::String => match v {
            Json::String(s) => Value::String(s.clone()),
            _ => return Err(CodecError::field(path, "expected a string")),
        },
        Kind::Bytes => match v {
            Json::String(s) => Value::Bytes(Bytes::from(B64.decode(s).map_err(|e| {
                CodecError::field(path, format!("expected base64-encoded bytes: {e}"))
            })?)),
            _ => return Err(CodecError::field(path, "expected a base64 string")),
        },
        Kind::Enum(e) => match v {
            Json::String(s) => match e.get_value_by_name(s) {
                Some(ev) => Value::EnumNumber(ev.number()),
                None => return Ok(None),
            },
            _ => {
                return Err(CodecError::field(
                    path,
                    format!("expected the name of a {} value (a string)", e.name()),
                ));
            }
        },
        Kind::Message(m) => match v {
            Json::Object(obj) => Value::Message(parse_message(m, obj, path)?),
            _ => return Err(CodecError::field(path, "expected a JSON object")),
        },
    }))
}

// ---------------------------------------------------------------------------------------
// Required fields

/// Dotted paths of every missing `required` field, recursively (`a.b[2].c`).
pub(crate) fn missing_required(msg: &DynamicMessage) -> Vec<String> {
    let mut out = Vec::new();
    walk_required(msg, "", &mut out);
    out
}

fn walk_required(msg: &DynamicMessage, path: &str, out: &mut Vec<String>) {
    for field in msg.descriptor().fields() {
        let fpath = join(path, field.name());
        if !msg.has_field(&field) {
            if field.is_required() {
                out.push(fpath);
            }
            continue;
        }
        match &*msg.get_field(&field) {
            Value::Message(m) => walk_required(m, &fpath, out),
            Value::List(items) => {
                for (i, it) in items.iter().enumerate() {
                    if let Value::Message(m) = it {
                        walk_required(m, &format!("{fpath}[{i}]"), out);
                    }
                }
            }
            Value::Map(entries) => {
                let mut keyed: Vec<_> = entries.iter().collect();
                keyed.sort_by_key(|(k, _)| map_key_string(k));
                for (k, it) in keyed {
                    if let Value::Message(m) = it {
                        walk_required(m, &format!("{fpath}[{}]", map_key_string(k)), out);
                    }
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// DynamicMessage → JSON

fn map_key_string(k: &MapKey) -> String {
    match k {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(i) => i.to_string(),
        MapKey::I64(i) => i.to_string(),
        MapKey::U32(i) => i.to_string(),
        MapKey::U64(i) => i.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

fn has_printed_default(field: &FieldDescriptor) -> bool {
    let p = field.field_descriptor_proto();
    p.default_value.is_some()
        && !p
            .options
            .as_ref()
            .and_then(|o| o.deprecated)
            .unwrap_or(false)
        && !field.is_list()
        && !field.is_map()
        && field.containing_oneof().is_none()
        && !matches!(field.kind(), Kind::Message(_))
}

/// Prints a message the way Mesos' `JSON::Protobuf` does.
pub(crate) fn to_json(msg: &DynamicMessage) -> Json {
    let mut obj = Map::new();
    for field in msg.descriptor().fields() {
        let kind = field.kind();
        if !msg.has_field(&field) {
            if has_printed_default(&field)
                && let Some(j) = single_to_json(&kind, &field.default_value())
            {
                obj.insert(field.name().to_string(), j);
            }
            continue;
        }
        let value = msg.get_field(&field);
        let j = match &*value {
            Value::List(items) => {
                if items.is_empty() {
                    continue;
                }
                Json::Array(
                    items
                        .iter()
                        .filter_map(|it| single_to_json(&kind, it))
                        .collect(),
                )
            }
            Value::Map(entries) => {
                if entries.is_empty() {
                    continue;
                }
                let vkind = kind
                    .as_message()
                    .expect("map fields have an entry message")
                    .map_entry_value_field()
                    .kind();
                let mut keyed: Vec<_> = entries.iter().collect();
                keyed.sort_by_key(|(k, _)| map_key_string(k));
                let mut m = Map::new();
                for (k, v) in keyed {
                    if let Some(j) = single_to_json(&vkind, v) {
                        m.insert(map_key_string(k), j);
                    }
                }
                Json::Object(m)
            }
            single => match single_to_json(&kind, single) {
                Some(j) => j,
                None => continue,
            },
        };
        obj.insert(field.name().to_string(), j);
    }
    Json::Object(obj)
}

fn double_to_json(f: f64) -> Json {
    match serde_json::Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => Json::String("NaN".into()),
        None if f > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// `None` for an enum number without a name (it cannot be printed by name).
fn single_to_json(kind: &Kind, v: &Value) -> Option<Json> {
    Some(match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(i) => Json::from(*i),
        Value::I64(i) => Json::from(*i),
        Value::U32(i) => Json::from(*i),
        Value::U64(i) => Json::from(*i),
        Value::F32(f) => double_to_json(f64::from(*f)),
        Value::F64(f) => double_to_json(*f),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(B64.encode(b)),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => Json::String(e.get_value(*n)?.name().to_string()),
            _ => return None,
        },
        Value::Message(m) => to_json(m),
        Value::List(_) | Value::Map(_) => return None,
    })
}

/// Compact single-line JSON with every non-ASCII character escaped as `\uXXXX` (UTF-16).
pub(crate) fn to_ascii_string(v: &Json) -> String {
    let s = v.to_string();
    if s.is_ascii() {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut buf = [0u16; 2];
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}
