//! Mesos v1 wire formats: JSON/protobuf codecs on the bodies real clients send, RecordIO,
//! and conversions to `tessera-types`.
#![allow(deprecated)] // FrameworkInfo.role / Resource.role are part of what clients send

use tessera_api::mesos::{convert, json, protobuf, scheduler, v1};
use tessera_api::recordio;
use tessera_api::{CodecError, WireError};

fn call(body: &str) -> Result<scheduler::Call, CodecError> {
    json::decode::<scheduler::Call>(body.as_bytes())
}

#[test]
fn pymesos_subscribe() {
    let body = r#"{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root",
        "name": "pymesos-test", "failover_timeout": 100,
        "capabilities": [{"type": "GPU_RESOURCES"}], "hostname": "h1"}}}"#;
    let c = call(body).unwrap();
    assert_eq!(c.r#type(), scheduler::call::Type::Subscribe);
    let fi = &c.subscribe.as_ref().unwrap().framework_info;
    assert_eq!(fi.failover_timeout, Some(100.0));
    let ours = convert::framework_info_from_v1(fi).unwrap();
    assert_eq!(ours.roles[0].as_str(), "*");
    assert!(ours.has(tessera_types::Capability::GpuResources));
    assert_eq!(ours.failover_timeout_secs, 100.0);
    assert_eq!(ours.hostname.as_deref(), Some("h1"));
}

#[test]
fn resubscribe_with_framework_id_and_unknown_fields() {
    let body = r#"{"type":"SUBSCRIBE","framework_id":{"value":"m-0000"},
        "subscribe":{"framework_info":{"user":"u","name":"n","id":{"value":"m-0000"}},
                     "credentials":{"principal":"p"}},
        "executor_id":{"value":"x"}}"#;
    let c = call(body).unwrap();
    assert_eq!(c.framework_id.unwrap().value, "m-0000");
}

#[test]
fn node_style_nulls_are_absent() {
    let body = r#"{"type":"SUBSCRIBE","framework_id":null,"subscribe":{"framework_info":{
        "user":"root","name":"node","role":null,"capabilities":null,"id":null,
        "failover_timeout":null,"roles":[null],"labels":{"labels":null}},"suppressed_roles":null}}"#;
    let c = call(body).unwrap();
    let fi = c.subscribe.unwrap().framework_info;
    assert_eq!(fi.role, None);
    assert!(fi.capabilities.is_empty() && fi.roles.is_empty());
    let ours = convert::framework_info_from_v1(&fi).unwrap();
    assert_eq!(ours.roles[0].as_str(), "*");
}

#[test]
fn mesoshttp_accept_with_slave_id() {
    let body = r#"{"type":"ACCEPT","framework_id":{"value":"fw-1"},"accept":{
        "offer_ids":[{"value":"o-1"}],
        "operations":[{"type":"LAUNCH","launch":{"task_infos":[{
            "name":"t","task_id":{"value":"t1"},"agent_id":{"value":"a-S1"},
            "slave_id":{"value":"a-S1"},
            "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}},
                         {"name":"mem","type":"SCALAR","scalar":{"value":32}}],
            "command":{"value":"echo hi","environment":{"variables":[{"name":"K","value":"V"}]}},
            "kill_policy":{"grace_period":{"nanoseconds":"2500000000"}}}]}}],
        "filters":{"refuse_seconds":"Infinity"}}}"#;
    let c = call(body).unwrap();
    let accept = c.accept.unwrap();
    assert_eq!(accept.filters.unwrap().refuse_seconds, Some(f64::INFINITY));
    let launch = accept.operations[0].launch.as_ref().unwrap();
    let t = convert::task_info_from_v1(
        "accept.operations[0].launch.task_infos[0]",
        &launch.task_infos[0],
    )
    .unwrap();
    assert_eq!(t.task_id.as_str(), "t1");
    assert!(t.command.shell, "shell defaults to true");
    assert_eq!(t.command.environment["K"], "V");
    assert_eq!(t.kill_grace_ms, Some(2500));
    assert_eq!(
        t.resources.scalar("cpus"),
        tessera_types::Scalar::from_milli(100)
    );
}

