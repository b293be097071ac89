//! A scripted fake master for framework unit tests: an in-process HTTP/1.1 server on
//! `127.0.0.1:0` speaking just enough of `POST /api/v1/scheduler` (protobuf only).
//!
//! * Each SUBSCRIBE gets the next queued [`SubscribeReply`] (default: accept). An accepted
//!   subscription becomes a [`FakeStream`] (from [`FakeMaster::next_stream`]) through which
//!   the test scripts events; dropping it closes the stream.
//! * Every other call is answered `202 Accepted`.
//! * Every call, SUBSCRIBE included, is recorded ([`FakeMaster::calls`]).
//!
//! [`events`] builds the events a test sends.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tessera_api::mesos::scheduler::{self, call::Type as CallType};
use tessera_api::recordio::frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How the fake answers one SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeReply {
    /// 200 with an event stream (a new [`FakeStream`]).
    Accept,
    /// This status with an empty body (e.g. 503 while "electing").
    Status(u16),
    /// 307 with `Location: //HOST:PORT/api/v1/scheduler`.
    Redirect(String),
}

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub call: scheduler::Call,
    pub stream_id: Option<String>,
}

impl RecordedCall {
    pub fn kind(&self) -> CallType {
        self.call.r#type()
    }
}

/// An accepted subscription: send events down it; drop it to close the stream.
#[derive(Debug)]
pub struct FakeStream {
    pub stream_id: String,
    /// The SUBSCRIBE call that opened it.
    pub subscribe: scheduler::Call,
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl FakeStream {
    /// Sends one event (RecordIO-framed protobuf); `false` if the client went away.
    pub fn send(&self, ev: &scheduler::Event) -> bool {
        self.tx.send(frame(&ev.encode_to_vec())).is_ok()
    }
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<RecordedCall>>,
    replies: Mutex<VecDeque<SubscribeReply>>,
    streams: Mutex<u64>,
}

/// The fake master. Dropping it stops accepting connections.
pub struct FakeMaster {
    addr: SocketAddr,
    shared: Arc<Shared>,
    streams: tokio::sync::Mutex<mpsc::UnboundedReceiver<FakeStream>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMaster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeMaster {
    pub async fn start() -> FakeMaster {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, s.clone(), tx.clone()));
            }
        });
        FakeMaster {
            addr,
            shared,
            streams: tokio::sync::Mutex::new(rx),
            task,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Queues the answer to a future SUBSCRIBE (answers are used in order).
    pub fn push_subscribe_reply(&self, r: SubscribeReply) {
        lock(&self.shared.replies).push_back(r);
    }

    /// The next accepted subscription, waiting up to `timeout`.
    pub async fn next_stream(&self, timeout: Duration) -> Option<FakeStream> {
        let mut rx = self.streams.lock().await;
        tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every call received so far, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.shared.calls).clone()
    }

    /// Calls of one type, in arrival order.
    pub fn calls_of(&self, t: CallType) -> Vec<RecordedCall> {
        self.calls().into_iter().filter(|c| c.kind() == t).collect()
    }

    /// Waits (polling) until `pred` holds for the recorded calls; `false` on timeout.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[RecordedCall]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.calls()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn read_request(conn: &mut TcpStream) -> Option<(Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, body))
}

