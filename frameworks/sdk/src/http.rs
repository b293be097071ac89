//! A small HTTP/1.1 client over a tokio `TcpStream`: one request per connection
//! (`Connection: close`), `Content-Length` request bodies, chunked / `Content-Length` /
//! read-to-EOF response bodies, streamed incrementally for the event stream. No TLS.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

const MAX_HEADER: usize = 64 * 1024;

pub(crate) struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    addr: String,
    conn: TcpStream,
    buf: Vec<u8>,
    body: BodyKind,
}

enum BodyKind {
    Chunked { done: bool },
    Length(usize),
    ToEof { done: bool },
}

/// POSTs `body` to `http://addr/path` and returns once the response headers are in.
pub(crate) async fn post(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response> {
    request("POST", addr, path, headers, body).await
}

/// Largest body [`get`] reads.
const MAX_GET_BODY: usize = 16 << 20;

/// GETs `http://addr/path` and returns the status and the whole body (at most 16 MiB).
/// For frameworks that read the tooling endpoints (`/master/slaves`, an agent's
/// `/files/read`).
pub async fn get(addr: &str, path: &str) -> Result<(u16, Vec<u8>)> {
    call("GET", addr, path, None).await
}

/// One request with an optional JSON body; returns the status and the whole body (at most
/// 16 MiB). What CLIs use to talk to REST endpoints.
pub async fn call(
    method: &str,
    addr: &str,
    path: &str,
    json_body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>)> {
    let mut headers = vec![("Accept", "application/json")];
    if json_body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let mut resp = request(method, addr, path, &headers, json_body.unwrap_or(&[])).await?;
    let mut body = Vec::new();
    while let Some(c) = resp.next_chunk().await? {
        body.extend(c);
        if body.len() > MAX_GET_BODY {
            return Err(bad(addr, "response body larger than 16 MiB"));
        }
    }
    Ok((resp.status, body))
}

async fn request(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response> {
    let io = |source| Error::Io {
        addr: addr.to_string(),
        source,
    };
    let mut conn = TcpStream::connect(addr).await.map_err(io)?;
    conn.set_nodelay(true).map_err(io)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    conn.write_all(&bytes).await.map_err(io)?;
    let mut buf = Vec::new();
    let header_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEADER {
            return Err(bad(addr, "response headers too long"));
        }
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    buf.drain(..header_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(addr, format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let body = if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        BodyKind::Chunked { done: false }
    } else if let Some(len) = get("content-length") {
        BodyKind::Length(len.parse().map_err(|_| bad(addr, "bad Content-Length"))?)
    } else {
        BodyKind::ToEof { done: false }
    };
    Ok(Response {
        status,
        headers,
        addr: addr.to_string(),
        conn,
        buf,
        body,
    })
}

fn bad(addr: &str, reason: impl Into<String>) -> Error {
    Error::Http {
        addr: addr.to_string(),
        reason: reason.into(),
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    async fn fill(&mut self) -> Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self
            .conn
            .read(&mut chunk)
            .await
            .map_err(|source| Error::Io {
                addr: self.addr.clone(),
                source,
            })?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next piece of the body, `None` at its end. Cancel-safe between pieces only in
    /// the sense that bytes already read stay buffered.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        match self.body {
            BodyKind::Length(0)
            | BodyKind::Chunked { done: true }
            | BodyKind::ToEof { done: true } => Ok(None),
            BodyKind::Length(rem) => {
                if self.buf.is_empty() && self.fill().await? == 0 {
                    return Err(bad(&self.addr, "body ended early"));
                }
                let n = rem.min(self.buf.len());
                self.body = BodyKind::Length(rem - n);
                Ok(Some(self.buf.drain(..n).collect()))
            }
            BodyKind::ToEof { .. } => {
                if self.buf.is_empty() && self.fill().await? == 0 {
                    self.body = BodyKind::ToEof { done: true };
                    return Ok(None);
                }
                Ok(Some(std::mem::take(&mut self.buf)))
            }
            BodyKind::Chunked { .. } => loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let line = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                    let size_txt = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(size_txt, 16)
                        .map_err(|_| bad(&self.addr, format!("bad chunk size {line:?}")))?;
                    if size == 0 {
                        self.body = BodyKind::Chunked { done: true };
                        return Ok(None);
                    }
                    if self.buf.len() >= p + 2 + size + 2 {
                        let data = self.buf[p + 2..p + 2 + size].to_vec();
                        self.buf.drain(..p + 2 + size + 2);
                        return Ok(Some(data));
                    }
                } else if self.buf.len() > MAX_HEADER {
                    return Err(bad(&self.addr, "chunk size line too long"));
                }
                if self.fill().await? == 0 {
                    return Err(Error::Io {
                        addr: self.addr.clone(),
                        source: std::io::ErrorKind::UnexpectedEof.into(),
                    });
                }
            },
        }
    }

    /// The whole (remaining) body, lossily as text (for error messages).
    pub async fn text(mut self) -> String {
        let mut out = Vec::new();
        while let Ok(Some(c)) = self.next_chunk().await {
            out.extend(c);
            if out.len() > 64 * 1024 {
                break;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
