//! Any bytes as an `application/x-protobuf` scheduler call body: the decoder must return,
//! never panic; whatever it accepts must also print as JSON. Also feeds the bytes through
//! the RecordIO decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_api::mesos::{json, protobuf, scheduler};
use tessera_api::recordio;

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = protobuf::decode::<scheduler::Call>(data) {
        let _ = json::encode(&call);
    }
    let mut d = recordio::Decoder::new();
    d.push(data);
    while let Ok(Some(record)) = d.next_record() {
        let _ = protobuf::decode::<scheduler::Call>(&record);
    }
});
