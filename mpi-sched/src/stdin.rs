//! Forwarding `tessera mpi run`'s stdin to rank 0, as `srun` and `mpirun` do.
//!
//! The path: the CLI streams its stdin to the service (`POST /mpi/v1/jobs/{id}/stdin`,
//! chunked, see [`crate::rest`]; in-process for a private service) → one bounded queue per
//! job ([`STDIN_QUEUE`] pieces of at most [`STDIN_CHUNK`] bytes; a full queue stops the
//! service reading the stream, so TCP pushes back on the CLI, and memory stays bounded)
//! → rank 0:
//! * direct launch (PMI-1) and Hydra: rank 0 runs under `tessera mpi rank-exec --stdin
//!   ADDR --stdin-token T`, which connects to the job's [`StdinRelay`] (a TCP listener
//!   beside the PMI or control server), sends the token line and pipes what it reads into
//!   the program. (Hydra's own stdin forwarding has no backpressure: its proxy gives up,
//!   "process reading stdin too slowly", as soon as rank 0 falls behind by a pipe's worth.)
//! * Open MPI: `mpirun`'s own stdin ([`pump`]); it forwards it to rank 0 through orted.
//!
//! The end of the CLI's stdin closes the queue, then the relay's socket or the launcher's
//! pipe, then rank 0's stdin: EOF. A job that ends drops the queue's reading end, and the
//! stream is refused from then on.
//!
//! Who may write: [`StdinGate`], pure. A job submitted without stdin (`tessera mpi submit`)
//! refuses every stream; otherwise the first stream carrying the token handed to the
//! submitter is accepted, once.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// Largest piece of stdin queued at once.
pub const STDIN_CHUNK: usize = 64 * 1024;
/// Pieces queued per job between the CLI's stream and rank 0.
pub const STDIN_QUEUE: usize = 8;
/// Longest token line the relay reads.
const TOKEN_LINE_MAX: u64 = 256;

/// Why a stdin stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StdinRefusal {
    #[error(
        "it takes no stdin (`tessera mpi submit` keeps stdin closed; `tessera mpi run` forwards it)"
    )]
    NotForwarded,
    #[error(
        "the stdin token does not match: only the client that submitted the job may stream its stdin"
    )]
    WrongToken,
    #[error("its stdin is already being streamed (one stream is accepted, once)")]
    AlreadyClaimed,
}

/// Who may write a job's stdin; `W` is the writing end handed to the one accepted stream.
#[derive(Debug)]
pub enum StdinGate<W> {
    /// The job keeps stdin closed.
    NotForwarded,
    /// Waiting for the submitter's stream.
    Open { token: String, writer: W },
    /// A stream was accepted.
    Claimed,
}

impl<W> StdinGate<W> {
    /// The writing end for a stream carrying `token`, or why not. Only the first stream
    /// with the right token gets it; a wrong token claims nothing.
    pub fn claim(&mut self, token: &str) -> Result<W, StdinRefusal> {
        match self {
            StdinGate::NotForwarded => Err(StdinRefusal::NotForwarded),
            StdinGate::Claimed => Err(StdinRefusal::AlreadyClaimed),
            StdinGate::Open { token: t, .. } if !same(t.as_bytes(), token.as_bytes()) => {
                Err(StdinRefusal::WrongToken)
            }
            StdinGate::Open { .. } => match std::mem::replace(self, StdinGate::Claimed) {
                StdinGate::Open { writer, .. } => Ok(writer),
                _ => Err(StdinRefusal::AlreadyClaimed),
            },
        }
    }

