//! The fetcher against a tiny HTTP server on 127.0.0.1:0 written here: plain files, a
//! `.tar.gz` built with the tar and flate2 crates, a chunked body, a redirect, a 404 and a
//! tar with a `../evil` entry. Then the real agent, with the fake master, fetching before a
//! task starts and failing a task whose URI is missing.

mod common;

use common::*;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tessera_agent::fetcher::{FetchError, Fetcher, FetcherConfig};
use tessera_agent::{AgentConfig, run};
use tessera_api::pb;
use tessera_types::parse::parse_resources;
use tessera_types::{Reason, TaskState, Uri};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const SCRIPT: &[u8] = b"#!/bin/sh\necho fetched-script-ran\n";

fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-{what}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A `.tar.gz` with `pkg/data.txt` and an executable `pkg/bin/tool`.
fn tar_gz() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add("pkg/data.txt", 0o644, b"payload\n");
    add("pkg/bin/tool", 0o755, SCRIPT);
    b.into_inner().unwrap().finish().unwrap()
}

/// A `.tar.gz` whose second entry is `../evil` (written into the header by hand: the tar
/// crate's own setters refuse such names).
fn evil_tar_gz() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "fine.txt", &b"ok\n"[..]).unwrap();
    let mut h = tar::Header::new_old();
    let name = b"../evil";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(5);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &b"evil\n"[..]).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn gz_bytes(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

enum Route {
    Body(Vec<u8>),
    Chunked(Vec<u8>),
    Redirect(String),
    /// Sends headers, then never the body.
    Stall,
}

struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

/// Serves `routes` (404 for anything else) on 127.0.0.1:0, one request per connection.
async fn serve(routes: HashMap<&'static str, Route>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let routes = Arc::new(routes);
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (routes, hits) = (routes.clone(), h.clone());
            tokio::spawn(async move {
                let mut sock = BufReader::new(sock);
                let mut line = String::new();
                sock.read_line(&mut line).await.unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                loop {
                    let mut l = String::new();
                    if sock.read_line(&mut l).await.unwrap() == 0 || l.trim().is_empty() {
                        break;
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let s = sock.get_mut();
                match routes.get(path.as_str()) {
                    Some(Route::Body(b)) => {
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len());
                        s.write_all(head.as_bytes()).await.unwrap();
                        s.write_all(b).await.unwrap();
                    }
                    Some(Route::Chunked(b)) => {
                        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                            .await
                            .unwrap();
                        for c in b.chunks(7) {
                            s.write_all(format!("{:x};ext=1\r\n", c.len()).as_bytes())
                                .await
                                .unwrap();
                            s.write_all(c).await.unwrap();
                            s.write_all(b"\r\n").await.unwrap();
                        }
                        s.write_all(b"0\r\n\r\n").await.unwrap();
                    }
                    Some(Route::Redirect(to)) => {
                        let head = format!(
                            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
                        );
                        s.write_all(head.as_bytes()).await.unwrap();
                    }
                    Some(Route::Stall) => {
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    None => {
                        s.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
                        )
                        .await
                        .unwrap();
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    Server { base, hits }
}

async fn standard_server() -> Server {
    let mut r = HashMap::new();
    r.insert("/hello.sh", Route::Body(SCRIPT.to_vec()));
    r.insert("/pkg.tar.gz", Route::Body(tar_gz()));
    r.insert("/evil.tar.gz", Route::Body(evil_tar_gz()));
    r.insert(
        "/chunked.txt",
        Route::Chunked(b"a chunked body, in pieces\n".to_vec()),
    );
    r.insert("/dl/latest", Route::Redirect("../pkg.tar.gz".into()));
    r.insert("/loop", Route::Redirect("/loop".into()));
    r.insert("/stall", Route::Stall);
    serve(r).await
}

fn http(server: &Server, path: &str) -> Uri {
    Uri::new(format!("{}{path}", server.base))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn downloads_extracts_and_sets_the_executable_bit() {
    let server = standard_server().await;
    let work = temp_dir("fetch-work");
    let sandbox = temp_dir("fetch-sandbox");
    let f = Fetcher::for_work_dir(&work);

    let mut script = http(&server, "/hello.sh");
    script.executable = true;
    // Through a relative redirect, named by output_file (the name decides extraction).
    let mut pkg = http(&server, "/dl/latest");
    pkg.output_file = Some("pkg.tgz".into());
    let chunked = http(&server, "/chunked.txt");
    f.fetch_all(&[script, pkg, chunked], &sandbox)
        .await
        .unwrap();

    assert_eq!(std::fs::read(sandbox.join("hello.sh")).unwrap(), SCRIPT);
    assert_eq!(mode(&sandbox.join("hello.sh")), 0o755);
    assert!(
        sandbox.join("pkg.tgz").exists(),
        "the archive stays, as in Mesos"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("pkg/data.txt")).unwrap(),
        "payload\n"
    );
    assert_eq!(mode(&sandbox.join("pkg/bin/tool")), 0o755);
    assert_eq!(
        std::fs::read_to_string(sandbox.join("chunked.txt")).unwrap(),
        "a chunked body, in pieces\n"
    );

    // extract=false keeps the archive as is.
    let other = temp_dir("fetch-sandbox");
    let mut raw = http(&server, "/pkg.tar.gz");
    raw.extract = false;
    f.fetch(&raw, &other).await.unwrap();
    assert!(!other.join("pkg").exists());
    assert_eq!(std::fs::read(other.join("pkg.tar.gz")).unwrap(), tar_gz());

    for d in [work, sandbox, other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[tokio::test]
async fn cached_uris_are_downloaded_once() {
    let server = standard_server().await;
    let work = temp_dir("fetch-work");
    let f = Fetcher::for_work_dir(&work);
    let mut u = http(&server, "/pkg.tar.gz");
    u.cache = true;

    let (a, b) = (temp_dir("fetch-sandbox"), temp_dir("fetch-sandbox"));
    f.fetch(&u, &a).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    f.fetch(&u, &b).await.unwrap();
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "second fetch is a cache hit"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("pkg/data.txt")).unwrap(),
        "payload\n"
    );
    assert_eq!(
        std::fs::read_dir(work.join("fetch-cache")).unwrap().count(),
        1
    );

    // Without `cache`, every fetch downloads.
    u.cache = false;
    f.fetch(&u, &b).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);

    // A cache capped below one entry keeps the newest and evicts the rest.
    let mut cfg = FetcherConfig::for_work_dir(&work);
    cfg.cache_max_bytes = 1;
    let small = Fetcher::new(cfg);
    let mut s = http(&server, "/hello.sh");
    s.cache = true;
    small.fetch(&s, &a).await.unwrap();
    assert_eq!(
        std::fs::read_dir(work.join("fetch-cache")).unwrap().count(),
        1,
        "the older tar.gz entry was evicted"
    );

    for d in [work, a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[tokio::test]
async fn archives_escaping_the_sandbox_are_refused() {
    let server = standard_server().await;
    let work = temp_dir("fetch-work");
    let outer = temp_dir("fetch-outer");
    let sandbox = outer.join("sandbox");
    std::fs::create_dir_all(&sandbox).unwrap();
    let f = Fetcher::for_work_dir(&work);

    let e = f
        .fetch(&http(&server, "/evil.tar.gz"), &sandbox)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FetchError::Escape { entry, .. } if entry == "../evil"),
        "{e}"
    );
    assert!(e.to_string().contains("/evil.tar.gz"), "names the URI: {e}");
    assert!(
        !outer.join("evil").exists(),
        "nothing written outside the sandbox"
    );

    // The same for zip files, fetched from a file:// URI.
    let src = temp_dir("fetch-src");
    std::fs::write(
        src.join("evil.zip"),
        zip_bytes(&[("ok.txt", b"ok"), ("../evil-zip", b"x")]),
    )
    .unwrap();
    let e = f
        .fetch(
            &Uri::new(format!("file://{}/evil.zip", src.display())),
            &sandbox,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Escape { .. }), "{e}");
    assert!(!outer.join("evil-zip").exists());

    for d in [work, outer, src] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[tokio::test]
async fn local_files_zip_gz_and_failures() {
    let server = standard_server().await;
    let work = temp_dir("fetch-work");
    let src = temp_dir("fetch-src");
    let sandbox = temp_dir("fetch-sandbox");
    std::fs::write(src.join("tool"), SCRIPT).unwrap();
    std::fs::write(src.join("a.zip"), zip_bytes(&[("z/in.txt", b"zipped")])).unwrap();
    std::fs::write(src.join("notes.txt.gz"), gz_bytes(b"gunzipped")).unwrap();
    let f = Fetcher::for_work_dir(&work);

    let mut tool = Uri::new(src.join("tool").display().to_string()); // a bare absolute path
    tool.executable = true;
    tool.output_file = Some("run".into());
    let zip = Uri::new(format!("file://{}/a.zip", src.display()));
    let gz = Uri::new(format!("file://{}/notes.txt.gz", src.display()));
    f.fetch_all(&[tool, zip, gz], &sandbox).await.unwrap();
    assert_eq!(mode(&sandbox.join("run")), 0o755);
    assert_eq!(std::fs::read(sandbox.join("z/in.txt")).unwrap(), b"zipped");
    assert_eq!(
        std::fs::read(sandbox.join("notes.txt")).unwrap(),
        b"gunzipped"
    );
    assert!(
        !sandbox.join("notes.txt.gz").exists(),
        "gunzip replaces the .gz"
    );

    let e = f
        .fetch(&http(&server, "/missing"), &sandbox)
        .await
        .unwrap_err();
    assert!(
        matches!(e, FetchError::HttpStatus { status: 404, .. }),
        "{e}"
    );
    assert!(!sandbox.join("missing").exists(), "no partial file left");
    let e = f
        .fetch(&Uri::new("https://127.0.0.1:1/x"), &sandbox)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("https is not supported by this agent yet"),
        "{e}"
    );
    let e = f
        .fetch(&http(&server, "/loop"), &sandbox)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("redirects"), "{e}");
    let e = f
        .fetch(&Uri::new("/definitely/not/here"), &sandbox)
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Io { .. }), "{e}");

    // Timeouts and size caps.
    let mut cfg = FetcherConfig::for_work_dir(&work);
    cfg.timeout = Duration::from_millis(300);
    cfg.max_bytes = 10;
    let strict = Fetcher::new(cfg);
    let e = strict
        .fetch(&http(&server, "/stall"), &sandbox)
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
    let e = strict
        .fetch(&http(&server, "/hello.sh"), &sandbox)
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::TooLarge { .. }), "{e}");
    let e = strict
        .fetch(&http(&server, "/chunked.txt"), &sandbox)
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::TooLarge { .. }), "{e}");

    for d in [work, src, sandbox] {
        let _ = std::fs::remove_dir_all(d);
    }
}

