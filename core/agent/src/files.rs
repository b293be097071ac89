//! The agent's `/files/*` endpoints over task sandboxes, with Mesos semantics:
//! `/files/browse?path=P`, `/files/read?path=P&offset=O&length=L`, `/files/download?path=P`.
//!
//! A path is the absolute sandbox path the agent reports (`<work_dir>/slaves/...`), or a
//! path relative to `<work_dir>/slaves`. It is resolved with every symlink followed and must
//! land inside the canonical sandboxes root, else the answer is 403 (404 when it does not
//! exist) and nothing is read. The opened file is checked again through `/proc/self/fd`, so a
//! component swapped for a symlink between the check and the open cannot escape either.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Longest read answered in one `/files/read` (when `length` is absent or larger).
pub const MAX_READ: u64 = 16 * 1024 * 1024;
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// Why a file request fails, as an HTTP answer.
#[derive(Debug)]
pub enum FileError {
    BadRequest(String),
    NotFound(String),
    Forbidden(String),
    Internal(String),
}

impl IntoResponse for FileError {
    fn into_response(self) -> Response {
        let (code, msg) = match self {
            FileError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            FileError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            FileError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            FileError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        (code, msg).into_response()
    }
}

fn io_error(path: &str, e: io::Error) -> FileError {
    match e.kind() {
        io::ErrorKind::NotFound => FileError::NotFound(format!("No file or directory at '{path}'")),
        io::ErrorKind::PermissionDenied => {
            FileError::Forbidden(format!("Access denied to '{path}'"))
        }
        _ => FileError::Internal(format!("Cannot access '{path}': {e}")),
    }
}

/// The sandboxes root: canonical (every answered path must be under it) and as configured
/// (the form of the sandbox paths the agent reports).
pub struct Root {
    canon: PathBuf,
    given: PathBuf,
}

impl Root {
    /// `<work_dir>/slaves`, created if missing so it can be canonicalized.
    pub fn for_work_dir(work_dir: &Path) -> io::Result<Root> {
        let given = work_dir.join("slaves");
        std::fs::create_dir_all(&given)?;
        Ok(Root {
            canon: given.canonicalize()?,
            given: lexically_normal(&std::path::absolute(&given)?),
        })
    }

    /// The canonical root.
    pub fn path(&self) -> &Path {
        &self.canon
    }

    /// Resolves a requested path to a canonical path inside the root.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, FileError> {
        if requested.is_empty() {
            return Err(FileError::BadRequest(
                "Expecting 'path=value' in query".into(),
            ));
        }
        if requested.contains('\0') {
            return Err(FileError::BadRequest("path: contains a NUL byte".into()));
        }
        let p = Path::new(requested);
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.canon.join(p)
        };
        // Lexically outside (e.g. /etc/passwd, ../..): refuse before touching the file.
        let normal = lexically_normal(&joined);
        if !normal.starts_with(&self.canon) && !normal.starts_with(&self.given) {
            return Err(FileError::Forbidden(format!(
                "'{requested}' is outside the agent's sandboxes"
            )));
        }
        let canon = joined.canonicalize().map_err(|e| io_error(requested, e))?;
        self.check(requested, &canon)?;
        Ok(canon)
    }

    fn check(&self, requested: &str, canon: &Path) -> Result<(), FileError> {
        if canon.starts_with(&self.canon) {
            Ok(())
        } else {
            Err(FileError::Forbidden(format!(
                "'{requested}' is outside the agent's sandboxes"
            )))
        }
    }

    /// Opens a resolved path and checks what was actually opened is still inside the root.
    pub fn open(&self, requested: &str) -> Result<(File, PathBuf), FileError> {
        let canon = self.resolve(requested)?;
        let file = File::open(&canon).map_err(|e| io_error(requested, e))?;
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if let Ok(actual) = std::fs::read_link(&fd_path) {
            self.check(requested, &actual)?;
        }
        Ok((file, canon))
    }
}

/// `..` and `.` removed without touching the filesystem.
fn lexically_normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// One `/files/browse` entry, Mesos' shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub mode: String,
    pub mtime: f64,
    pub nlink: u64,
    pub uid: String,
    pub gid: String,
}

