//! Any bytes as a JSON `POST /api/v1/scheduler` body: the decoder must return, never panic;
//! whatever it accepts must print and re-parse to the same call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_api::mesos::{json, scheduler};

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = json::decode::<scheduler::Call>(data) {
        let printed = json::encode(&call);
        assert!(printed.is_ascii());
        let again: scheduler::Call = json::decode(&printed).expect("printed calls re-parse");
        assert_eq!(json::encode(&again), printed);
    }
});
