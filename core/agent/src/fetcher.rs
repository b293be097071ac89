//! The fetcher: puts a task's `CommandInfo.uris` into its sandbox before the command starts,
//! as the Mesos fetcher does.
//!
//! For each URI: `file://PATH` or an absolute `PATH` is copied, `http://` is downloaded with a
//! small HTTP/1.1 client (redirects, `Content-Length` or chunked bodies, a timeout and a size
//! cap); `https://` is refused (no TLS stack in the agent yet). The file is named by
//! `output_file` or the URI's last path segment, made executable when asked, and archives
//! (`.tar`, `.tar.gz`, `.tgz`, `.zip`, `.gz`) are extracted into the sandbox when `extract` is
//! set, refusing entries that would land outside it. With `cache`, the fetched bytes are kept
//! in `<work_dir>/fetch-cache` under a hash of the URI and reused; the cache is capped in size
//! and evicts least recently used entries.
//!
//! Pure decisions ([`target_name`], [`archive_kind`], [`check_entry_path`], [`parse_http_url`])
//! are unit-tested; the I/O is tested against a local HTTP server in `tests/fetcher.rs`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use tessera_types::task::{Uri, is_plain_file_name};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Name of the cache directory under the agent's work directory.
pub const CACHE_DIR: &str = "fetch-cache";
/// Default cap on the cache's total size (Mesos' `--fetcher_cache_size` default).
pub const DEFAULT_CACHE_BYTES: u64 = 2 << 30;
/// Default cap on one download and on the bytes one archive may extract to.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// Default bound on fetching one URI (connect, redirects and body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Most redirects followed for one URI.
pub const MAX_REDIRECTS: usize = 5;
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A fetch that failed; every variant names the URI.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("'{uri}': {reason}")]
    Invalid { uri: String, reason: String },
    #[error("'{uri}': https is not supported by this agent yet")]
    HttpsUnsupported { uri: String },
    #[error("'{uri}': {what}: {source}")]
    Io {
        uri: String,
        what: String,
        source: io::Error,
    },
    #[error("'{uri}': HTTP {status} from {url}")]
    HttpStatus {
        uri: String,
        url: String,
        status: u16,
    },
    #[error("'{uri}': bad HTTP response: {reason}")]
    Http { uri: String, reason: String },
    #[error("'{uri}': timed out after {secs}s")]
    Timeout { uri: String, secs: u64 },
    #[error("'{uri}': larger than the {limit}-byte limit")]
    TooLarge { uri: String, limit: u64 },
    #[error("'{uri}': archive entry '{entry}' would escape the sandbox")]
    Escape { uri: String, entry: String },
    #[error("'{uri}': extracting: {reason}")]
    Extract { uri: String, reason: String },
}

impl FetchError {
    fn io(uri: &str, what: impl Into<String>) -> impl FnOnce(io::Error) -> FetchError {
        let (uri, what) = (uri.to_string(), what.into());
        move |source| FetchError::Io { uri, what, source }
    }
}

/// Where and how much the fetcher may fetch.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    pub max_bytes: u64,
    pub timeout: Duration,
}

