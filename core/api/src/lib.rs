//! `tessera-api`: Tessera's wire formats.
//!
//! * The internal master↔agent gRPC protocol (`proto/agent.proto`, module [`pb`]) and the
//!   conversions between its messages and `tessera-types` records ([`convert`]).
//! * The Mesos v1 API ([`mesos`]): prost types for `mesos.v1`, `mesos.v1.scheduler`,
//!   `mesos.v1.executor`, `mesos.v1.master`, `mesos.v1.quota`, `mesos.v1.allocator`,
//!   `mesos.v1.maintenance`; Mesos-style JSON ([`mesos::json`]) and protobuf
//!   ([`mesos::protobuf`]) codecs that check required fields; conversions to and from
//!   `tessera-types` ([`mesos::convert`]).
//! * [`recordio`] framing for v1 event streams.
//!
//! Every conversion from the wire validates and names the offending field, because anything
//! that arrives over the network is hostile until checked.
//!
//! Must not depend on: master, agent, allocator, or any framework crate.

pub mod convert;
pub mod mesos;
pub mod recordio;

/// Generated from `proto/agent.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("tessera.agent.v1");
}

pub use convert::WireError;
pub use mesos::CodecError;
