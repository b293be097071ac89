//! A minimal HTTP/1.1 client for tests: one request per connection, `Content-Length`
//! bodies out, chunked or sized bodies in, and a streaming reader for RecordIO responses.

#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    length: Option<usize>,
    buf: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads the whole body (for non-streaming responses).
    pub async fn body(self) -> String {
        String::from_utf8_lossy(&self.bytes().await).into_owned()
    }

    /// Reads the whole body as raw bytes (protobuf responses).
    pub async fn bytes(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.chunked {
            while let Some(c) = self.chunk().await {
                out.extend(c);
            }
        } else if let Some(n) = self.length {
            out.resize(n, 0);
            self.reader.read_exact(&mut out).await.unwrap();
        } else {
            self.reader.read_to_end(&mut out).await.unwrap();
        }
        out
    }

    /// Next HTTP chunk; `None` at the end of the body.
    pub async fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let n = usize::from_str_radix(line.trim(), 16).ok()?;
        let mut data = vec![0; n + 2];
        self.reader.read_exact(&mut data).await.ok()?;
        data.truncate(n);
        if n == 0 { None } else { Some(data) }
    }

    /// Next RecordIO record of a streaming body, waiting at most `wait`.
    pub async fn record(&mut self, wait: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(wait, async {
            loop {
                if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                    let len: usize = std::str::from_utf8(&self.buf[..nl]).ok()?.parse().ok()?;
                    if self.buf.len() >= nl + 1 + len {
                        let rec = self.buf[nl + 1..nl + 1 + len].to_vec();
                        self.buf.drain(..nl + 1 + len);
                        return Some(rec);
                    }
                }
                let c = self.chunk().await?;
                self.buf.extend(c);
            }
        })
        .await
        .ok()
        .flatten()
    }
}

/// Sends one request and reads the status line and headers.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        reader.read_line(&mut l).await.unwrap();
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let chunked = find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = find("content-length").and_then(|v| v.parse().ok());
    Response {
        status,
        headers,
        reader,
        chunked,
        length,
        buf: Vec::new(),
    }
}

pub async fn post_json(addr: &str, body: &str, extra: &[(&str, &str)]) -> Response {
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    h.extend_from_slice(extra);
    request(addr, "POST", "/api/v1/scheduler", &h, body.as_bytes()).await
}
