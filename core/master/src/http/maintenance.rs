//! Maintenance over HTTP, as Mesos 1.x serves it: the v1 operator calls
//! UPDATE_MAINTENANCE_SCHEDULE, GET_MAINTENANCE_SCHEDULE, GET_MAINTENANCE_STATUS,
//! START_MAINTENANCE and STOP_MAINTENANCE (`/api/v1`, JSON or protobuf), and the legacy
//! endpoints `GET|POST /master/maintenance/schedule` (a JSON `Schedule`),
//! `GET /master/maintenance/status` (a JSON `ClusterStatus`) and `POST /master/machine/down`
//! and `/master/machine/up` (a JSON array of `MachineID`). Bad input is a 400 naming the
//! field; mutations answer 200 with an empty body. The rules themselves live in
//! [`crate::maintenance::schedule`].

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_api::mesos::{allocator, json, maintenance, master, v1};

use super::HttpState;
use super::encoding::{Encoding, JSON, error};
use super::operator::{Reply, bad, master_error, ok, respond, response};
use crate::maintenance::schedule::{at, unavailability};
use crate::maintenance::{MachineId, MaintenanceStatus, Schedule, Window};

fn machine_from_v1(field: &str, m: &v1::MachineId) -> Result<MachineId, Response> {
    MachineId::new(field, m.hostname.as_deref(), m.ip.as_deref()).map_err(bad)
}

fn machines_from_v1(field: &str, ms: &[v1::MachineId]) -> Result<Vec<MachineId>, Response> {
    ms.iter()
        .enumerate()
        .map(|(i, m)| machine_from_v1(&format!("{field}[{i}]"), m))
        .collect()
}

fn machine_to_v1(m: &MachineId) -> v1::MachineId {
    v1::MachineId {
        hostname: m.hostname.clone(),
        ip: m.ip.map(|i| i.to_string()),
    }
}

/// A schedule from the wire; errors name paths under `field`.
fn schedule_from_v1(field: &str, s: &maintenance::Schedule) -> Result<Schedule, Response> {
    let mut windows = Vec::with_capacity(s.windows.len());
    for (i, w) in s.windows.iter().enumerate() {
        let wfield = at(field, &format!("windows[{i}]"));
        let u = &w.unavailability;
        windows.push(Window {
            machines: machines_from_v1(&format!("{wfield}.machine_ids"), &w.machine_ids)?,
            unavailability: unavailability(
                &format!("{wfield}.unavailability"),
                u.start.nanoseconds,
                u.duration.as_ref().map(|d| d.nanoseconds),
            )
            .map_err(bad)?,
        });
    }
    Ok(Schedule { windows })
}

fn schedule_to_v1(s: &Schedule) -> maintenance::Schedule {
    maintenance::Schedule {
        windows: s
            .windows
            .iter()
            .map(|w| maintenance::Window {
                machine_ids: w.machines.iter().map(machine_to_v1).collect(),
                unavailability: super::events::unavailability_to_v1(&w.unavailability),
            })
            .collect(),
    }
}

fn status_to_v1(s: &MaintenanceStatus) -> maintenance::ClusterStatus {
    use allocator::inverse_offer_status::Status;
    maintenance::ClusterStatus {
        draining_machines: s
            .draining
            .iter()
            .map(|d| maintenance::cluster_status::DrainingMachine {
                id: machine_to_v1(&d.id),
                statuses: d
                    .statuses
                    .iter()
                    .map(|(fw, a)| allocator::InverseOfferStatus {
                        status: if a.accept {
                            Status::Accept
                        } else {
                            Status::Decline
                        } as i32,
                        framework_id: v1::FrameworkId {
                            value: fw.to_string(),
                        },
                        timestamp: v1::TimeInfo {
                            nanoseconds: a.at_ns,
                        },
                    })
                    .collect(),
            })
            .collect(),
        down_machines: s.down.iter().map(machine_to_v1).collect(),
    }
}

async fn get_schedule(st: &HttpState) -> Result<maintenance::Schedule, Response> {
    st.handle
        .maintenance_schedule()
        .await
        .map(|s| schedule_to_v1(&s))
        .map_err(|e| master_error(e, StatusCode::BAD_REQUEST))
}

async fn get_status(st: &HttpState) -> Result<maintenance::ClusterStatus, Response> {
    st.handle
        .maintenance_status()
        .await
        .map(|s| status_to_v1(&s))
        .map_err(|e| master_error(e, StatusCode::BAD_REQUEST))
}

async fn update_schedule(st: &HttpState, field: &str, s: &maintenance::Schedule) -> Reply {
    let schedule = schedule_from_v1(field, s)?;
    st.handle
        .update_maintenance_schedule(field, schedule)
        .await
        .map_err(|e| master_error(e, StatusCode::BAD_REQUEST))?;
    ok()
}

