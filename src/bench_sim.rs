//! Shared pieces of the API benchmarks: simulated agents attached in-process through
//! [`MasterHandle::agent_attached`] (the same trait real gRPC agents use), and a tiny
//! HTTP/1.1 client over tokio's `TcpStream` (GETs, keep-alive POSTs, RecordIO streams).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use tessera_api::convert::{resources_to_pb, status_to_pb};
use tessera_api::pb;
use tessera_master::MasterHandle;
use tessera_master::link::AgentLink;
use tessera_types::parse::parse_resources;
use tessera_types::{TaskId, TaskState, TaskStatus, UpdateSource};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// All simulated agents share one outbound channel, tagged with their connection id.
struct SimLink {
    conn: u64,
    tx: mpsc::UnboundedSender<(u64, pb::MasterMessage)>,
}

impl AgentLink for SimLink {
    fn send(&self, msg: pb::MasterMessage) -> bool {
        self.tx.send((self.conn, msg)).is_ok()
    }
}

/// Counters of what the simulated agents saw.
#[derive(Default)]
pub struct SimCounters {
    pub registered: AtomicUsize,
    pub run_tasks: AtomicUsize,
}

/// Attaches and registers `n` agents with `resources`, and answers every RunTask with
/// TASK_RUNNING (then TASK_FINISHED when `finish`). Returns once all are registered.
pub async fn start_agents(
    h: &MasterHandle,
    n: usize,
    resources: &str,
    finish: bool,
    progress: bool,
) -> Result<Arc<SimCounters>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, pb::MasterMessage)>();
    let counters = Arc::new(SimCounters::default());
    let res = resources_to_pb(&parse_resources(resources)?);
    let c = counters.clone();
    let hh = h.clone();
    tokio::spawn(async move {
        while let Some((conn, msg)) = rx.recv().await {
            match msg.msg {
                Some(pb::master_message::Msg::Registered(_)) => {
                    c.registered.fetch_add(1, Ordering::Relaxed);
                }
                Some(pb::master_message::Msg::RunTask(rt)) => {
                    c.run_tasks.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = rt.task else { continue };
                    let Ok(id) = TaskId::new(task.task_id) else {
                        continue;
                    };
                    let mut states = vec![TaskState::TaskRunning];
                    if finish {
                        states.push(TaskState::TaskFinished);
                    }
                    for state in states {
                        let up = pb::StatusUpdate {
                            framework_id: rt.framework_id.clone(),
                            status: Some(status_to_pb(&status(&id, state))),
                        };
                        let msg = pb::AgentMessage {
                            msg: Some(pb::agent_message::Msg::StatusUpdate(up)),
                        };
                        if hh.agent_message(conn, msg).await.is_err() {
                            return;
                        }
                    }
                }
                _ => {}
            }
        }
    });
    for i in 0..n {
        let conn = i as u64 + 1;
        h.agent_attached(
            conn,
            Box::new(SimLink {
                conn,
                tx: tx.clone(),
            }),
            None,
        )
        .await?;
        let info = pb::AgentInfo {
            hostname: format!("sim{conn}"),
            http_port: 0,
            resources: res.clone(),
            attributes: vec![pb::Attribute {
                name: "rack".into(),
                value: format!("r{}", i % 40),
            }],
            version: "bench".into(),
        };
        let reg = pb::Register {
            info: Some(info),
            agent_id: None,
            tasks: vec![],
        };
        h.agent_message(
            conn,
            pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Register(reg)),
            },
        )
        .await?;
        if progress && (i + 1) % 1000 == 0 {
            eprint!(
                "\ragents: {}/{n} sent, {} registered",
                i + 1,
                counters.registered.load(Ordering::Relaxed)
            );
        }
    }
    let t0 = std::time::Instant::now();
    while counters.registered.load(Ordering::Relaxed) < n {
        if t0.elapsed().as_secs() > 300 {
            bail!("agents did not all register within 300 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if progress {
        eprintln!("\ragents: {n}/{n} registered              ");
    }
    Ok(counters)
}

fn status(id: &TaskId, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: id.clone(),
        state,
        reason: None,
        message: None,
        source: UpdateSource::SourceExecutor,
        agent_id: None,
        framework_id: None,
        uuid: Some(format!("{id}-{}", state as i32)),
        timestamp: tessera_now(),
        exit_code: None,
        healthy: None,
    }
}