async fn respond(conn: &mut TcpStream, status: &str, extra: &str) {
    let _ = conn
        .write_all(
            format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
}

async fn serve(
    mut conn: TcpStream,
    shared: Arc<Shared>,
    streams: mpsc::UnboundedSender<FakeStream>,
) {
    let Some((headers, body)) = read_request(&mut conn).await else {
        return;
    };
    let Ok(call) = scheduler::Call::decode(body.as_slice()) else {
        respond(&mut conn, "400 Bad Request", "").await;
        return;
    };
    let stream_id = headers
        .iter()
        .find(|(k, _)| k == "mesos-stream-id")
        .map(|(_, v)| v.clone());
    lock(&shared.calls).push(RecordedCall {
        call: call.clone(),
        stream_id,
    });
    if call.r#type() != CallType::Subscribe {
        respond(&mut conn, "202 Accepted", "").await;
        return;
    }
    let reply = lock(&shared.replies)
        .pop_front()
        .unwrap_or(SubscribeReply::Accept);
    match reply {
        SubscribeReply::Status(s) => respond(&mut conn, &format!("{s} Status"), "").await,
        SubscribeReply::Redirect(to) => {
            respond(
                &mut conn,
                "307 Temporary Redirect",
                &format!("Location: //{to}/api/v1/scheduler\r\n"),
            )
            .await
        }
        SubscribeReply::Accept => {
            let n = {
                let mut g = lock(&shared.streams);
                *g += 1;
                *g
            };
            let stream_id = format!("fake-stream-{n}");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nMesos-Stream-Id: {stream_id}\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
            let _ = streams.send(FakeStream {
                stream_id,
                subscribe: call,
                tx,
            });
            while let Some(rec) = rx.recv().await {
                let mut chunk = format!("{:x}\r\n", rec.len()).into_bytes();
                chunk.extend_from_slice(&rec);
                chunk.extend_from_slice(b"\r\n");
                if conn.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // The test dropped the stream: end it abruptly, like a crashed master.
            let _ = conn.shutdown().await;
        }
    }
}

/// Builders for the events a test sends down a [`FakeStream`].
pub mod events {
    use tessera_api::mesos::convert::resources_to_v1;
    use tessera_api::mesos::scheduler::{Event, event};
    use tessera_api::mesos::v1;
    use tessera_types::TaskState;

    fn ev(t: event::Type) -> Event {
        let mut e = Event::default();
        e.set_type(t);
        e
    }

    pub fn subscribed(framework_id: &str, heartbeat_secs: f64) -> Event {
        let mut e = ev(event::Type::Subscribed);
        e.subscribed = Some(event::Subscribed {
            framework_id: v1::FrameworkId {
                value: framework_id.into(),
            },
            heartbeat_interval_seconds: Some(heartbeat_secs),
            master_info: None,
        });
        e
    }

    pub fn heartbeat() -> Event {
        ev(event::Type::Heartbeat)
    }

    /// An offer of `resources` (Mesos text form, e.g. `cpus:2;mem:512`) allocated to `role`.
    pub fn offer(id: &str, agent: &str, resources: &str, role: Option<&str>) -> v1::Offer {
        let r = tessera_types::parse::parse_resources(resources).expect("valid resources text");
        let role_t = role.map(|r| tessera_types::Role::new(r).expect("valid role"));
        v1::Offer {
            id: v1::OfferId { value: id.into() },
            framework_id: v1::FrameworkId { value: "fw".into() },
            agent_id: v1::AgentId {
                value: agent.into(),
            },
            hostname: format!("{agent}.local"),
            resources: resources_to_v1(&r, role_t.as_ref()),
            allocation_info: role.map(|r| v1::resource::AllocationInfo {
                role: Some(r.into()),
            }),
            ..Default::default()
        }
    }

    pub fn offers(offers: Vec<v1::Offer>) -> Event {
        let mut e = ev(event::Type::Offers);
        e.offers = Some(event::Offers { offers });
        e
    }

    pub fn rescind(offer_id: &str) -> Event {
        let mut e = ev(event::Type::Rescind);
        e.rescind = Some(event::Rescind {
            offer_id: v1::OfferId {
                value: offer_id.into(),
            },
        });
        e
    }

    /// A status update; `uuid` (16 raw bytes) makes it one that needs acknowledging.
    pub fn update(task: &str, agent: &str, state: TaskState, uuid: Option<[u8; 16]>) -> Event {
        let mut e = ev(event::Type::Update);
        e.update = Some(event::Update {
            status: v1::TaskStatus {
                task_id: v1::TaskId { value: task.into() },
                state: state.as_i32(),
                source: Some(1),
                agent_id: Some(v1::AgentId {
                    value: agent.into(),
                }),
                timestamp: Some(0.0),
                uuid: uuid.map(|u| u.to_vec()),
                ..Default::default()
            },
        });
        e
    }

    pub fn error(message: &str) -> Event {
        let mut e = ev(event::Type::Error);
        e.error = Some(event::Error {
            message: message.into(),
        });
        e
    }
}
