//! `tessera-api`: Tessera's wire formats.
//!
//! Today: the internal master↔agent gRPC protocol (`proto/agent.proto`, module [`pb`]) and
//! the conversions between its messages and `tessera-types` records ([`convert`]). Every
//! conversion from the wire validates and names the offending field, because anything that
//! arrives over the network is hostile until checked. The Mesos v1 scheduler/operator
//! messages (protobuf and Mesos-style JSON) and RecordIO join this crate with the API issue.
//!
//! Must not depend on: master, agent, allocator, or any framework crate.

pub mod convert;

/// Generated from `proto/agent.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("tessera.agent.v1");
}

pub use convert::WireError;