    /// The token the submitter streams with, while no stream was accepted.
    pub fn token(&self) -> Option<&str> {
        match self {
            StdinGate::Open { token, .. } => Some(token),
            _ => None,
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random token.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The reading end of a job's stdin queue.
pub type StdinSource = mpsc::Receiver<Vec<u8>>;

/// The writing end of a job's stdin queue.
#[derive(Debug)]
pub struct StdinWriter {
    tx: mpsc::Sender<Vec<u8>>,
}

/// The job's side of the queue is gone: it ended, or rank 0 stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdinClosed;

impl StdinWriter {
    /// Resolves once the job's side is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Queues `data` in pieces of at most [`STDIN_CHUNK`] bytes, waiting while the queue
    /// is full. Dropping the writer is the end of stdin.
    pub async fn write(&self, data: &[u8]) -> Result<(), StdinClosed> {
        for piece in data.chunks(STDIN_CHUNK) {
            self.tx
                .send(piece.to_vec())
                .await
                .map_err(|_| StdinClosed)?;
        }
        Ok(())
    }
}

/// A job's stdin queue.
pub fn stdin_queue() -> (StdinWriter, StdinSource) {
    let (tx, rx) = mpsc::channel(STDIN_QUEUE);
    (StdinWriter { tx }, rx)
}

/// Copies the queue into `sink` until the queue ends (then shuts `sink` down: EOF) or
/// `sink` fails (the reader went away).
pub async fn pump(mut source: StdinSource, mut sink: impl AsyncWrite + Unpin) {
    while let Some(piece) = source.recv().await {
        if sink.write_all(&piece).await.is_err() {
            return;
        }
    }
    let _ = sink.shutdown().await;
}

/// The relay rank 0's wrapper reads stdin from under direct launch: a TCP listener that
/// hands the job's queue to the first connection sending the right token line, then
/// closes its side at the queue's end. Other connections are closed unanswered. Dropping
/// the relay stops it.
pub struct StdinRelay {
    addr: SocketAddr,
    token: String,
    accept: JoinHandle<()>,
}

impl StdinRelay {
    /// Listens on `ip` (any port) for the connection that reads `source`.
    pub async fn start(ip: IpAddr, source: StdinSource) -> std::io::Result<StdinRelay> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let token = new_token();
        let source = Arc::new(Mutex::new(Some(source)));
        let expected = token.clone();
        let accept = tokio::spawn(async move {
            // Aborting this task drops the set, which aborts every connection's task.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    Ok((stream, _)) = listener.accept() => {
                        conns.spawn(relay(stream, expected.clone(), source.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(StdinRelay {
            addr,
            token,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The options of `tessera mpi rank-exec` that make it read from here: `--stdin ADDR
    /// --stdin-token T` (it connects only as rank 0).
    pub fn args(&self) -> Vec<String> {
        vec![
            "--stdin".into(),
            self.addr.to_string(),
            "--stdin-token".into(),
            self.token.clone(),
        ]
    }

    /// What rank 0's command is run under: `EXE mpi rank-exec --stdin ADDR --stdin-token
    /// T --`.
    pub fn wrapper(&self, exe: &str) -> Vec<String> {
        let mut argv = vec![exe.to_string(), "mpi".into(), "rank-exec".into()];
        argv.extend(self.args());
        argv.push("--".into());
        argv
    }
}

impl Drop for StdinRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(stream: TcpStream, token: String, source: Arc<Mutex<Option<StdinSource>>>) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read);
    let read = (&mut reader)
        .take(TOKEN_LINE_MAX)
        .read_line(&mut line)
        .await;
    if read.is_err() || !same(line.trim().as_bytes(), token.as_bytes()) {
        tracing::warn!("stdin relay: a connection without the job's token; closed");
        return;
    }
    let taken = source.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(source) = taken else {
        tracing::warn!("stdin relay: a second connection for rank 0's stdin; closed");
        return;
    };
    // Until the queue ends, or rank 0's wrapper goes away (it sends nothing more: a read
    // returning is its socket closing), which drops the queue and so ends the stream.
    let mut rest = [0u8; 64];
    tokio::select! {
        _ = pump(source, write) => {}
        _ = reader.read(&mut rest) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_stream_with_the_token_is_accepted() {
        let mut gate = StdinGate::Open {
            token: "t0k".into(),
            writer: 7,
        };
        assert_eq!(gate.token(), Some("t0k"));
        assert_eq!(gate.claim("nope"), Err(StdinRefusal::WrongToken));
        assert_eq!(gate.claim(""), Err(StdinRefusal::WrongToken));
        // A wrong token claimed nothing.
        assert_eq!(gate.claim("t0k"), Ok(7));
        assert_eq!(gate.claim("t0k"), Err(StdinRefusal::AlreadyClaimed));
        assert_eq!(gate.token(), None);
        let mut closed: StdinGate<u8> = StdinGate::NotForwarded;
        assert_eq!(closed.claim("t0k"), Err(StdinRefusal::NotForwarded));
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_split() {
        let (w, mut r) = stdin_queue();
        w.write(&vec![1u8; STDIN_CHUNK + 1]).await.unwrap();
        assert_eq!(r.recv().await.map(|p| p.len()), Some(STDIN_CHUNK));
        assert_eq!(r.recv().await.map(|p| p.len()), Some(1));
        for _ in 0..STDIN_QUEUE {
            w.write(b"x").await.unwrap();
        }
        // Full: the next write waits until rank 0's side reads.
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(50), w.write(b"y")).await;
        assert!(blocked.is_err(), "a full queue must make the writer wait");
        drop(r);
        assert_eq!(w.write(b"z").await, Err(StdinClosed));
    }

    #[tokio::test]
    async fn the_relay_serves_one_connection_with_the_token() {
        let (w, source) = stdin_queue();
        let relay = StdinRelay::start(IpAddr::from([127, 0, 0, 1]), source)
            .await
            .unwrap();
        let argv = relay.wrapper("/bin/tessera");
        let token = argv[6].clone();
        assert_eq!(argv[4], relay.addr().to_string());
        // A stranger gets nothing, and claims nothing.
        let mut stranger = TcpStream::connect(relay.addr()).await.unwrap();
        stranger.write_all(b"guess\n").await.unwrap();
        let mut got = Vec::new();
        stranger.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        let mut rank0 = TcpStream::connect(relay.addr()).await.unwrap();
        rank0
            .write_all(format!("{token}\n").as_bytes())
            .await
            .unwrap();
        w.write(b"hello\n").await.unwrap();
        w.write(b"world\n").await.unwrap();
        drop(w);
        let mut got = Vec::new();
        rank0.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello\nworld\n");
        // A second connection with the token is closed: the queue was taken.
        let mut again = TcpStream::connect(relay.addr()).await.unwrap();
        again
            .write_all(format!("{token}\n").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        again.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
    }
}
