//! Mesos-style JSON for v1 messages (`stout/protobuf.hpp` rules, NOT proto3 canonical JSON).
//! See the rules at the top of the private `reflect` module and `v1-api.md` §0.4.

use prost_reflect::DynamicMessage;

use super::CodecError;
use super::reflect;

/// Parses a JSON request body into `M`, the way Mesos parses `Call`s: unknown fields are
/// ignored, `null` means absent, enums are names, and every `required` field must be present
/// afterwards (`CodecError::NotInitialized` lists the missing paths).
pub fn decode<M: prost::Message + Default + prost::Name>(body: &[u8]) -> Result<M, CodecError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| CodecError::Json(e.to_string()))?;
    from_value(&v)
}

/// Like [`decode`], from an already parsed JSON value.
pub fn from_value<M: prost::Message + Default + prost::Name>(
    v: &serde_json::Value,
) -> Result<M, CodecError> {
    let desc = reflect::descriptor::<M>()?;
    let dynamic = reflect::from_json(&desc, v)?;
    let missing = reflect::missing_required(&dynamic);
    if !missing.is_empty() {
        return Err(CodecError::NotInitialized(missing));
    }
    let bytes = prost::Message::encode_to_vec(&dynamic);
    M::decode(bytes.as_slice()).map_err(|e| CodecError::Protobuf {
        message: desc.full_name().to_string(),
        reason: e.to_string(),
    })
}

/// `msg` as a JSON value, printed the way Mesos prints it (defaults of unset optional
/// fields with an explicit `[default=…]` included, empty repeated fields omitted, bytes as
/// base64, enums by name, 64-bit integers as numbers).
pub fn to_value<M: prost::Message + prost::Name>(msg: &M) -> serde_json::Value {
    let desc = reflect::descriptor::<M>().expect("every generated Mesos type is in the pool");
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .expect("a prost message re-decodes with its own descriptor");
    reflect::to_json(&dynamic)
}

/// `msg` as compact, single-line, ASCII-only JSON (non-ASCII escaped as `\uXXXX`), ready
/// to be framed as one RecordIO record.
pub fn encode<M: prost::Message + prost::Name>(msg: &M) -> Vec<u8> {
    reflect::to_ascii_string(&to_value(msg)).into_bytes()
}
