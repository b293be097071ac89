//! The TCP edge of [`crate::pmi`]: a PMI-1 port-mode server for one MPI job.
//!
//! Ranks get `PMI_PORT=<addr>` and `PMI_ID=<rank>`; each connects, and every line it sends
//! goes through [`PmiJob::handle`]. Replies go out through one writer task per connection,
//! so a slow rank never blocks the others; what the job supervisor must know arrives on
//! [`PmiServer::events`]. Lines longer than [`LINE_MAX`] or not UTF-8 close the connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::pmi::{ConnId, LINE_MAX, PmiEvent, PmiJob, Step};

struct Shared {
    job: PmiJob,
    writers: HashMap<ConnId, mpsc::UnboundedSender<String>>,
    next: u64,
    timing: Timing,
}

/// Where the job's PMI time goes, logged at debug level (`TESSERA_LOG=tessera_mpi=debug`):
/// when each rank connected, and per barrier when its first and last `barrier_in` arrived
/// (their spread is the ranks' skew, not the server's) and how long after the last one
/// the `barrier_out`s were handed to the writers, with the puts and gets before it.
struct Timing {
    origin: Instant,
    first_in: Option<Duration>,
    last_in: Option<Duration>,
    barriers: u32,
    puts: u32,
    gets: u32,
}

impl Timing {
    fn note(&mut self, line: &str, step: &Step, read_at: Instant) {
        let at = read_at.saturating_duration_since(self.origin);
        match line.split(' ').next().unwrap_or("") {
            "cmd=put" => self.puts += 1,
            "cmd=get" => self.gets += 1,
            "cmd=barrier_in" => {
                self.first_in.get_or_insert(at);
                self.last_in = Some(at);
            }
            _ => {}
        }
        for e in &step.events {
            if let PmiEvent::Connected { rank } = e {
                tracing::debug!(rank, at_ms = at.as_millis() as u64, "PMI rank connected");
            }
        }
        if step.replies.iter().any(|(_, l)| l == "cmd=barrier_out") {
            self.barriers += 1;
            let (first, last) = (self.first_in.take(), self.last_in.take());
            let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis() as u64);
            tracing::debug!(
                barrier = self.barriers,
                first_in_ms = ms(first),
                last_in_ms = ms(last),
                spread_ms = ms(last).saturating_sub(ms(first)),
                out_after_us = read_at.elapsed().as_micros() as u64,
                puts = self.puts,
                gets = self.gets,
                "PMI barrier released"
            );
        }
    }
}

/// A running PMI server; dropping it stops accepting and closes every connection.
pub struct PmiServer {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    accept: JoinHandle<()>,
}

impl PmiServer {
    /// Listens on `bind` (port 0 picks one) for a job of `size` ranks; the receiver gets
    /// what happens in the job (ranks connecting, aborting, vanishing, finalizing).
    pub async fn start(
        bind: SocketAddr,
        size: u32,
        kvsname: &str,
    ) -> std::io::Result<(PmiServer, mpsc::UnboundedReceiver<PmiEvent>)> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            job: PmiJob::new(size, kvsname),
            writers: HashMap::new(),
            next: 0,
            timing: Timing {
                origin: Instant::now(),
                first_in: None,
                last_in: None,
                barriers: 0,
                puts: 0,
                gets: 0,
            },
        }));
        let (tx, events) = mpsc::unbounded_channel();
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), tx));
        Ok((
            PmiServer {
                addr,
                shared,
                accept,
            },
            events,
        ))
    }

    /// The address ranks connect to (`PMI_PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets `PMI_process_mapping` (ranks per node, in node order).
    pub fn set_node_layout(&self, ranks_per_node: &[u32]) {
        lock(&self.shared).job.set_node_layout(ranks_per_node);
    }

    /// Whether `rank` called `finalize`.
    pub fn has_finalized(&self, rank: u32) -> bool {
        lock(&self.shared).job.has_finalized(rank)
    }
}

impl Drop for PmiServer {
    fn drop(&mut self) {
        self.accept.abort();
        lock(&self.shared).writers.clear();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock cannot leave the job half-updated in a way that
    // matters more than stopping would: keep serving.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Mutex<Shared>>,
    events: mpsc::UnboundedSender<PmiEvent>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracing::debug!(%peer, "PMI connection");
        tokio::spawn(serve(stream, shared.clone(), events.clone()));
    }
}

async fn serve(
    stream: TcpStream,
    shared: Arc<Mutex<Shared>>,
    events: mpsc::UnboundedSender<PmiEvent>,
) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let conn = {
        let mut s = lock(&shared);
        s.next += 1;
        let conn = ConnId(s.next);
        s.writers.insert(conn, tx);
        conn
    };
    let writer = tokio::spawn(async move {
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            if write.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(LINE_MAX as u64)
            .read_line(&mut line)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(?conn, error = %e, "PMI connection sent bytes that are not a line of text; closing it");
                break;
            }
        };
        if n == 0 {
            break;
        }
        if !line.ends_with('\n') {
            if n >= LINE_MAX {
                tracing::warn!(
                    ?conn,
                    "PMI line longer than {LINE_MAX} bytes; closing the connection"
                );
            }
            break;
        }
        let read_at = Instant::now();
        let step = {
            let mut s = lock(&shared);
            let step = s.job.handle(conn, line.trim_end());
            s.timing.note(line.trim_end(), &step, read_at);
            step
        };
        if deliver(&shared, &events, conn, step) {
            break;
        }
    }
    let step = lock(&shared).job.disconnected(conn);
    deliver(&shared, &events, conn, step);
    lock(&shared).writers.remove(&conn);
    let _ = writer.await;
}

/// Sends a step's replies and events; true when `conn` must close.
fn deliver(
    shared: &Mutex<Shared>,
    events: &mpsc::UnboundedSender<PmiEvent>,
    conn: ConnId,
    step: Step,
) -> bool {
    let s = lock(shared);
    for (to, line) in step.replies {
        if let Some(w) = s.writers.get(&to) {
            let _ = w.send(line);
        }
    }
    drop(s);
    for e in step.events {
        let _ = events.send(e);
    }
    if step.close {
        lock(shared).writers.remove(&conn);
    }
    step.close
}