// ----------------------------------------------------------------------------------------
// Through the agent.

fn pb_uri(value: String, executable: bool) -> pb::Uri {
    pb::Uri {
        value,
        executable,
        extract: true,
        cache: false,
        output_file: None,
    }
}

async fn start_agent(addr: &str) -> (PathBuf, CancellationToken, tokio::task::JoinHandle<()>) {
    let work = temp_dir("fetch-agent");
    let mut c = AgentConfig::new(addr, &work, parse_resources("cpus:2;mem:1024").unwrap());
    c.reconnect_base = Duration::from_millis(20);
    c.reconnect_cap = Duration::from_millis(200);
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    let h = tokio::spawn(async move { run(c, s).await.unwrap() });
    (work, shutdown, h)
}

#[tokio::test]
async fn agent_fetches_before_the_task_starts_and_fails_tasks_whose_fetch_fails() {
    let server = standard_server().await;
    let mut m = fake_master().await;
    let (work, shutdown, handle) = start_agent(&m.addr).await;
    let (mut c, _) = m.accept_registered("agent-1").await;

    c.run_task_uris(
        "t-fetch",
        "./hello.sh > out && ./pkg/bin/tool >> out && cat pkg/data.txt >> out",
        vec![
            pb_uri(format!("{}/hello.sh", server.base), true),
            pb_uri(format!("{}/pkg.tar.gz", server.base), false),
        ],
    );
    let s = c.acked_status().await;
    assert_eq!(state(&s), TaskState::TaskStarting);
    let s = c.acked_status().await;
    assert_eq!(state(&s), TaskState::TaskRunning, "{s:?}");
    let s = c.acked_status().await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
    let runs = work.join("slaves/agent-1/frameworks/fw1/executors/t-fetch/runs");
    let run_dir = std::fs::read_dir(runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_to_string(run_dir.join("out")).unwrap(),
        "fetched-script-ran\nfetched-script-ran\npayload\n"
    );

    c.run_task_uris(
        "t-404",
        "touch should-not-run",
        vec![pb_uri(format!("{}/missing.tar.gz", server.base), false)],
    );
    let s = c.acked_status().await;
    assert_eq!(state(&s), TaskState::TaskStarting);
    let s = c.acked_status().await;
    assert_eq!(state(&s), TaskState::TaskFailed, "{s:?}");
    assert_eq!(s.reason, Some(Reason::ReasonContainerLaunchFailed.as_i32()));
    let msg = s.message.unwrap();
    assert!(msg.starts_with("Failed to fetch"), "{msg}");
    assert!(
        msg.contains("/missing.tar.gz") && msg.contains("404"),
        "{msg}"
    );

    // A URI the agent cannot accept at all ends the task TASK_ERROR, never a crash.
    c.run_task_uris("t-bad", "true", vec![pb_uri("ftp://h/x".into(), false)]);
    let s = c.acked_status().await;
    assert_eq!(state(&s), TaskState::TaskError, "{s:?}");
    assert!(s.message.unwrap().contains("uris[0]"));

    shutdown.cancel();
    timeout(WAIT, handle).await.expect("agent stops").unwrap();
    let _ = std::fs::remove_dir_all(work);
}
