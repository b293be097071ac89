//! Binary protobuf (`application/x-protobuf`) for v1 messages, with Mesos' required-field
//! check (`Not initialized: …`), which prost alone does not do.

use prost_reflect::DynamicMessage;

use super::CodecError;
use super::reflect;

/// Decodes `M` from protobuf bytes and checks that all `required` fields are present.
pub fn decode<M: prost::Message + Default + prost::Name>(body: &[u8]) -> Result<M, CodecError> {
    let desc = reflect::descriptor::<M>()?;
    let err = |e: prost::DecodeError| CodecError::Protobuf {
        message: desc.full_name().to_string(),
        reason: e.to_string(),
    };
    let dynamic = DynamicMessage::decode(desc.clone(), body).map_err(err)?;
    let missing = reflect::missing_required(&dynamic);
    if !missing.is_empty() {
        return Err(CodecError::NotInitialized(missing));
    }
    M::decode(body).map_err(err)
}

/// Encodes `msg` as protobuf bytes.
pub fn encode<M: prost::Message>(msg: &M) -> Vec<u8> {
    msg.encode_to_vec()
}