impl FetcherConfig {
    /// The defaults, with the cache under `work_dir`.
    pub fn for_work_dir(work_dir: &Path) -> Self {
        FetcherConfig {
            cache_dir: work_dir.join(CACHE_DIR),
            cache_max_bytes: DEFAULT_CACHE_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Fetches a task's URIs into its sandbox. Cheap to make; the cache lives on disk, and
/// concurrent fetchers share it safely (entries appear by atomic rename).
#[derive(Debug, Clone)]
pub struct Fetcher {
    config: FetcherConfig,
}

/// The archive formats the fetcher extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    Zip,
    /// A single gzip-compressed file: decompressed to the name without `.gz`.
    Gz,
}

/// The archive kind `name` denotes by its extension, if any.
pub fn archive_kind(name: &str) -> Option<ArchiveKind> {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
        Some(ArchiveKind::TarGz)
    } else if n.ends_with(".tar") {
        Some(ArchiveKind::Tar)
    } else if n.ends_with(".zip") {
        Some(ArchiveKind::Zip)
    } else if n.ends_with(".gz") && n.len() > 3 {
        Some(ArchiveKind::Gz)
    } else {
        None
    }
}

/// The file name a URI is fetched to: `output_file`, else the last path segment of the
/// URI (without query or fragment for http). Never contains `/` and is never `.`/`..`.
pub fn target_name(uri: &Uri) -> Result<String, FetchError> {
    let invalid = |reason: String| FetchError::Invalid {
        uri: uri.value.clone(),
        reason,
    };
    if let Some(o) = &uri.output_file {
        return if is_plain_file_name(o) {
            Ok(o.clone())
        } else {
            Err(invalid(format!(
                "output_file '{o}' must be a plain file name"
            )))
        };
    }
    let v = uri.value.as_str();
    let path = if has_scheme(v, "http://") || has_scheme(v, "https://") {
        let rest = &v[v.find("://").map_or(0, |i| i + 3)..];
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let rest = &rest[..end];
        rest.find('/').map_or("", |i| &rest[i..])
    } else {
        v
    };
    let name = path.rsplit('/').next().unwrap_or("");
    if is_plain_file_name(name) {
        Ok(name.to_string())
    } else {
        Err(invalid(
            "cannot derive a file name from the URI; give output_file".into(),
        ))
    }
}

/// Checks that an archive entry path stays inside the directory it is extracted into:
/// relative, no `..`, not empty.
pub fn check_entry_path(entry: &Path) -> Result<(), String> {
    let mut depth = 0usize;
    for c in entry.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(entry.display().to_string());
            }
        }
    }
    if depth == 0 {
        return Err(entry.display().to_string());
    }
    Ok(())
}

/// Checks that a link in an archive at `entry` pointing to `target` stays inside the
/// extraction directory (relative targets only, never climbing above the root).
pub fn check_link_target(entry: &Path, target: &Path) -> Result<(), String> {
    let bad = || format!("{} -> {}", entry.display(), target.display());
    let mut depth = entry.components().count().saturating_sub(1) as isize;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(bad());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    Ok(())
}

/// An `http://` URL split for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host` or `host:port`, as sent in `Host:`.
    pub authority: String,
    /// What to connect to (`host:port`, IPv6 in brackets).
    pub connect: String,
    /// Path and query, starting with `/`.
    pub target: String,
}

/// Parses `http://host[:port][/path][?query][#fragment]`.
pub fn parse_http_url(url: &str) -> Result<HttpUrl, String> {
    if !has_scheme(url, "http://") {
        return Err(format!("'{url}' is not an http:// URL"));
    }
    let rest = &url[7..];
    let rest = &rest[..rest.find('#').unwrap_or(rest.len())];
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    if authority.contains('@') {
        return Err(format!("'{url}': credentials in URLs are not supported"));
    }
    let has_port = match authority.rfind(']') {
        Some(b) => authority[b..].contains(':'),
        None => authority.contains(':'),
    };
    let connect = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let target = if target.is_empty() {
        "/".to_string()
    } else if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_string()
    };
    Ok(HttpUrl {
        authority: authority.to_string(),
        connect,
        target,
    })
}

/// Resolves a `Location` header against the URL that sent it.
pub fn resolve_location(base: &str, location: &str) -> String {
    if has_scheme(location, "http://") || has_scheme(location, "https://") {
        return location.to_string();
    }
    let Ok(b) = parse_http_url(base) else {
        return location.to_string();
    };
    if let Some(rest) = location.strip_prefix("//") {
        return format!("http://{rest}");
    }
    let joined = if location.starts_with('/') {
        location.to_string()
    } else {
        let path = &b.target[..b.target.find('?').unwrap_or(b.target.len())];
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{location}")
    };
    format!("http://{}{}", b.authority, remove_dot_segments(&joined))
}

/// RFC 3986 dot-segment removal on an absolute path (the query, if any, is kept as is).
fn remove_dot_segments(target: &str) -> String {
    let (path, query) = target.split_at(target.find('?').unwrap_or(target.len()));
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}{query}", out.join("/"))
}

/// Reads one line into `line` (cleared first); 0 at end of stream.
async fn read_line(
    s: &mut BufReader<tokio::net::TcpStream>,
    line: &mut String,
) -> io::Result<usize> {
    line.clear();
    s.read_line(line).await
}

