//! `tessera mpi run`'s stdin, forwarded to rank 0 (the path is in `tessera_mpi::stdin`):
//! read on a thread of its own (a blocking read of a terminal must not keep the process
//! alive once the job ended) into a small bounded queue, and streamed to the MPI service
//! as one chunked `POST /mpi/v1/jobs/{id}/stdin?token=…`.

use std::io::Read;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// Bytes read from stdin at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Pieces read ahead of the stream (the reader stops while it is full).
const READ_AHEAD: usize = 4;
/// Longest answer read from the service.
const ANSWER_MAX: u64 = 64 * 1024;

/// Whether stdin can carry anything: not closed, not `/dev/null`. (With nothing to
/// forward, rank 0 keeps the agent's `/dev/null` and no relay is set up.)
pub fn stdin_has_input() -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: fstat writes into the zeroed struct we own; fd 0 may be closed (then -1).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(0, &mut st) } != 0 {
        return false;
    }
    let is_char = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    let null = std::fs::metadata("/dev/null").map(|m| m.rdev()).ok();
    !(is_char && null == Some(st.st_rdev))
}

/// Reads stdin to its end on a detached thread; the queue ends at EOF (or a read error).
pub fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    rx
}

/// Why the stream ended without the service taking all of stdin.
#[derive(Debug)]
pub struct NotForwarded {
    /// The service's `reason` (`ended`, `not_forwarded`, `wrong_token`, …), when it gave one.
    pub reason: Option<String>,
    pub message: String,
}

/// Streams `input` to job `id`'s stdin on the service at `master`, then its end.
pub async fn stream(
    master: &str,
    id: u64,
    token: &str,
    input: mpsc::Receiver<Vec<u8>>,
) -> Result<(), NotForwarded> {
    let io = |e: std::io::Error| NotForwarded {
        reason: None,
        message: format!("cannot reach the MPI service at {master}: {e}"),
    };
    let stream = TcpStream::connect(master).await.map_err(io)?;
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let head = format!(
        "POST /mpi/v1/jobs/{id}/stdin?token={token} HTTP/1.1\r\nHost: {master}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.map_err(io)?;
    // The service may answer before the body ends (a refusal, or the job ended): then
    // stop sending.
    let mut answer = std::pin::pin!(read_answer(read));
    let answered = tokio::select! {
        a = &mut answer => Some(a),
        _ = send_body(&mut write, input) => None,
    };
    let (status, body) = match answered {
        Some(a) => a,
        None => answer.await,
    };
    if status == 200 {
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    Err(NotForwarded {
        reason: v["reason"].as_str().map(str::to_string),
        message: v["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the MPI service answered {status}: {body}")),
    })
}

/// Sends every piece as an HTTP chunk, then the last (empty) chunk.
async fn send_body(write: &mut OwnedWriteHalf, mut input: mpsc::Receiver<Vec<u8>>) {
    while let Some(piece) = input.recv().await {
        if piece.is_empty() {
            continue;
        }
        let mut frame = format!("{:x}\r\n", piece.len()).into_bytes();
        frame.extend_from_slice(&piece);
        frame.extend_from_slice(b"\r\n");
        if write.write_all(&frame).await.is_err() {
            // The service closed: its answer says why.
            std::future::pending::<()>().await;
        }
    }
    if write.write_all(b"0\r\n\r\n").await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The answer's status and body (the connection closes after it).
async fn read_answer(read: OwnedReadHalf) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = read.take(ANSWER_MAX).read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
