//! The TCP edge of [`crate::pmi`]: a PMI-1 port-mode server for one MPI job.
//!
//! Ranks get `PMI_PORT=<addr>` and `PMI_ID=<rank>`; each connects, and every line it sends
//! goes through [`PmiJob::handle`]. Replies go out through one writer task per connection,
//! so a slow rank never blocks the others; what the job supervisor must know arrives on
//! [`PmiServer::events`]. Lines longer than [`LINE_MAX`] or not UTF-8 close the connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::pmi::{ConnId, LINE_MAX, PmiEvent, PmiJob, Step};

struct Shared {
    job: PmiJob,
    writers: HashMap<ConnId, mpsc::UnboundedSender<String>>,
    next: u64,
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
        let step = lock(&shared).job.handle(conn, line.trim_end());
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