fn has_scheme(v: &str, scheme: &str) -> bool {
    v.len() >= scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme)
}

/// A stable 64-bit FNV-1a hash, hex: the cache key of a URI.
fn cache_key(uri: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uri.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Fetcher {
    pub fn new(config: FetcherConfig) -> Self {
        Fetcher { config }
    }

    /// The default fetcher of an agent with this work directory.
    pub fn for_work_dir(work_dir: &Path) -> Self {
        Fetcher::new(FetcherConfig::for_work_dir(work_dir))
    }

    pub fn config(&self) -> &FetcherConfig {
        &self.config
    }

    /// Fetches every URI into `sandbox`, in order; stops at the first failure.
    pub async fn fetch_all(&self, uris: &[Uri], sandbox: &Path) -> Result<(), FetchError> {
        for uri in uris {
            self.fetch(uri, sandbox).await?;
        }
        Ok(())
    }

    /// Fetches one URI into `sandbox`. Returns the path of the fetched file (before
    /// extraction; a `.gz` that was decompressed is gone).
    pub async fn fetch(&self, uri: &Uri, sandbox: &Path) -> Result<PathBuf, FetchError> {
        let u = uri.value.as_str();
        if let Err(e) = uri.validate("uri") {
            return Err(FetchError::Invalid {
                uri: u.into(),
                reason: e.to_string(),
            });
        }
        if has_scheme(u, "https://") {
            return Err(FetchError::HttpsUnsupported { uri: u.into() });
        }
        let name = target_name(uri)?;
        let dest = sandbox.join(&name);
        let secs = self.config.timeout.as_secs();
        let fetched = tokio::time::timeout(self.config.timeout, self.fetch_bytes(uri, &dest))
            .await
            .map_err(|_| FetchError::Timeout {
                uri: u.into(),
                secs,
            })?;
        if let Err(e) = fetched {
            let _ = tokio::fs::remove_file(&dest).await;
            return Err(e);
        }
        if uri.executable {
            tokio::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                .await
                .map_err(FetchError::io(u, "setting the executable bit"))?;
        }
        if uri.extract
            && let Some(kind) = archive_kind(&name)
        {
            let (uri_s, archive, dir, limit) = (
                u.to_string(),
                dest.clone(),
                sandbox.to_path_buf(),
                self.config.max_bytes,
            );
            tokio::task::spawn_blocking(move || extract(&uri_s, kind, &archive, &dir, limit))
                .await
                .map_err(|e| FetchError::Extract {
                    uri: u.into(),
                    reason: e.to_string(),
                })??;
        }
        tracing::info!(uri = u, dest = %dest.display(), "fetched");
        Ok(dest)
    }

    /// Puts the URI's bytes at `dest`, through the cache when asked.
    async fn fetch_bytes(&self, uri: &Uri, dest: &Path) -> Result<(), FetchError> {
        let u = uri.value.as_str();
        if !uri.cache {
            return self.fetch_source(u, dest).await;
        }
        let dir = &self.config.cache_dir;
        let entry = dir.join(cache_key(u));
        match tokio::fs::copy(&entry, dest).await {
            Ok(_) => {
                touch(&entry);
                tracing::debug!(uri = u, "fetch cache hit");
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FetchError::io(u, "copying from the fetch cache")(e)),
        }
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(FetchError::io(u, format!("creating {}", dir.display())))?;
        let tmp = dir.join(format!(
            "{}.tmp-{}",
            cache_key(u),
            uuid::Uuid::new_v4().simple()
        ));
        if let Err(e) = self.fetch_source(u, &tmp).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, &entry)
            .await
            .map_err(FetchError::io(u, "adding to the fetch cache"))?;
        tokio::fs::copy(&entry, dest)
            .await
            .map_err(FetchError::io(u, "copying from the fetch cache"))?;
        let (d, cap, keep) = (dir.clone(), self.config.cache_max_bytes, entry.clone());
        let _ = tokio::task::spawn_blocking(move || evict(&d, cap, &keep)).await;
        Ok(())
    }

    /// Copies (file) or downloads (http) `u` to `dest`.
    async fn fetch_source(&self, u: &str, dest: &Path) -> Result<(), FetchError> {
        if has_scheme(u, "http://") {
            return self.download(u, dest).await;
        }
        let path = if has_scheme(u, "file://") { &u[7..] } else { u };
        if !path.starts_with('/') {
            return Err(FetchError::Invalid {
                uri: u.into(),
                reason: "file URIs must name an absolute path".into(),
            });
        }
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(FetchError::io(u, format!("reading {path}")))?;
        if !meta.is_file() {
            return Err(FetchError::Invalid {
                uri: u.into(),
                reason: format!("{path} is not a regular file"),
            });
        }
        if meta.len() > self.config.max_bytes {
            return Err(FetchError::TooLarge {
                uri: u.into(),
                limit: self.config.max_bytes,
            });
        }
        tokio::fs::copy(path, dest)
            .await
            .map_err(FetchError::io(u, format!("copying {path}")))?;
        Ok(())
    }

    /// HTTP/1.1 GET of `u` into `dest`, following up to [`MAX_REDIRECTS`] redirects.
    async fn download(&self, u: &str, dest: &Path) -> Result<(), FetchError> {
        let mut url = u.to_string();
        for _ in 0..=MAX_REDIRECTS {
            if has_scheme(&url, "https://") {
                return Err(FetchError::HttpsUnsupported { uri: u.into() });
            }
            match self.get_once(u, &url, dest).await? {
                None => return Ok(()),
                Some(location) => url = resolve_location(&url, &location),
            }
        }
        Err(FetchError::Http {
            uri: u.into(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// One GET. `Ok(Some(location))` for a redirect, `Ok(None)` once the body is at `dest`.
    async fn get_once(
        &self,
        u: &str,
        url: &str,
        dest: &Path,
    ) -> Result<Option<String>, FetchError> {
        let http = |reason: String| FetchError::Http {
            uri: u.into(),
            reason,
        };
        let parsed = parse_http_url(url).map_err(|reason| FetchError::Invalid {
            uri: u.into(),
            reason,
        })?;
        let stream = tokio::net::TcpStream::connect(&parsed.connect)
            .await
            .map_err(FetchError::io(
                u,
                format!("connecting to {}", parsed.connect),
            ))?;
        let mut stream = BufReader::new(stream);
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tessera-fetcher\r\nAccept: */*\r\n\
             Accept-Encoding: identity\r\nConnection: close\r\n\r\n",
            parsed.target, parsed.authority
        );
        let net = FetchError::io(u, format!("talking to {}", parsed.connect));
        if let Err(e) = stream.get_mut().write_all(request.as_bytes()).await {
            return Err(net(e));
        }

        // Status line and headers.
        let mut header_bytes = 0usize;
        let mut line = String::new();
        let n = read_line(&mut stream, &mut line)
            .await
            .map_err(FetchError::io(u, "reading the response"))?;
        header_bytes += n;
        let mut parts = line.split_whitespace();
        let status: u16 = match (parts.next(), parts.next()) {
            (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code
                .parse()
                .map_err(|_| http(format!("status line '{}'", line.trim_end())))?,
            _ => return Err(http(format!("status line '{}'", line.trim_end()))),
        };
        let (mut length, mut chunked, mut location) = (None::<u64>, false, None::<String>);
        loop {
            let n = read_line(&mut stream, &mut line)
                .await
                .map_err(FetchError::io(u, "reading the response headers"))?;
            header_bytes += n;
            if n == 0 {
                return Err(http("connection closed in the headers".into()));
            }
            if header_bytes > MAX_HEADER_BYTES {
                return Err(http("headers too large".into()));
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                return Err(http(format!("header line '{l}'")));
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(
                    v.parse()
                        .map_err(|_| http(format!("Content-Length '{v}'")))?,
                );
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("location") {
                location = Some(v.to_string());
            }
        }
        if matches!(status, 301 | 302 | 303 | 307 | 308) {
            return location
                .map(Some)
                .ok_or_else(|| http(format!("redirect {status} without Location")));
        }
        if status != 200 {
            return Err(FetchError::HttpStatus {
                uri: u.into(),
                url: url.into(),
                status,
            });
        }
        let limit = self.config.max_bytes;
        let too_large = || FetchError::TooLarge {
            uri: u.into(),
            limit,
        };
        if length.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut out = tokio::fs::File::create(dest)
            .await
            .map_err(FetchError::io(u, format!("creating {}", dest.display())))?;
        let werr = FetchError::io(u, format!("writing {}", dest.display()));
        let rerr = |e: io::Error| FetchError::Io {
            uri: u.into(),
            what: "reading the body".into(),
            source: e,
        };
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        if chunked {
            loop {
                let n = read_line(&mut stream, &mut line).await.map_err(rerr)?;
                if n == 0 {
                    return Err(http("connection closed in a chunked body".into()));
                }
                let size_hex = line.trim().split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size_hex, 16)
                    .map_err(|_| http(format!("chunk size '{size_hex}'")))?;
                if size == 0 {
                    break; // Trailers are not needed; the connection closes.
                }
                total += size;
                if total > limit {
                    return Err(too_large());
                }
                let mut left = size;
                while left > 0 {
                    let want = left.min(buf.len() as u64) as usize;
                    let n = stream.read(&mut buf[..want]).await.map_err(rerr)?;
                    if n == 0 {
                        return Err(http("connection closed in a chunk".into()));
                    }
                    if let Err(e) = out.write_all(&buf[..n]).await {
                        return Err(werr(e));
                    }
                    left -= n as u64;
                }
                read_line(&mut stream, &mut line).await.map_err(rerr)?; // CRLF after a chunk
            }
        } else {
            loop {
                let want = match length {
                    Some(len) if total >= len => break,
                    Some(len) => (len - total).min(buf.len() as u64) as usize,
                    None => buf.len(),
                };
                let n = stream.read(&mut buf[..want]).await.map_err(rerr)?;
                if n == 0 {
                    if let Some(len) = length {
                        return Err(http(format!("body ended after {total} of {len} bytes")));
                    }
                    break;
                }
                total += n as u64;
                if total > limit {
                    return Err(too_large());
                }
                if let Err(e) = out.write_all(&buf[..n]).await {
                    return Err(werr(e));
                }
            }
        }
        out.flush()
            .await
            .map_err(FetchError::io(u, format!("writing {}", dest.display())))?;
        Ok(None)
    }
}

/// Marks a cache entry as just used (its mtime orders the LRU eviction).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Removes the least recently used entries until the cache fits `cap` (never `keep`).
fn evict(dir: &Path, cap: u64, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().contains(".tmp-"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| {
                (
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    m.len(),
                    e.path(),
                )
            })
        })
        .collect();
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    entries.sort();
    for (_, len, path) in entries {
        if total <= cap {
            break;
        }
        if path == keep {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            tracing::debug!(path = %path.display(), "evicted from the fetch cache");
            total -= len;
        }
    }
}

/// Extracts `archive` into `dir`. Blocking.
fn extract(
    uri: &str,
    kind: ArchiveKind,
    archive: &Path,
    dir: &Path,
    limit: u64,
) -> Result<(), FetchError> {
    let file = std::fs::File::open(archive).map_err(FetchError::io(
        uri,
        format!("opening {}", archive.display()),
    ))?;
    let fail = |reason: String| FetchError::Extract {
        uri: uri.into(),
        reason,
    };
    match kind {
        ArchiveKind::Tar => extract_tar(uri, tar::Archive::new(file), dir, limit),
        ArchiveKind::TarGz => extract_tar(
            uri,
            tar::Archive::new(flate2::read::MultiGzDecoder::new(file)),
            dir,
            limit,
        ),
        ArchiveKind::Gz => {
            let name = archive.file_name().unwrap_or_default().to_string_lossy();
            let out_name = &name[..name.len() - 3];
            let out = dir.join(out_name);
            let mut w = std::fs::File::create(&out)
                .map_err(FetchError::io(uri, format!("creating {}", out.display())))?;
            let mut r = io::Read::take(
                flate2::read::MultiGzDecoder::new(file),
                limit.saturating_add(1),
            );
            let n = io::copy(&mut r, &mut w).map_err(|e| fail(e.to_string()))?;
            if n > limit {
                let _ = std::fs::remove_file(&out);
                return Err(FetchError::TooLarge {
                    uri: uri.into(),
                    limit,
                });
            }
            // Like `gunzip`, the compressed file is replaced by its content.
            let _ = std::fs::remove_file(archive);
            Ok(())
        }
        ArchiveKind::Zip => extract_zip(uri, file, dir, limit),
    }
}

fn extract_tar<R: io::Read>(
    uri: &str,
    mut ar: tar::Archive<R>,
    dir: &Path,
    limit: u64,
) -> Result<(), FetchError> {
    let fail = |reason: String| FetchError::Extract {
        uri: uri.into(),
        reason,
    };
    let escape = |entry: String| FetchError::Escape {
        uri: uri.into(),
        entry,
    };
    ar.set_overwrite(true);
    let mut total = 0u64;
    for entry in ar.entries().map_err(|e| fail(e.to_string()))? {
        let mut entry = entry.map_err(|e| fail(e.to_string()))?;
        let path = entry.path().map_err(|e| fail(e.to_string()))?.into_owned();
        check_entry_path(&path).map_err(escape)?;
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Continuous | T::GNUSparse | T::Directory => {}
            T::Symlink | T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| fail(e.to_string()))?
                    .ok_or_else(|| fail(format!("link {} without a target", path.display())))?;
                if entry.header().entry_type() == T::Link {
                    check_entry_path(&target).map_err(escape)?;
                } else {
                    check_link_target(&path, &target).map_err(escape)?;
                }
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            other => {
                return Err(fail(format!(
                    "entry {} has unsupported type {other:?}",
                    path.display()
                )));
            }
        }
        total = total.saturating_add(entry.header().size().unwrap_or(0));
        if total > limit {
            return Err(FetchError::TooLarge {
                uri: uri.into(),
                limit,
            });
        }
        // `unpack_in` re-checks the path and refuses to write through symlinks that leave
        // `dir`; it returns false for entries it skipped.
        let ok = entry
            .unpack_in(dir)
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        if !ok {
            return Err(escape(path.display().to_string()));
        }
    }
    Ok(())
}

fn extract_zip(uri: &str, file: std::fs::File, dir: &Path, limit: u64) -> Result<(), FetchError> {
    let fail = |reason: String| FetchError::Extract {
        uri: uri.into(),
        reason,
    };
    let mut zip = zip::ZipArchive::new(file).map_err(|e| fail(e.to_string()))?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| fail(e.to_string()))?;
        let raw = f
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| format!("entry {i}"));
        let rel = f
            .enclosed_name()
            .filter(|p| check_entry_path(p).is_ok())
            .ok_or_else(|| FetchError::Escape {
                uri: uri.into(),
                entry: raw.clone(),
            })?;
        if f.is_symlink() {
            return Err(fail(format!(
                "entry {raw}: symlinks in zip files are not supported"
            )));
        }
        let out = dir.join(&rel);
        if f.is_dir() {
            std::fs::create_dir_all(&out)
                .map_err(FetchError::io(uri, format!("creating {}", out.display())))?;
            continue;
        }
        total = total.saturating_add(f.size());
        if total > limit {
            return Err(FetchError::TooLarge {
                uri: uri.into(),
                limit,
            });
        }
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(FetchError::io(
                uri,
                format!("creating {}", parent.display()),
            ))?;
        }
        let mut w = std::fs::File::create(&out)
            .map_err(FetchError::io(uri, format!("creating {}", out.display())))?;
        io::copy(&mut f, &mut w).map_err(|e| fail(format!("{raw}: {e}")))?;
        if let Some(mode) = f.unix_mode() {
            let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode & 0o777));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(v: &str) -> Uri {
        Uri::new(v)
    }

    #[test]
    fn names_come_from_output_file_or_the_last_segment() {
        assert_eq!(target_name(&uri("/opt/a/run.sh")).unwrap(), "run.sh");
        assert_eq!(target_name(&uri("file:///opt/x.tgz")).unwrap(), "x.tgz");
        assert_eq!(
            target_name(&uri("http://h:80/d/pkg.tar.gz?sig=1#frag")).unwrap(),
            "pkg.tar.gz"
        );
        let mut u = uri("http://h/d/pkg");
        u.output_file = Some("renamed.zip".into());
        assert_eq!(target_name(&u).unwrap(), "renamed.zip");
        for bad in ["http://h", "http://h/", "/opt/dir/", "http://h/a/.."] {
            assert!(target_name(&uri(bad)).is_err(), "{bad}");
        }
        u.output_file = Some("../x".into());
        assert!(target_name(&u).is_err());
    }

    #[test]
    fn archive_kinds_by_extension() {
        assert_eq!(archive_kind("a.tar"), Some(ArchiveKind::Tar));
        assert_eq!(archive_kind("a.tar.gz"), Some(ArchiveKind::TarGz));
        assert_eq!(archive_kind("A.TGZ"), Some(ArchiveKind::TarGz));
        assert_eq!(archive_kind("a.zip"), Some(ArchiveKind::Zip));
        assert_eq!(archive_kind("a.txt.gz"), Some(ArchiveKind::Gz));
        assert_eq!(archive_kind("a.sh"), None);
        assert_eq!(archive_kind("tar"), None);
        assert_eq!(archive_kind(".gz"), None);
    }

    #[test]
    fn entry_paths_must_stay_inside() {
        for ok in ["a", "a/b/c", "./a", "a/./b"] {
            assert!(check_entry_path(Path::new(ok)).is_ok(), "{ok}");
        }
        for bad in ["/etc/passwd", "../evil", "a/../../b", "a/..", "", "."] {
            assert!(check_entry_path(Path::new(bad)).is_err(), "{bad}");
        }
        assert!(check_link_target(Path::new("d/l"), Path::new("../f")).is_ok());
        assert!(check_link_target(Path::new("d/l"), Path::new("x/y")).is_ok());
        assert!(check_link_target(Path::new("d/l"), Path::new("../../f")).is_err());
        assert!(check_link_target(Path::new("l"), Path::new("/etc")).is_err());
    }

    #[test]
    fn http_urls() {
        let u = parse_http_url("http://127.0.0.1:8080/a/b?x=1#f").unwrap();
        assert_eq!(u.connect, "127.0.0.1:8080");
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.target, "/a/b?x=1");
        let u = parse_http_url("HTTP://example.org").unwrap();
        assert_eq!(
            (u.connect.as_str(), u.target.as_str()),
            ("example.org:80", "/")
        );
        let u = parse_http_url("http://[::1]/x").unwrap();
        assert_eq!(u.connect, "[::1]:80");
        assert!(parse_http_url("http://u:p@h/x").is_err());
        assert!(parse_http_url("http:///x").is_err());
        assert!(parse_http_url("https://h/x").is_err());
    }

    #[test]
    fn redirect_locations_resolve() {
        let b = "http://h:1/a/b?q";
        assert_eq!(resolve_location(b, "http://o/x"), "http://o/x");
        assert_eq!(resolve_location(b, "/x"), "http://h:1/x");
        assert_eq!(resolve_location(b, "c"), "http://h:1/a/c");
        assert_eq!(resolve_location(b, "//o/x"), "http://o/x");
        assert_eq!(resolve_location(b, "../c?z=1"), "http://h:1/c?z=1");
        assert_eq!(resolve_location(b, "./d/../../../e"), "http://h:1/e");
        assert_eq!(resolve_location(b, "/x/./y/"), "http://h:1/x/y/");
    }

    #[test]
    fn cache_keys_are_stable() {
        assert_eq!(cache_key(""), "cbf29ce484222325");
        assert_ne!(cache_key("http://a/x"), cache_key("http://a/y"));
    }

    #[test]
    fn eviction_drops_least_recently_used_first() {
        let dir = std::env::temp_dir().join(format!("tessera-evict-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let p = dir.join(name);
            std::fs::write(&p, [0u8; 100]).unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(t0 + Duration::from_secs(i as u64)).unwrap();
        }
        evict(&dir, 200, &dir.join("old"));
        // "old" is the one just added, so it stays; "mid" is the oldest of the others.
        assert!(dir.join("old").exists());
        assert!(!dir.join("mid").exists());
        assert!(dir.join("new").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
