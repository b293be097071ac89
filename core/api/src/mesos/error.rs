//! The error type of the Mesos codecs and RecordIO.

/// A body from the wire could not be decoded. The peer is at fault (HTTP 400); resending
/// the same bytes cannot help. Messages name the field path where there is one, e.g.
/// `accept.filters.refuse_seconds: expected a number`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The body is not JSON at all.
    #[error("Failed to parse body into JSON: {0}")]
    Json(String),
    /// The body is JSON but not an object.
    #[error("Failed to convert JSON into {0} protobuf: expecting a JSON object")]
    NotObject(String),
    /// A field has the wrong JSON type or an invalid value.
    #[error("{path}: {reason}")]
    Field { path: String, reason: String },
    /// Required fields are missing (dotted paths, repeated elements as `[i]`).
    #[error("Not initialized: {}", .0.join(", "))]
    NotInitialized(Vec<String>),
    /// The body is not a valid protobuf encoding of the message.
    #[error("Failed to parse body into {message} protobuf: {reason}")]
    Protobuf { message: String, reason: String },
    /// A RecordIO stream is malformed.
    #[error("RecordIO: {0}")]
    RecordIo(String),
    /// The message type is not in our descriptor set (a bug in Tessera, not the peer's).
    #[error("message type {0} is not in the Mesos descriptor set")]
    UnknownMessage(String),
}

impl CodecError {
    pub(crate) fn field(path: &str, reason: impl Into<String>) -> Self {
        CodecError::Field {
            path: if path.is_empty() {
                "(top level)".to_string()
            } else {
                path.to_string()
            },
            reason: reason.into(),
        }
    }

    /// The field path the error is about, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            CodecError::Field { path, .. } => Some(path),
            _ => None,
        }
    }
}
