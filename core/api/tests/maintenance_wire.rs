//! The maintenance messages (`mesos.v1.maintenance`, `MachineInfo`,
//! `allocator.InverseOfferStatus`) on the wire: the schedule body Mesos' documentation posts
//! to `/master/maintenance/schedule` decodes, required fields are named when missing, and
//! the cluster status prints the way Mesos prints it.

use tessera_api::mesos::{allocator, json, maintenance, master, protobuf, v1};

#[test]
fn the_documented_schedule_body_decodes_and_prints_back() {
    let body = r#"{
      "windows" : [
        {
          "machine_ids" : [
            { "hostname" : "machine1", "ip" : "10.0.0.1" },
            { "hostname" : "machine2", "ip" : "10.0.0.2" }
          ],
          "unavailability" : {
            "start" : { "nanoseconds" : 1443830400000000000 }
          }
        },
        {
          "machine_ids" : [ { "hostname" : "machine3" } ],
          "unavailability" : {
            "start" : { "nanoseconds" : 1443834000000000000 },
            "duration" : { "nanoseconds" : 3600000000000 }
          }
        }
      ]
    }"#;
    let s: maintenance::Schedule = json::decode(body.as_bytes()).unwrap();
    assert_eq!(s.windows.len(), 2);
    assert_eq!(s.windows[0].machine_ids[1].ip.as_deref(), Some("10.0.0.2"));
    assert_eq!(
        s.windows[0].unavailability.start.nanoseconds,
        1_443_830_400_000_000_000
    );
    assert!(s.windows[0].unavailability.duration.is_none());
    let again: serde_json::Value = serde_json::from_slice(&json::encode(&s)).unwrap();
    let orig: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(again, orig, "64-bit nanoseconds print exactly");
    assert_eq!(
        protobuf::decode::<maintenance::Schedule>(&protobuf::encode(&s)).unwrap(),
        s
    );
}

#[test]
fn missing_required_fields_are_named() {
    let e = json::decode::<maintenance::Schedule>(
        br#"{"windows":[{"machine_ids":[{"hostname":"h"}]},
                        {"machine_ids":[],"unavailability":{}}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Not initialized: windows[0].unavailability, windows[1].unavailability.start"
    );
    let e = json::decode::<master::Call>(
        br#"{"type":"UPDATE_MAINTENANCE_SCHEDULE","update_maintenance_schedule":{}}"#,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Not initialized: update_maintenance_schedule.schedule"
    );
    let c = json::decode::<master::Call>(
        br#"{"type":"START_MAINTENANCE","start_maintenance":{"machines":[{"ip":"10.0.0.1"}]}}"#,
    )
    .unwrap();
    assert_eq!(c.r#type(), master::call::Type::StartMaintenance);
    assert_eq!(
        c.start_maintenance.unwrap().machines[0].ip.as_deref(),
        Some("10.0.0.1")
    );
}

#[test]
fn cluster_status_and_machine_info_print_as_mesos_does() {
    let status = maintenance::ClusterStatus {
        draining_machines: vec![maintenance::cluster_status::DrainingMachine {
            id: v1::MachineId {
                hostname: Some("h1".into()),
                ip: None,
            },
            statuses: vec![allocator::InverseOfferStatus {
                status: allocator::inverse_offer_status::Status::Accept as i32,
                framework_id: v1::FrameworkId { value: "f".into() },
                timestamp: v1::TimeInfo { nanoseconds: 7 },
            }],
        }],
        down_machines: vec![v1::MachineId {
            hostname: None,
            ip: Some("10.0.0.9".into()),
        }],
    };
    assert_eq!(
        json::to_value(&status),
        serde_json::json!({
            "draining_machines": [{"id": {"hostname": "h1"}, "statuses": [
                {"status": "ACCEPT", "framework_id": {"value": "f"},
                 "timestamp": {"nanoseconds": 7}}]}],
            "down_machines": [{"ip": "10.0.0.9"}]})
    );
    let info: v1::MachineInfo = json::decode(
        br#"{"id":{"hostname":"h1"},"mode":"DRAINING","unavailability":{"start":{"nanoseconds":1}}}"#,
    )
    .unwrap();
    assert_eq!(info.mode(), v1::machine_info::Mode::Draining);
}
