//! A JSON scheduler and operator client over real HTTP, for tests of the v1 APIs: subscribe,
//! calls on the subscription's stream, and the events a framework would see.
//! Included with `#[path = "support/sched.rs"] mod sched;` next to `mod common;`.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use tessera_master::MasterConfig;
use tokio_util::sync::CancellationToken;

use crate::common::http::{Response, post_json, request};

pub const WAIT: Duration = Duration::from_secs(10);

/// A master on 127.0.0.1:0 with fast allocation and heartbeats; `tweak` adjusts the rest.
pub async fn master(
    tweak: impl FnOnce(&mut MasterConfig),
) -> (tessera_master::RunningMaster, CancellationToken) {
    let dir = std::env::temp_dir().join(format!("tessera-sched-{}", uuid::Uuid::new_v4()));
    let mut c = MasterConfig::new("127.0.0.1:0".parse().unwrap(), dir);
    c.allocator.interval = Duration::from_millis(50);
    c.scheduler_heartbeat_interval = Duration::from_millis(300);
    tweak(&mut c);
    let stop = CancellationToken::new();
    let m = tessera_master::start(c, stop.clone()).await.unwrap();
    (m, stop)
}

/// A subscribed framework.
pub struct Sched {
    pub addr: String,
    pub stream: Response,
    pub sid: String,
    pub fw: String,
}

impl Sched {
    /// SUBSCRIBE with `framework_info` (JSON); waits for SUBSCRIBED.
    pub async fn subscribe(addr: &str, framework_info: Value) -> Sched {
        let mut body =
            json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info}});
        if let Some(id) = framework_info.get("id") {
            body["framework_id"] = id.clone();
        }
        let stream = post_json(addr, &body.to_string(), &[]).await;
        assert_eq!(stream.status, 200, "SUBSCRIBE answered");
        let sid = stream
            .header("mesos-stream-id")
            .expect("Mesos-Stream-Id")
            .to_string();
        let mut s = Sched {
            addr: addr.to_string(),
            stream,
            sid,
            fw: String::new(),
        };
        let ev = s.event().await;
        assert_eq!(ev["type"], "SUBSCRIBED", "{ev}");
        s.fw = ev["subscribed"]["framework_id"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        s
    }

    /// A call on this subscription (`framework_id` filled in): status and body.
    pub async fn call(&self, mut call: Value) -> (u16, String) {
        self.call_with(&mut call, &[]).await
    }

    /// [`Sched::call`] with extra headers.
    pub async fn call_with(&self, call: &mut Value, headers: &[(&str, &str)]) -> (u16, String) {
        call["framework_id"] = json!({"value": self.fw});
        let mut h = vec![("Mesos-Stream-Id", self.sid.as_str())];
        h.extend_from_slice(headers);
        let r = post_json(&self.addr, &call.to_string(), &h).await;
        let status = r.status;
        (status, r.body().await)
    }

    /// The next event that is not a HEARTBEAT.
    pub async fn event(&mut self) -> Value {
        loop {
            let rec = self
                .stream
                .record(WAIT)
                .await
                .expect("an event within 10 s");
            let ev: Value = serde_json::from_slice(&rec).expect("a JSON event");
            if ev["type"] != "HEARTBEAT" {
                return ev;
            }
        }
    }

    /// Skips events until one of type `ty`.
    pub async fn event_of(&mut self, ty: &str) -> Value {
        loop {
            let ev = self.event().await;
            if ev["type"] == ty {
                return ev;
            }
        }
    }

    /// The next event of one of `types`, failing on any other (HEARTBEATs skipped).
    pub async fn expect(&mut self, types: &[&str]) -> Value {
        let ev = self.event().await;
        assert!(
            types.iter().any(|t| ev["type"] == *t),
            "expected one of {types:?}, got {ev}"
        );
        ev
    }

    /// Whether no event but HEARTBEATs arrives for `d`.
    pub async fn quiet_for(&mut self, d: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let rec = self.stream.record(left).await?;
            let ev: Value = serde_json::from_slice(&rec).expect("a JSON event");
            if ev["type"] != "HEARTBEAT" {
                return Some(ev);
            }
        }
    }
}

/// A MULTI_ROLE framework in `role` with extra capabilities.
pub fn framework_info(name: &str, role: &str, caps: &[&str]) -> Value {
    let mut c = vec![json!({"type": "MULTI_ROLE"})];
    c.extend(caps.iter().map(|t| json!({"type": t})));
    json!({"user": "u", "name": name, "roles": [role], "capabilities": c,
           "failover_timeout": 3600})
}

/// An operator API call (`/api/v1`, JSON): status and parsed body (`Null` when empty).
pub async fn operator(addr: &str, call: Value) -> (u16, Value) {
    let r = request(
        addr,
        "POST",
        "/api/v1",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        call.to_string().as_bytes(),
    )
    .await;
    let status = r.status;
    let body = r.body().await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// The scalar `name` in a list of v1 resources (summed).
pub fn scalar(resources: &Value, name: &str) -> f64 {
    resources
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name)
        .filter_map(|r| r["scalar"]["value"].as_f64())
        .sum()
}