fn mode_string(m: &std::fs::Metadata) -> String {
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else {
        '-'
    };
    let bits = m.permissions().mode();
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if bits & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

/// The name for `id` in an `/etc/passwd`-like file, else the number.
fn id_name(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let _ = f.next();
                (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

fn entry(path: &Path, m: &std::fs::Metadata) -> Entry {
    Entry {
        path: path.to_string_lossy().into_owned(),
        size: m.len(),
        mode: mode_string(m),
        mtime: m.mtime() as f64,
        nlink: m.nlink(),
        uid: id_name("/etc/passwd", m.uid()),
        gid: id_name("/etc/group", m.gid()),
    }
}

/// `/files/browse`: the entries of a directory (sorted by path), or the file itself. Entries
/// are described without following their symlinks.
pub fn browse(root: &Root, requested: &str) -> Result<Vec<Entry>, FileError> {
    let (file, canon) = root.open(requested)?;
    let meta = file.metadata().map_err(|e| io_error(requested, e))?;
    if !meta.is_dir() {
        return Ok(vec![entry(&canon, &meta)]);
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(&canon).map_err(|e| io_error(requested, e))? {
        let e = e.map_err(|e| io_error(requested, e))?;
        if let Ok(m) = e.path().symlink_metadata() {
            out.push(entry(&canon.join(e.file_name()), &m));
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `/files/read`'s answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadChunk {
    pub data: String,
    pub offset: u64,
}

fn parse_param(name: &str, v: Option<&str>) -> Result<Option<i64>, FileError> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => s.trim().parse::<i64>().map(Some).map_err(|_| {
            FileError::BadRequest(format!("Failed to parse {name}: '{s}' is not an integer"))
        }),
    }
}

/// `/files/read` with Mesos semantics: `offset=-1` answers the size with empty data; a read
/// from `offset` of at most `length` bytes (all to the end when absent or -1), capped at
/// [`MAX_READ`]. A chunk never ends inside a UTF-8 sequence (the rest comes with the next
/// read); other invalid bytes become U+FFFD.
pub fn read(
    root: &Root,
    requested: &str,
    offset: Option<&str>,
    length: Option<&str>,
) -> Result<ReadChunk, FileError> {
    let offset = parse_param("offset", offset)?;
    let length = parse_param("length", length)?;
    if let Some(o) = offset
        && o < -1
    {
        return Err(FileError::BadRequest(format!(
            "Negative offset provided: {o}"
        )));
    }
    if let Some(l) = length
        && l < -1
    {
        return Err(FileError::BadRequest(format!(
            "Negative length provided: {l}"
        )));
    }
    let (mut file, _) = root.open(requested)?;
    let meta = file.metadata().map_err(|e| io_error(requested, e))?;
    if meta.is_dir() {
        return Err(FileError::BadRequest(format!(
            "Cannot read '{requested}': it is a directory"
        )));
    }
    let size = meta.len();
    let offset = match offset {
        None => 0,
        Some(-1) => {
            return Ok(ReadChunk {
                data: String::new(),
                offset: size,
            });
        }
        Some(o) => o as u64,
    };
    if offset >= size {
        return Ok(ReadChunk {
            data: String::new(),
            offset: offset.min(size),
        });
    }
    let want = match length {
        None | Some(-1) => MAX_READ,
        Some(l) => (l as u64).min(MAX_READ),
    }
    .min(size - offset);
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_error(requested, e))?;
    let mut buf = Vec::with_capacity(want as usize);
    file.take(want)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(requested, e))?;
    // Leave an incomplete trailing UTF-8 sequence for the next read.
    if let Err(e) = std::str::from_utf8(&buf)
        && e.error_len().is_none()
        && buf.len() - e.valid_up_to() < 4
    {
        buf.truncate(e.valid_up_to());
    }
    Ok(ReadChunk {
        data: String::from_utf8_lossy(&buf).into_owned(),
        offset,
    })
}

// ---- HTTP -------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct FileQuery {
    path: Option<String>,
    offset: Option<String>,
    length: Option<String>,
}

fn path_of(q: &FileQuery) -> Result<String, FileError> {
    q.path
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| FileError::BadRequest("Expecting 'path=value' in query".into()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FileError::Internal(e.to_string()))?
}

pub async fn browse_handler(
    State(root): State<std::sync::Arc<Root>>,
    Query(q): Query<FileQuery>,
) -> Result<Json<Vec<Entry>>, FileError> {
    let path = path_of(&q)?;
    blocking(move || browse(&root, &path)).await.map(Json)
}

pub async fn read_handler(
    State(root): State<std::sync::Arc<Root>>,
    Query(q): Query<FileQuery>,
) -> Result<Json<ReadChunk>, FileError> {
    let path = path_of(&q)?;
    blocking(move || read(&root, &path, q.offset.as_deref(), q.length.as_deref()))
        .await
        .map(Json)
}

pub async fn download_handler(
    State(root): State<std::sync::Arc<Root>>,
    Query(q): Query<FileQuery>,
) -> Result<Response, FileError> {
    let path = path_of(&q)?;
    let p = path.clone();
    let (file, canon) = blocking(move || {
        let (file, canon) = root.open(&p)?;
        let meta = file.metadata().map_err(|e| io_error(&p, e))?;
        if meta.is_dir() {
            return Err(FileError::BadRequest(format!(
                "Cannot download '{p}': it is a directory"
            )));
        }
        Ok((file, canon))
    })
    .await?;
    let name = canon
        .file_name()
        .map(|n| n.to_string_lossy().replace('"', ""))
        .unwrap_or_else(|| "download".into());
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut buf = vec![0u8; DOWNLOAD_CHUNK];
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempdir::Dir, Root, PathBuf) {
        let d = tempdir::Dir::new();
        let root = Root::for_work_dir(d.path()).unwrap();
        let sb = root.path().join("a/frameworks/f/executors/e/runs/c");
        std::fs::create_dir_all(&sb).unwrap();
        std::fs::write(sb.join("stdout"), b"hello world\n").unwrap();
        (d, root, sb)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p =
                    std::env::temp_dir().join(format!("tessera-files-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn s(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn escapes_never_read_outside() {
        let (_d, root, sb) = setup();
        std::os::unix::fs::symlink("/etc", sb.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", sb.join("pw")).unwrap();
        let attempts = [
            s(&sb.join("../../../../../../../../etc/passwd")),
            s(&sb.join("etc/passwd")),
            s(&sb.join("pw")),
            "/etc/passwd".to_string(),
            "../../../../../../../../../etc/passwd".to_string(),
            "../..".to_string(),
            s(&root.path().join("..")),
        ];
        for a in &attempts {
            let r = read(&root, a, None, None);
            assert!(
                matches!(
                    r,
                    Err(FileError::Forbidden(_)) | Err(FileError::NotFound(_))
                ),
                "{a}: {r:?}"
            );
            let b = browse(&root, a);
            assert!(
                matches!(
                    b,
                    Err(FileError::Forbidden(_)) | Err(FileError::NotFound(_))
                ),
                "{a}: {b:?}"
            );
        }
        // The symlinks themselves are listed (not followed) when browsing the sandbox.
        let names: Vec<String> = browse(&root, &s(&sb))
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert!(names.iter().any(|n| n.ends_with("/pw")), "{names:?}");
        // `..` that stays inside is fine.
        let ok = read(&root, &s(&sb.join("../c/stdout")), None, None).unwrap();
        assert_eq!(ok.data, "hello world\n");
    }

    #[test]
    fn read_offsets_and_lengths() {
        let (_d, root, sb) = setup();
        let p = s(&sb.join("stdout"));
        let size = read(&root, &p, Some("-1"), None).unwrap();
        assert_eq!(
            size,
            ReadChunk {
                data: String::new(),
                offset: 12
            }
        );
        let all = read(&root, &p, None, None).unwrap();
        assert_eq!((all.data.as_str(), all.offset), ("hello world\n", 0));
        let mid = read(&root, &p, Some("6"), Some("5")).unwrap();
        assert_eq!((mid.data.as_str(), mid.offset), ("world", 6));
        let to_end = read(&root, &p, Some("6"), Some("-1")).unwrap();
        assert_eq!(to_end.data, "world\n");
        let past = read(&root, &p, Some("100"), Some("5")).unwrap();
        assert_eq!((past.data.as_str(), past.offset), ("", 12));
        let zero = read(&root, &p, Some("0"), Some("0")).unwrap();
        assert_eq!(zero.data, "");
        for (o, l, name) in [
            (Some("x"), None, "offset"),
            (Some("-2"), None, "offset"),
            (None, Some("abc"), "length"),
            (None, Some("-5"), "length"),
        ] {
            match read(&root, &p, o, l) {
                Err(FileError::BadRequest(m)) => assert!(m.contains(name), "{m}"),
                other => panic!("{o:?} {l:?}: {other:?}"),
            }
        }
        assert!(matches!(
            read(&root, &s(&sb), None, None),
            Err(FileError::BadRequest(_))
        ));
        assert!(matches!(
            read(&root, &s(&sb.join("nope")), None, None),
            Err(FileError::NotFound(_))
        ));
        // A chunk does not split a UTF-8 sequence.
        std::fs::write(sb.join("utf"), "aé".as_bytes()).unwrap();
        let c = read(&root, &s(&sb.join("utf")), Some("0"), Some("2")).unwrap();
        assert_eq!(c.data, "a");
    }

    #[test]
    fn browse_lists_a_sandbox() {
        let (_d, root, sb) = setup();
        std::fs::create_dir(sb.join("sub")).unwrap();
        let entries = browse(&root, &s(&sb)).unwrap();
        assert_eq!(entries.len(), 2);
        let f = entries
            .iter()
            .find(|e| e.path.ends_with("/stdout"))
            .unwrap();
        assert_eq!(f.size, 12);
        assert!(f.mode.starts_with('-'), "{}", f.mode);
        assert_eq!(f.nlink, 1);
        assert!(f.mtime > 0.0);
        let d = entries.iter().find(|e| e.path.ends_with("/sub")).unwrap();
        assert!(d.mode.starts_with('d'), "{}", d.mode);
        // A file browses as itself; relative paths are under the sandboxes root.
        let one = browse(&root, "a/frameworks/f/executors/e/runs/c/stdout").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].path, s(&sb.join("stdout")));
    }
}