/// START_MAINTENANCE (`down`) or STOP_MAINTENANCE for `machines`.
async fn machines(st: &HttpState, field: &str, ms: &[v1::MachineId], down: bool) -> Reply {
    let ms = machines_from_v1(field, ms)?;
    let r = if down {
        st.handle.start_maintenance(field, ms).await
    } else {
        st.handle.stop_maintenance(field, ms).await
    };
    r.map_err(|e| master_error(e, StatusCode::BAD_REQUEST))?;
    ok()
}

/// The maintenance calls of the v1 operator API (`call` was validated: its message is there).
pub(super) async fn v1_call(st: &HttpState, call: master::Call, out: Encoding) -> Reply {
    use master::call::Type;
    use master::response::{self as mr, Type as R};
    match call.r#type() {
        Type::GetMaintenanceSchedule => {
            let mut r = response(R::GetMaintenanceSchedule);
            r.get_maintenance_schedule = Some(mr::GetMaintenanceSchedule {
                schedule: get_schedule(st).await?,
            });
            Ok(respond(out, r))
        }
        Type::GetMaintenanceStatus => {
            let mut r = response(R::GetMaintenanceStatus);
            r.get_maintenance_status = Some(mr::GetMaintenanceStatus {
                status: get_status(st).await?,
            });
            Ok(respond(out, r))
        }
        Type::UpdateMaintenanceSchedule => {
            let u = call.update_maintenance_schedule.unwrap_or_default();
            update_schedule(st, "update_maintenance_schedule.schedule", &u.schedule).await
        }
        Type::StartMaintenance => {
            let s = call.start_maintenance.unwrap_or_default();
            machines(st, "start_maintenance.machines", &s.machines, true).await
        }
        Type::StopMaintenance => {
            let s = call.stop_maintenance.unwrap_or_default();
            machines(st, "stop_maintenance.machines", &s.machines, false).await
        }
        other => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{} is not a maintenance call", other.as_str_name()),
        )),
    }
}

fn json_ok<M: prost::Message + prost::Name>(m: &M) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, JSON)],
        json::encode(m),
    )
        .into_response()
}

/// `GET /master/maintenance/schedule`: the schedule as JSON.
pub async fn legacy_get_schedule(State(st): State<HttpState>) -> Response {
    match get_schedule(&st).await {
        Ok(s) => json_ok(&s),
        Err(r) => r,
    }
}

/// `POST /master/maintenance/schedule`: the body is a JSON `Schedule` replacing the current.
pub async fn legacy_post_schedule(State(st): State<HttpState>, body: Bytes) -> Response {
    let s = match json::decode::<maintenance::Schedule>(&body) {
        Ok(s) => s,
        Err(e) => {
            return bad(format!(
                "Failed to parse the body into a maintenance Schedule: {e}{}",
                super::operator::hint(&e)
            ));
        }
    };
    match update_schedule(&st, "", &s).await {
        Ok(r) | Err(r) => r,
    }
}

/// `GET /master/maintenance/status`: the cluster's `ClusterStatus` as JSON.
pub async fn legacy_status(State(st): State<HttpState>) -> Response {
    match get_status(&st).await {
        Ok(s) => json_ok(&s),
        Err(r) => r,
    }
}

/// A JSON array of `MachineID`s; errors name the element (`[i]`).
fn machine_list(body: &[u8]) -> Result<Vec<v1::MachineId>, Response> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("Failed to parse the body into JSON: {e}")))?;
    let serde_json::Value::Array(items) = v else {
        return Err(bad(
            "Expecting a JSON array of machines, e.g. [{\"hostname\":\"h1\",\"ip\":\"10.0.0.1\"}]",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| json::from_value::<v1::MachineId>(m).map_err(|e| bad(format!("[{i}]: {e}"))))
        .collect()
}

/// `POST /master/machine/down`: the listed machines go DOWN (START_MAINTENANCE).
pub async fn legacy_down(State(st): State<HttpState>, body: Bytes) -> Response {
    let r = match machine_list(&body) {
        Ok(ms) => machines(&st, "", &ms, true).await,
        Err(r) => Err(r),
    };
    match r {
        Ok(r) | Err(r) => r,
    }
}

/// `POST /master/machine/up`: the listed machines come UP (STOP_MAINTENANCE).
pub async fn legacy_up(State(st): State<HttpState>, body: Bytes) -> Response {
    let r = match machine_list(&body) {
        Ok(ms) => machines(&st, "", &ms, false).await,
        Err(r) => Err(r),
    };
    match r {
        Ok(r) | Err(r) => r,
    }
}