fn tessera_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `GET path` on a fresh connection (`Connection: close`); returns status and body bytes.
pub async fn get(addr: &str, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut r = BufReader::new(s);
    let (status, head) = read_head(&mut r).await?;
    let body = read_body(&mut r, &head, true).await?;
    Ok((status, body))
}

/// Response framing taken from the headers.
pub struct Head {
    pub chunked: bool,
    pub length: Option<usize>,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub async fn read_head(r: &mut BufReader<TcpStream>) -> Result<(u16, Head)> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        bail!("connection closed before a response");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).await?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut head = Head {
        chunked: false,
        length: None,
        headers,
    };
    head.chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    head.length = head.header("content-length").and_then(|v| v.parse().ok());
    Ok((status, head))
}

/// Reads a whole body; without a length or chunking, reads to EOF only when `to_eof`.
pub async fn read_body(r: &mut BufReader<TcpStream>, head: &Head, to_eof: bool) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if head.chunked {
        while let Some(c) = read_chunk(r).await? {
            out.extend(c);
        }
    } else if let Some(n) = head.length {
        out.resize(n, 0);
        r.read_exact(&mut out).await?;
    } else if to_eof {
        r.read_to_end(&mut out).await?;
    }
    Ok(out)
}

/// Next HTTP chunk; `None` at the end of the body.
pub async fn read_chunk(r: &mut BufReader<TcpStream>) -> Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let n = usize::from_str_radix(line.trim(), 16).context("bad chunk size")?;
    let mut data = vec![0; n + 2];
    r.read_exact(&mut data).await?;
    data.truncate(n);
    Ok(if n == 0 { None } else { Some(data) })
}

/// A RecordIO event stream (the body of a SUBSCRIBE response).
pub struct RecordStream {
    pub reader: BufReader<TcpStream>,
    buf: Vec<u8>,
}

impl RecordStream {
    pub fn new(reader: BufReader<TcpStream>) -> Self {
        RecordStream {
            reader,
            buf: Vec::new(),
        }
    }

    /// Next record; `None` when the stream ends.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let len: usize = std::str::from_utf8(&self.buf[..nl])?.trim().parse()?;
                if self.buf.len() >= nl + 1 + len {
                    let rec = self.buf[nl + 1..nl + 1 + len].to_vec();
                    self.buf.drain(..nl + 1 + len);
                    return Ok(Some(rec));
                }
            }
            match read_chunk(&mut self.reader).await? {
                Some(c) => self.buf.extend(c),
                None => return Ok(None),
            }
        }
    }
}

/// A keep-alive connection for scheduler calls.
pub struct CallConn {
    addr: String,
    r: BufReader<TcpStream>,
}

impl CallConn {
    pub async fn connect(addr: &str) -> Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(CallConn {
            addr: addr.to_string(),
            r: BufReader::new(s),
        })
    }

    /// POSTs a JSON call to `/api/v1/scheduler`; returns the status code.
    pub async fn post(&mut self, body: &str, stream_id: &str) -> Result<u16> {
        let req = format!(
            "POST /api/v1/scheduler HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\nMesos-Stream-Id: {stream_id}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.r.get_mut().write_all(req.as_bytes()).await?;
        let (status, head) = read_head(&mut self.r).await?;
        read_body(&mut self.r, &head, false).await?;
        Ok(status)
    }
}

/// Opens a SUBSCRIBE stream with a JSON body; returns the stream id and the event stream.
pub async fn subscribe(addr: &str, body: &str) -> Result<(String, RecordStream)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "POST /api/v1/scheduler HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut r = BufReader::new(s);
    let (status, head) = read_head(&mut r).await?;
    if status != 200 {
        let b = read_body(&mut r, &head, false).await.unwrap_or_default();
        bail!(
            "SUBSCRIBE answered {status}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    let sid = head
        .header("mesos-stream-id")
        .context("no Mesos-Stream-Id")?
        .to_string();
    Ok((sid, RecordStream::new(r)))
}

/// Minimum, median and maximum of a sample.
pub fn min_med_max(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (s[0], s[s.len() / 2], s[s.len() - 1])
}