#[test]
fn top_level_requests_is_ignored() {
    let c = call(r#"{"type":"REQUEST","framework_id":{"value":"f"},"requests":[{"agent_id":{"value":"a"}}]}"#)
        .unwrap();
    assert_eq!(c.r#type(), scheduler::call::Type::Request);
    assert!(c.request.is_none());
}

#[test]
fn lenient_scalars() {
    let c = call(r#"{"type":"DECLINE","decline":{"offer_ids":[{"value":"o"}],"filters":{"refuse_seconds":"2.5"}}}"#)
        .unwrap();
    assert_eq!(
        c.decline.unwrap().filters.unwrap().refuse_seconds,
        Some(2.5)
    );
    let c = call(r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","checkpoint":"true"}}}"#)
        .unwrap();
    assert_eq!(c.subscribe.unwrap().framework_info.checkpoint, Some(true));
    // uint64 from numbers and strings; map of scalars in both forms.
    let t: v1::TaskInfo = json::decode(
        br#"{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"},
            "resources":[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":"31000","end":31005}]}}],
            "limits":{"cpus":"Infinity","mem":{"value":512}}}"#,
    )
    .unwrap();
    assert_eq!(
        t.resources[0].ranges.as_ref().unwrap().range[0].begin,
        31000
    );
    assert_eq!(t.limits["cpus"].value, f64::INFINITY);
    assert_eq!(t.limits["mem"].value, 512.0);
}

#[test]
fn errors_name_the_field() {
    assert!(matches!(call("{not json"), Err(CodecError::Json(_))));
    assert!(matches!(call("[1,2]"), Err(CodecError::NotObject(_))));
    assert!(matches!(
        call("\"SUBSCRIBE\""),
        Err(CodecError::NotObject(_))
    ));

    let e = call(r#"{"type":"ACCEPT","accept":{"filters":{"refuse_seconds":true}}}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "accept.filters.refuse_seconds: expected a number"
    );
    assert_eq!(e.path(), Some("accept.filters.refuse_seconds"));

    let e = call(r#"{"type":"ACCEPT","accept":{"offer_ids":{"value":"o"}}}"#).unwrap_err();
    assert_eq!(e.path(), Some("accept.offer_ids"));

    let e = call(r#"{"type":"KILL","kill":{"task_id":{"value":5}}}"#).unwrap_err();
    assert_eq!(e.path(), Some("kill.task_id.value"));

    let e = call(
        r#"{"type":"ACKNOWLEDGE","acknowledge":{"agent_id":{"value":"a"},
        "task_id":{"value":"t"},"uuid":"not base64!"}}"#,
    )
    .unwrap_err();
    assert_eq!(e.path(), Some("acknowledge.uuid"));

    let e = call(
        r#"{"type":"RECONCILE","reconcile":{"tasks":[{"task_id":{"value":"t"},"agent_id":[]}]}}"#,
    )
    .unwrap_err();
    assert_eq!(e.path(), Some("reconcile.tasks[0].agent_id"));
}

#[test]
fn enums_by_name_only() {
    let e = call(r#"{"type":1}"#).unwrap_err();
    assert_eq!(e.path(), Some("type"), "{e}");
    // Unknown name on an optional field: dropped.
    let c = call(r#"{"type":"NOT_A_CALL"}"#).unwrap();
    assert_eq!(c.r#type, None);
    // ...and in a repeated message's optional enum.
    let c = call(
        r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n",
        "capabilities":[{"type":"FUTURE_THING"},{"type":"MULTI_ROLE"}],"roles":["a"]}}}"#,
    )
    .unwrap();
    let fi = c.subscribe.unwrap().framework_info;
    assert_eq!(fi.capabilities[0].r#type, None);
    let ours = convert::framework_info_from_v1(&fi).unwrap();
    assert_eq!(
        ours.capabilities,
        vec![tessera_types::Capability::MultiRole]
    );
    // Unknown name on a required field: error.
    let e = json::decode::<v1::TaskStatus>(br#"{"task_id":{"value":"t"},"state":"TASK_SLEEPING"}"#)
        .unwrap_err();
    assert_eq!(e.path(), Some("state"), "{e}");
    let s: v1::TaskStatus = json::decode(
        br#"{"task_id":{"value":"t"},"state":"TASK_RUNNING","source":"SOURCE_NOWHERE"}"#,
    )
    .unwrap();
    assert_eq!(s.source, None);
}

#[test]
fn missing_required_fields_are_listed() {
    let e =
        call(r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u"}}}"#).unwrap_err();
    assert_eq!(
        e,
        CodecError::NotInitialized(vec!["subscribe.framework_info.name".into()])
    );
    assert_eq!(
        e.to_string(),
        "Not initialized: subscribe.framework_info.name"
    );
    let e = call(r#"{"type":"ACKNOWLEDGE","acknowledge":{"task_id":{}}}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Not initialized: acknowledge.agent_id, acknowledge.task_id.value, acknowledge.uuid"
    );
    let e = call(r#"{"type":"RECONCILE","reconcile":{"tasks":[{"task_id":{"value":"a"}},{}]}}"#)
        .unwrap_err();
    assert_eq!(e.to_string(), "Not initialized: reconcile.tasks[1].task_id");
    let e = call(r#"{"type":"SUBSCRIBE","subscribe":null}"#);
    assert!(
        e.is_ok(),
        "a null sub-message is absent; the master checks presence"
    );
}

#[test]
fn protobuf_checks_required_fields() {
    let ok = scheduler::Call {
        r#type: Some(scheduler::call::Type::Kill as i32),
        kill: Some(scheduler::call::Kill {
            task_id: v1::TaskId { value: "t".into() },
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = protobuf::encode(&ok);
    assert_eq!(protobuf::decode::<scheduler::Call>(&bytes).unwrap(), ok);
    // A Kill with an empty body: `task_id` missing.
    let bad = [0x10, 0x06, 0x32, 0x00];
    let e = protobuf::decode::<scheduler::Call>(&bad).unwrap_err();
    assert_eq!(e.to_string(), "Not initialized: kill.task_id");
    assert!(matches!(
        protobuf::decode::<scheduler::Call>(&[0xff, 0xff]),
        Err(CodecError::Protobuf { .. })
    ));
}

fn compact(j: &[u8]) -> String {
    String::from_utf8(j.to_vec()).unwrap()
}

#[test]
fn encode_subscribed_event() {
    let ev = scheduler::Event {
        r#type: Some(scheduler::event::Type::Subscribed as i32),
        subscribed: Some(scheduler::event::Subscribed {
            framework_id: v1::FrameworkId {
                value: "m-0000".into(),
            },
            heartbeat_interval_seconds: Some(15.0),
            master_info: Some(v1::MasterInfo {
                id: "m".into(),
                ip: 16_777_343,
                port: 5050,
                version: Some("1.11.0".into()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let out = compact(&json::encode(&ev));
    assert!(!out.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "SUBSCRIBED");
    assert_eq!(v["subscribed"]["framework_id"]["value"], "m-0000");
    assert_eq!(v["subscribed"]["heartbeat_interval_seconds"], 15.0);
    assert_eq!(v["subscribed"]["master_info"]["port"], 5050);
    assert_eq!(v["subscribed"]["master_info"]["version"], "1.11.0");
    assert!(v.get("offers").is_none());
    // Round trip.
    assert_eq!(
        json::decode::<scheduler::Event>(out.as_bytes()).unwrap(),
        ev
    );
}

#[test]
fn encode_offers_event_with_resources() {
    let res =
        tessera_types::parse::parse_resources("cpus:2;mem(eng):512;ports:[31000-31005]").unwrap();
    let role = tessera_types::Role::new("eng").unwrap();
    let offer = v1::Offer {
        id: v1::OfferId {
            value: "m-O1".into(),
        },
        framework_id: v1::FrameworkId {
            value: "m-0000".into(),
        },
        agent_id: v1::AgentId {
            value: "m-S1".into(),
        },
        hostname: "agent1".into(),
        url: Some(v1::Url {
            scheme: "http".into(),
            address: v1::Address {
                hostname: Some("agent1".into()),
                ip: Some("10.0.0.5".into()),
                port: 5051,
            },
            path: Some("/slave(1)".into()),
            ..Default::default()
        }),
        resources: convert::resources_to_v1(&res, Some(&role)),
        ..Default::default()
    };
    let ev = scheduler::Event {
        r#type: Some(scheduler::event::Type::Offers as i32),
        offers: Some(scheduler::event::Offers {
            offers: vec![offer],
        }),
        ..Default::default()
    };
    let v = json::to_value(&ev);
    let o = &v["offers"]["offers"][0];
    assert_eq!(o["url"]["address"]["ip"], "10.0.0.5");
    let rs = o["resources"].as_array().unwrap();
    let cpus = rs.iter().find(|r| r["name"] == "cpus").unwrap();
    assert_eq!(cpus["type"], "SCALAR");
    assert_eq!(cpus["scalar"]["value"], 2.0);
    assert_eq!(cpus["role"], "*");
    assert_eq!(cpus["allocation_info"]["role"], "eng");
    let mem = rs.iter().find(|r| r["name"] == "mem").unwrap();
    assert_eq!(mem["role"], "eng");
    assert_eq!(mem["reservations"][0]["type"], "STATIC");
    let ports = rs.iter().find(|r| r["name"] == "ports").unwrap();
    assert_eq!(ports["ranges"]["range"][0]["begin"], 31000);
    // Our own conversion reads it back.
    let back: scheduler::Event = json::from_value(&v).unwrap();
    let rs = &back.offers.unwrap().offers[0].resources;
    assert_eq!(convert::resources_from_v1("r", rs).unwrap(), res);
}

#[test]
fn encode_update_event_uuid_and_defaults() {
    let status = tessera_types::TaskStatus {
        task_id: tessera_types::TaskId::new("t1").unwrap(),
        state: tessera_types::TaskState::TaskRunning,
        reason: None,
        message: Some("démarré ✓ 🚀".into()),
        source: tessera_types::UpdateSource::SourceExecutor,
        agent_id: Some(tessera_types::AgentId::new("m-S3").unwrap()),
        framework_id: None,
        uuid: Some("abcdef12-3456-7890-abcd-ef1234567890".into()),
        timestamp: 1_700_000_000.5,
        exit_code: None,
        healthy: None,
    };
    let ev = scheduler::Event {
        r#type: Some(scheduler::event::Type::Update as i32),
        update: Some(scheduler::event::Update {
            status: convert::task_status_to_v1(&status),
        }),
        ..Default::default()
    };
    let out = compact(&json::encode(&ev));
    assert!(out.is_ascii(), "{out}");
    assert!(
        out.contains(r"d\u00e9marr\u00e9 \u2713 \ud83d\ude80"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &v["update"]["status"];
    assert_eq!(s["message"], "démarré ✓ 🚀");
    assert_eq!(s["uuid"], "q83vEjRWeJCrze8SNFZ4kA==");
    assert_eq!(s["state"], "TASK_RUNNING");
    assert_eq!(s["source"], "SOURCE_EXECUTOR");
    assert_eq!(s["agent_id"]["value"], "m-S3");
    assert_eq!(s["executor_id"]["value"], "t1");
    assert_eq!(s["timestamp"], 1_700_000_000.5);
    // The client's ACKNOWLEDGE copies uuid back.
    let ack = call(&format!(
        r#"{{"type":"ACKNOWLEDGE","framework_id":{{"value":"f"}},"acknowledge":{{"agent_id":{},"task_id":{},"uuid":{}}}}}"#,
        s["agent_id"], s["task_id"], s["uuid"]
    ))
    .unwrap();
    let uuid = convert::uuid_from_v1(&ack.acknowledge.unwrap().uuid).unwrap();
    assert_eq!(uuid, "abcdef12-3456-7890-abcd-ef1234567890");
    let e = convert::uuid_from_v1(b"short").unwrap_err();
    assert!(e.to_string().contains("acknowledge.uuid"), "{e}");
}

#[test]
fn printed_defaults() {
    let c = scheduler::Call {
        r#type: Some(scheduler::call::Type::Decline as i32),
        decline: Some(scheduler::call::Decline {
            offer_ids: vec![],
            filters: Some(v1::Filters::default()),
        }),
        ..Default::default()
    };
    let out = compact(&json::encode(&c));
    assert_eq!(
        out,
        r#"{"decline":{"filters":{"refuse_seconds":5.0}},"type":"DECLINE"}"#
    );
    let v = json::to_value(&v1::CommandInfo {
        value: Some("x".into()),
        ..Default::default()
    });
    assert_eq!(v, serde_json::json!({"value":"x","shell":true}));
    // Deprecated defaults (FrameworkInfo.role) are not printed; others are.
    let v = json::to_value(&v1::FrameworkInfo {
        user: "u".into(),
        name: "n".into(),
        ..Default::default()
    });
    assert_eq!(
        v,
        serde_json::json!({"user":"u","name":"n","failover_timeout":0.0,"checkpoint":false})
    );
    // Non-finite doubles print as Mesos does and parse back.
    let v = json::to_value(&v1::Filters {
        refuse_seconds: Some(f64::INFINITY),
    });
    assert_eq!(v, serde_json::json!({"refuse_seconds":"Infinity"}));
}

#[test]
fn heartbeat_and_error_events() {
    let hb = scheduler::Event {
        r#type: Some(scheduler::event::Type::Heartbeat as i32),
        ..Default::default()
    };
    assert_eq!(compact(&json::encode(&hb)), r#"{"type":"HEARTBEAT"}"#);
    let err = scheduler::Event {
        r#type: Some(scheduler::event::Type::Error as i32),
        error: Some(scheduler::event::Error {
            message: "Framework failed over".into(),
        }),
        ..Default::default()
    };
    assert_eq!(
        compact(&json::encode(&err)),
        r#"{"error":{"message":"Framework failed over"},"type":"ERROR"}"#
    );
}

#[test]
fn recordio_frames_and_decodes() {
    assert_eq!(recordio::frame(b"{}"), b"2\n{}");
    let mut stream = recordio::frame(b"hello");
    stream.extend(recordio::frame("é".as_bytes()));
    stream.extend(recordio::frame(b"x"));
    for split in 0..=stream.len() {
        let mut d = recordio::Decoder::new();
        let mut got = Vec::new();
        d.push(&stream[..split]);
        while let Some(r) = d.next_record().unwrap() {
            got.push(r);
        }
        d.push(&stream[split..]);
        while let Some(r) = d.next_record().unwrap() {
            got.push(r);
        }
        assert_eq!(
            got,
            vec![b"hello".to_vec(), "é".as_bytes().to_vec(), b"x".to_vec()]
        );
        assert_eq!(d.buffered(), 0);
    }
    // Byte-at-a-time.
    let mut d = recordio::Decoder::new();
    let mut n = 0;
    for b in &stream {
        d.push(&[*b]);
        while d.next_record().unwrap().is_some() {
            n += 1;
        }
    }
    assert_eq!(n, 3);
}

#[test]
fn recordio_rejects_bad_lengths() {
    for bad in [
        &b"abc\n"[..],
        b"0\n",
        b"\nxx",
        b"-1\n",
        b"1 \n",
        b"99999999999999999999999\n",
        b"12a",
    ] {
        let mut d = recordio::Decoder::new();
        d.push(bad);
        assert!(
            matches!(d.next_record(), Err(CodecError::RecordIo(_))),
            "{bad:?}"
        );
        assert!(d.next_record().is_err(), "errors are sticky");
    }
    let mut d = recordio::Decoder::new();
    d.push(b"67108865\n");
    assert!(d.next_record().is_err(), "over 64 MiB");
    let mut d = recordio::Decoder::with_max_record(4);
    d.push(b"5\nhello");
    assert!(d.next_record().is_err());
    let mut d = recordio::Decoder::new();
    d.push(b"5\nhel");
    assert_eq!(d.next_record().unwrap(), None);
}

fn v1_resource(json: &str) -> v1::Resource {
    json::decode(json.as_bytes()).unwrap()
}

#[test]
fn resources_legacy_and_refined_forms() {
    let rs = vec![
        v1_resource(r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1},"role":"*"}"#),
        v1_resource(r#"{"name":"cpus","type":"SCALAR","scalar":{"value":2},"role":"eng"}"#),
        v1_resource(
            r#"{"name":"mem","type":"SCALAR","scalar":{"value":64},"role":"eng","reservation":{"principal":"p"}}"#,
        ),
        v1_resource(
            r#"{"name":"disk","type":"SCALAR","scalar":{"value":5},
            "reservations":[{"type":"STATIC","role":"eng"},{"type":"DYNAMIC","role":"eng/ml","principal":"q"}]}"#,
        ),
        v1_resource(r#"{"name":"disks","type":"SET","set":{"item":["a","b"]}}"#),
    ];
    let r = convert::resources_from_v1("offer.resources", &rs).unwrap();
    let eng = tessera_types::Role::new("eng").unwrap();
    let ml = tessera_types::Role::new("eng/ml").unwrap();
    assert_eq!(
        r.reserved_to(&eng).scalar("cpus"),
        tessera_types::Scalar::from_units(2)
    );
    assert_eq!(
        r.reserved_to(&ml).scalar("disk"),
        tessera_types::Scalar::from_units(5)
    );
    let mem = r.iter().find(|(k, _)| &*k.name == "mem").unwrap().0;
    assert_eq!(
        mem.reservations[0].kind,
        tessera_types::ReservationKind::Dynamic
    );
    assert_eq!(mem.reservations[0].principal.as_deref(), Some("p"));
    // Round trip through the v1 form, with and without allocation info.
    assert_eq!(
        convert::resources_from_v1("r", &convert::resources_to_v1(&r, None)).unwrap(),
        r
    );
    assert_eq!(
        convert::resources_from_v1("r", &convert::resources_to_v1(&r, Some(&eng))).unwrap(),
        r
    );
}

#[test]
fn persistent_volumes_in_the_mesos_json_form() {
    // The example of the API reference: the legacy reservation form with a volume.
    let rs = vec![
        v1_resource(
            r#"{"name":"disk","type":"SCALAR","scalar":{"value":64},"role":"eng","reservation":{"principal":"p"},
            "disk":{"persistence":{"id":"vol-1","principal":"p"},"volume":{"container_path":"data","mode":"RW"}}}"#,
        ),
        v1_resource(
            r#"{"name":"disk","type":"SCALAR","scalar":{"value":36},"role":"eng","reservation":{"principal":"p"}}"#,
        ),
    ];
    let r = convert::resources_from_v1("offer.resources", &rs).unwrap();
    assert_eq!(r.len(), 2, "a volume never merges with plain disk: {r}");
    let (key, _) = r.iter().find(|(k, _)| k.volume.is_some()).unwrap();
    let v = key.volume.as_ref().unwrap();
    assert_eq!(
        (v.id.as_str(), v.container_path.as_str()),
        ("vol-1", "data")
    );
    assert_eq!(v.principal.as_deref(), Some("p"));
    assert_eq!(v.mode, tessera_types::VolumeMode::Rw);
    // Offers show it back as `disk.persistence` and `disk.volume`, in both codecs.
    let eng = tessera_types::Role::new("eng").unwrap();
    let out = convert::resources_to_v1(&r, Some(&eng));
    let shown: Vec<serde_json::Value> = out
        .iter()
        .map(|x| serde_json::from_slice(&json::encode(x)).unwrap())
        .collect();
    let vol = shown
        .iter()
        .find(|x| x.get("disk").is_some())
        .expect("the volume is shown with its disk info");
    assert_eq!(vol["disk"]["persistence"]["id"], "vol-1");
    assert_eq!(vol["disk"]["volume"]["container_path"], "data");
    assert_eq!(vol["disk"]["volume"]["mode"], "RW");
    assert_eq!(vol["scalar"]["value"], 64.0);
    assert_eq!(convert::resources_from_v1("r", &out).unwrap(), r);
    let bytes = tessera_api::mesos::protobuf::encode(&out[0]);
    let back: v1::Resource = tessera_api::mesos::protobuf::decode(&bytes).unwrap();
    assert_eq!(back, out[0]);
}

#[test]
fn bad_resources_name_the_field() {
    let field = |json: &str| {
        let rs = vec![
            v1_resource(r#"{"name":"mem","type":"SCALAR","scalar":{"value":1}}"#),
            v1_resource(json),
        ];
        let e: WireError = convert::resources_from_v1("task.resources", &rs).unwrap_err();
        e.to_string()
    };
    assert!(
        field(r#"{"name":"cpus","type":"SCALAR","scalar":{"value":-1}}"#)
            .starts_with("task.resources[1].scalar.value")
    );
    assert!(
        field(r#"{"name":"cpus","type":"SCALAR","scalar":{"value":"NaN"}}"#)
            .starts_with("task.resources[1].scalar.value")
    );
    assert!(field(r#"{"name":"cpus","type":"SCALAR"}"#).contains("task.resources[1].scalar"));
    assert!(
        field(r#"{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":5,"end":1}]}}"#)
            .starts_with("task.resources[1].ranges")
    );
    assert!(
        field(r#"{"name":"x","type":"TEXT","text":{"value":"a"}}"#)
            .starts_with("task.resources[1].type")
    );
    assert!(
        field(r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1},"role":"a b"}"#)
            .starts_with("task.resources[1].role")
    );
    assert!(field(r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1},"reservations":[{"type":"DYNAMIC"}]}"#)
        .contains("task.resources[1].reservations[0].role"));
    assert!(field(r#"{"name":"disk","type":"SCALAR","scalar":{"value":1},"disk":{"persistence":{"id":"v"}}}"#)
        .starts_with("task.resources[1].disk.volume"));
    let vol = |path: &str, extra: &str| {
        format!(
            r#"{{"name":"disk","type":"SCALAR","scalar":{{"value":1}},"role":"eng",
            "disk":{{"persistence":{{"id":"v"}},"volume":{{"container_path":"{path}","mode":"RW"{extra}}}}}}}"#
        )
    };
    assert!(
        field(&vol("../x", "")).starts_with("task.resources[1].disk.volume.container_path"),
        "{}",
        field(&vol("../x", ""))
    );
    assert!(field(&vol("/abs", "")).starts_with("task.resources[1].disk.volume.container_path"));
    assert!(
        field(&vol("data", r#","host_path":"/srv""#))
            .starts_with("task.resources[1].disk.volume.host_path")
    );
    assert!(field(r#"{"name":"disk","type":"SCALAR","scalar":{"value":1},"disk":{"source":{"type":"MOUNT"}}}"#)
        .starts_with("task.resources[1].disk.source"));
}

#[test]
fn framework_info_conversions() {
    let fi: v1::FrameworkInfo = json::decode(
        br#"{"user":"u","name":"n","roles":["a","b/c"],"capabilities":[{"type":"MULTI_ROLE"}],
            "failover_timeout":604800,"principal":"p","id":{"value":"m-0001"}}"#,
    )
    .unwrap();
    let ours = convert::framework_info_from_v1(&fi).unwrap();
    assert_eq!(ours.roles.len(), 2);
    assert_eq!(ours.id.as_ref().unwrap().as_str(), "m-0001");
    let back = convert::framework_info_to_v1(&ours);
    assert_eq!(back.roles, vec!["a", "b/c"]);
    assert_eq!(back.role, None);
    assert_eq!(convert::framework_info_from_v1(&back).unwrap(), ours);

    let single = convert::framework_info_to_v1(
        &convert::framework_info_from_v1(
            &json::decode(br#"{"user":"u","name":"n","role":"eng"}"#).unwrap(),
        )
        .unwrap(),
    );
    assert_eq!(single.role.as_deref(), Some("eng"));
    assert!(single.roles.is_empty());

    let err = |body: &[u8]| {
        convert::framework_info_from_v1(&json::decode(body).unwrap())
            .unwrap_err()
            .to_string()
    };
    assert!(err(br#"{"user":"u","name":"n","roles":["a"]}"#).starts_with("framework_info.roles"));
    assert!(err(br#"{"user":"u","name":"n","role":"a","roles":["a"],"capabilities":[{"type":"MULTI_ROLE"}]}"#)
        .starts_with("framework_info.role"));
    assert!(err(br#"{"user":"u","name":"n","role":"/bad"}"#).starts_with("framework_info.role"));
    assert!(
        err(br#"{"user":"u","name":"n","failover_timeout":-1}"#)
            .starts_with("framework_info.failover_timeout")
    );
    assert!(
        err(br#"{"user":"u","name":"n","id":{"value":"a/b"}}"#).starts_with("framework_info.id")
    );
}

#[test]
fn task_info_rejections() {
    let task = |extra: &str| -> v1::TaskInfo {
        json::decode(
            format!(
                r#"{{"name":"t","task_id":{{"value":"t1"}},"agent_id":{{"value":"a"}},
                "resources":[{{"name":"cpus","type":"SCALAR","scalar":{{"value":1}}}}]{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    };
    let err = |extra: &str| {
        convert::task_info_from_v1("task", &task(extra))
            .unwrap_err()
            .to_string()
    };
    assert!(err("").contains("task.command"));
    assert!(
        err(r#","executor":{"executor_id":{"value":"e"}},"command":{"value":"x"}"#)
            .starts_with("task.executor")
    );
    assert!(err(r#","command":{"value":""}"#).starts_with("task.command.value"));
    assert!(
        err(r#","command":{"value":"x","uris":[{"value":"ftp://x/y"}]}"#)
            .starts_with("task.command.uris[0].value")
    );
    assert!(
        err(r#","command":{"value":"x","uris":[{"value":"/a"},{"value":""}]}"#)
            .starts_with("task.command.uris[1].value")
    );
    assert!(
        err(r#","command":{"value":"x","uris":[{"value":"/a","output_file":"../b"}]}"#)
            .starts_with("task.command.uris[0].output_file")
    );
    assert!(
        err(r#","command":{"value":"x"},"kill_policy":{"grace_period":{"nanoseconds":-1}}"#)
            .starts_with("task.kill_policy.grace_period.nanoseconds")
    );
    assert!(
        err(r#","command":{"value":"x"},"container":{"type":"DOCKER","docker":{"image":""}}"#)
            .starts_with("task.container.docker.image")
    );
    assert!(
        err(
            r#","command":{"value":"x"},"container":{"type":"DOCKER","docker":{"image":"i",
            "network":"BRIDGE","port_mappings":[{"host_port":31000,"container_port":80}]}}"#
        )
        .starts_with("task.container.docker.port_mappings[0].host_port")
    );
    assert!(
        err(
            r#","command":{"value":"x"},"container":{"type":"DOCKER","docker":{"image":"i"},
            "volumes":[{"container_path":"rel","host_path":"/tmp","mode":"RO"}]}"#
        )
        .starts_with("task.container.volumes[0].container_path")
    );
    assert!(
        err(r#","command":{"value":"x"},"container":{"type":"MESOS","mesos":{"image":{"type":"DOCKER","docker":{"name":"i"}}}}"#)
            .starts_with("task.container.mesos.image")
    );
    let mut bad_id = task(r#","command":{"value":"x"}"#);
    bad_id.task_id.value = "a/b".into();
    assert!(
        convert::task_info_from_v1("task", &bad_id)
            .unwrap_err()
            .to_string()
            .starts_with("task.task_id")
    );
    let ok = convert::task_info_from_v1(
        "task",
        &task(r#","command":{"value":"/bin/echo","shell":false,"arguments":["echo","hi"],"user":"nobody"}"#),
    )
    .unwrap();
    assert!(!ok.command.shell);
    assert_eq!(ok.command.arguments, vec!["echo", "hi"]);
    assert_eq!(ok.command.user.as_deref(), Some("nobody"));

    let with_uris = convert::task_info_from_v1(
        "task",
        &task(
            r#","command":{"value":"./run.sh","uris":[{"value":"http://h:8080/a.tgz","cache":true},
            {"value":"/opt/run","executable":true,"extract":false,"output_file":"run.sh"}]}"#,
        ),
    )
    .unwrap();
    let u = &with_uris.command.uris;
    assert_eq!(u.len(), 2);
    assert_eq!(u[0].value, "http://h:8080/a.tgz");
    assert!(u[0].extract && u[0].cache && !u[0].executable);
    assert!(u[1].executable && !u[1].extract);
    assert_eq!(u[1].output_file.as_deref(), Some("run.sh"));
    // The internal wire form carries them unchanged.
    let back =
        tessera_api::convert::task_from_pb("t", &tessera_api::convert::task_to_pb(&with_uris))
            .unwrap();
    assert_eq!(back, with_uris);
}

#[test]
fn filters_default_to_five_seconds() {
    assert_eq!(convert::filters_from_v1(None).refuse_seconds, 5.0);
    assert_eq!(
        convert::filters_from_v1(Some(&v1::Filters::default())).refuse_seconds,
        5.0
    );
    assert_eq!(
        convert::filters_from_v1(Some(&v1::Filters {
            refuse_seconds: Some(0.0)
        }))
        .refuse_for(),
        None
    );
}

#[test]
fn other_packages_are_reachable() {
    use tessera_api::mesos::{executor, master, quota};
    let c: master::Call = json::decode(br#"{"type":"GET_STATE"}"#).unwrap();
    assert_eq!(c.r#type(), master::call::Type::GetState);
    let q: quota::QuotaConfig =
        json::decode(br#"{"role":"eng","guarantees":{"cpus":{"value":1}},"limits":{"cpus":"2"}}"#)
            .unwrap();
    assert_eq!(q.limits["cpus"].value, 2.0);
    let e = json::decode::<executor::Call>(br#"{"type":"HEARTBEAT"}"#).unwrap_err();
    assert_eq!(e.to_string(), "Not initialized: executor_id, framework_id");
}

#[test]
fn docker_task_info_round_trips_through_both_wires() {
    let body = r#"{"name":"t","task_id":{"value":"t1"},"agent_id":{"value":"a"},
        "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1}},
                     {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31010}]}}],
        "command":{"value":"echo hi"},
        "container":{"type":"DOCKER",
          "docker":{"image":"busybox:latest","network":"BRIDGE","privileged":true,
                    "port_mappings":[{"host_port":31005,"container_port":80,"protocol":"tcp"}],
                    "parameters":[{"key":"label","value":"a=b"}]},
          "volumes":[{"container_path":"/data","host_path":"/srv/data","mode":"RO"}]}}"#;
    let v: v1::TaskInfo = json::decode(body.as_bytes()).unwrap();
    let t = convert::task_info_from_v1("task", &v).unwrap();
    let c = t.container.clone().expect("container");
    assert_eq!(c.kind, tessera_types::ContainerKind::Docker);
    let d = c.docker.clone().expect("docker");
    assert_eq!(d.image, "busybox:latest");
    assert_eq!(d.network, tessera_types::DockerNetwork::Bridge);
    assert!(d.privileged && !d.force_pull_image);
    assert_eq!(d.port_mappings[0].host_port, 31005);
    assert_eq!(d.parameters, vec![("label".to_string(), "a=b".to_string())]);
    assert_eq!(c.volumes[0].mode, tessera_types::VolumeMode::Ro);
    // Back to v1 and in again: unchanged.
    let again = convert::container_info_from_v1("c", &convert::container_info_to_v1(&c)).unwrap();
    assert_eq!(again, c);
    // The internal master→agent form carries it unchanged.
    let back =
        tessera_api::convert::task_from_pb("t", &tessera_api::convert::task_to_pb(&t)).unwrap();
    assert_eq!(back, t);
    // A Docker task without a docker section names the field.
    let mut bad = t.clone();
    bad.container.as_mut().expect("c").docker = None;
    let e = tessera_api::convert::task_from_pb("t", &tessera_api::convert::task_to_pb(&bad))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.container.docker"), "{e}");
}

#[test]
fn health_checks_from_mesos_json_and_healthy_in_updates() {
    let task = |hc: &str| -> v1::TaskInfo {
        json::decode(
            format!(
                r#"{{"name":"t","task_id":{{"value":"t1"}},"agent_id":{{"value":"a"}},
                "resources":[{{"name":"cpus","type":"SCALAR","scalar":{{"value":1}}}}],
                "command":{{"value":"x"}},"health_check":{hc}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    };
    let err = |hc: &str| {
        convert::task_info_from_v1("task", &task(hc))
            .unwrap_err()
            .to_string()
    };
    let ok = convert::task_info_from_v1(
        "task",
        &task(
            r#"{"type":"HTTP","http":{"port":8080,"path":"/health"},"delay_seconds":0,
            "interval_seconds":0.5,"timeout_seconds":2,"grace_period_seconds":30,
            "consecutive_failures":5}"#,
        ),
    )
    .unwrap();
    let h = ok.health_check.clone().unwrap();
    assert_eq!(
        h.probe,
        tessera_types::HealthProbe::Http {
            port: 8080,
            path: Some("/health".into()),
            scheme: None
        }
    );
    assert_eq!(
        (h.delay_ms, h.interval_ms, h.timeout_ms, h.grace_period_ms),
        (0, 500, 2000, 30_000)
    );
    assert_eq!(h.consecutive_failures, 5);
    let back =
        tessera_api::convert::task_from_pb("t", &tessera_api::convert::task_to_pb(&ok)).unwrap();
    assert_eq!(back, ok);
    // Mesos defaults apply to absent fields.
    let cmd = convert::task_info_from_v1(
        "task",
        &task(r#"{"type":"COMMAND","command":{"value":"test -e ok"}}"#),
    )
    .unwrap()
    .health_check
    .unwrap();
    assert_eq!(cmd.delay_ms, 15_000);
    assert_eq!(cmd.consecutive_failures, 3);

    assert!(err(r#"{"type":"HTTP","http":{"port":0}}"#).starts_with("task.health_check.http.port"));
    assert!(
        err(r#"{"type":"TCP","tcp":{"port":65536}}"#).starts_with("task.health_check.tcp.port")
    );
    assert!(err(r#"{"type":"TCP","http":{"port":80}}"#).contains("task.health_check.tcp"));
    assert!(err(r#"{"type":"COMMAND"}"#).contains("task.health_check.command"));
    assert!(err(r#"{"tcp":{"port":80}}"#).contains("task.health_check.type"));
    assert!(
        err(r#"{"type":"TCP","tcp":{"port":80},"interval_seconds":-1}"#)
            .starts_with("task.health_check.interval_seconds")
    );

    // `healthy` and the health reason reach frameworks in UPDATE events.
    let status = tessera_types::TaskStatus {
        task_id: tessera_types::TaskId::new("t1").unwrap(),
        state: tessera_types::TaskState::TaskRunning,
        reason: Some(tessera_types::Reason::ReasonTaskHealthCheckStatusUpdated),
        message: None,
        source: tessera_types::UpdateSource::SourceExecutor,
        agent_id: None,
        framework_id: None,
        uuid: None,
        timestamp: 1.0,
        exit_code: None,
        healthy: Some(false),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&json::encode(&convert::task_status_to_v1(&status))).unwrap();
    assert_eq!(v["healthy"], false);
    assert_eq!(v["reason"], "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED");
}
