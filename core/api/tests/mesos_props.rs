//! Property tests: scheduler calls round-trip JSON → protobuf → JSON; random bytes never
//! panic the decoders.

use proptest::prelude::*;
use tessera_api::mesos::{json, protobuf, scheduler, v1};
use tessera_api::recordio;

fn id() -> impl Strategy<Value = String> {
    // Includes non-ASCII and JSON-special characters.
    "[a-zA-Z0-9_.é\"\\\\/ -]{1,12}"
}

fn fw() -> impl Strategy<Value = Option<v1::FrameworkId>> {
    id().prop_map(|value| Some(v1::FrameworkId { value }))
}

fn arb_call() -> impl Strategy<Value = scheduler::Call> {
    use scheduler::call;
    let decline = (
        proptest::collection::vec(id(), 0..4),
        proptest::option::of(proptest::option::of(-1e9f64..1e9)),
    )
        .prop_map(|(offers, filters)| call::Decline {
            offer_ids: offers
                .into_iter()
                .map(|value| v1::OfferId { value })
                .collect(),
            filters: filters.map(|refuse_seconds| v1::Filters { refuse_seconds }),
        });
    let kill = (
        id(),
        proptest::option::of(id()),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(t, a, grace)| call::Kill {
            task_id: v1::TaskId { value: t },
            agent_id: a.map(|value| v1::AgentId { value }),
            kill_policy: grace.map(|nanoseconds| v1::KillPolicy {
                grace_period: Some(v1::DurationInfo { nanoseconds }),
            }),
        });
    let ack =
        (id(), id(), proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(a, t, uuid)| {
            call::Acknowledge {
                agent_id: v1::AgentId { value: a },
                task_id: v1::TaskId { value: t },
                uuid,
            }
        });
    let reconcile =
        proptest::collection::vec((id(), proptest::option::of(id())), 0..4).prop_map(|ts| {
            call::Reconcile {
                tasks: ts
                    .into_iter()
                    .map(|(t, a)| call::reconcile::Task {
                        task_id: v1::TaskId { value: t },
                        agent_id: a.map(|value| v1::AgentId { value }),
                    })
                    .collect(),
            }
        });
    prop_oneof![
        (fw(), decline).prop_map(|(f, d)| scheduler::Call {
            framework_id: f,
            r#type: Some(call::Type::Decline as i32),
            decline: Some(d),
            ..Default::default()
        }),
        (fw(), kill).prop_map(|(f, k)| scheduler::Call {
            framework_id: f,
            r#type: Some(call::Type::Kill as i32),
            kill: Some(k),
            ..Default::default()
        }),
        (fw(), ack).prop_map(|(f, a)| scheduler::Call {
            framework_id: f,
            r#type: Some(call::Type::Acknowledge as i32),
            acknowledge: Some(a),
            ..Default::default()
        }),
        (fw(), reconcile).prop_map(|(f, r)| scheduler::Call {
            framework_id: f,
            r#type: Some(call::Type::Reconcile as i32),
            reconcile: Some(r),
            ..Default::default()
        }),
    ]
}

proptest! {
    #[test]
    fn calls_round_trip(c in arb_call()) {
        let j1 = json::encode(&c);
        prop_assert!(j1.is_ascii());
        let from_json: scheduler::Call = json::decode(&j1).unwrap();
        let pb = protobuf::encode(&from_json);
        let from_pb: scheduler::Call = protobuf::decode(&pb).unwrap();
        let j2 = json::encode(&from_pb);
        prop_assert_eq!(&j1, &j2);
        // Only printed defaults may differ from the original (`refuse_seconds`).
        if c.decline.as_ref().and_then(|d| d.filters.as_ref()).is_none_or(|f| f.refuse_seconds.is_some()) {
            prop_assert_eq!(from_pb, c);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = json::decode::<scheduler::Call>(&bytes);
        let _ = protobuf::decode::<scheduler::Call>(&bytes);
        let mut d = recordio::Decoder::new();
        d.push(&bytes);
        while let Ok(Some(_)) = d.next_record() {}
    }

    #[test]
    fn random_json_never_panics(s in r#"\{("[a-z_]{1,12}":(\{|\[|"[A-Z_]*"|-?[0-9.e]{1,8}|null|true|\]|\}|,)){0,12}"#) {
        let _ = json::decode::<scheduler::Call>(s.as_bytes());
    }

    #[test]
    fn protobuf_of_valid_calls_with_noise(c in arb_call(), noise in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = protobuf::encode(&c);
        bytes.extend(noise);
        let _ = protobuf::decode::<scheduler::Call>(&bytes);
    }
}
