//! Compiles our `.proto` files with protox (pure Rust), so no system `protoc` is needed.
//!
//! * `proto/agent.proto`: the internal master<->agent gRPC protocol (tonic services).
//! * `proto/mesos/v1/**`: the Mesos v1 wire messages (generated from the compact tables by
//!   `proto/gen_mesos.py`, plus the few tables kept in `proto/tables/`). Plain prost types
//!   with `prost::Name`, plus the serialized `FileDescriptorSet`
//!   (`$OUT_DIR/mesos_descriptor.bin`) that the JSON codec reflects over.
use prost::Message as _;

const MESOS_PROTOS: [&str; 7] = [
    "proto/mesos/v1/mesos.proto",
    "proto/mesos/v1/scheduler/scheduler.proto",
    "proto/mesos/v1/executor/executor.proto",
    "proto/mesos/v1/master/master.proto",
    "proto/mesos/v1/quota/quota.proto",
    "proto/mesos/v1/allocator/allocator.proto",
    "proto/mesos/v1/maintenance/maintenance.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["proto/agent.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;

    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(MESOS_PROTOS, ["proto"])?;
    std::fs::write(out.join("mesos_descriptor.bin"), fds.encode_to_vec())?;
    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
