//! Typed errors of the SDK.

use std::time::Duration;

/// Everything the SDK can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Socket-level failure talking to the master (connect, read, write).
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The master's HTTP response could not be parsed.
    #[error("malformed HTTP response from {addr}: {reason}")]
    Http { addr: String, reason: String },
    /// The master answered a call with an unexpected status (4xx other than a redirect).
    #[error("master rejected {call}: HTTP {status}: {body}")]
    Rejected {
        call: String,
        status: u16,
        body: String,
    },
    /// A redirect without a usable `Location` header, or too many redirects in a row.
    #[error("bad redirect: {0}")]
    Redirect(String),
    /// The event stream could not be decoded (RecordIO or protobuf).
    #[error("undecodable event stream: {0}")]
    Decode(String),
    /// The master sent something the SDK cannot convert to its own types.
    #[error("invalid {field} from the master: {reason}")]
    Invalid { field: String, reason: String },
    /// A tooling endpoint (`/master/slaves`, an agent's `/state` or `/files/read`)
    /// answered with an error or something unreadable.
    #[error("http://{url}: {reason}")]
    Endpoint { url: String, reason: String },
    /// Subscribing failed `attempts` times in a row (only when a limit is configured).
    #[error("gave up subscribing after {attempts} attempts (last: {last})")]
    GaveUp { attempts: u32, last: String },
    /// The master sent an ERROR event (e.g. the framework was removed); the driver stops.
    #[error("master error: {0}")]
    Master(String),
    /// No event within the watchdog period.
    #[error("no event from the master for {0:?}")]
    Silent(Duration),
    /// The framework id store could not be read or written.
    #[error("framework id store {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether re-subscribing (with backoff) may cure this error.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Http { .. } | Error::Decode(_) | Error::Silent(_)
        )
    }
}

impl From<tessera_api::WireError> for Error {
    fn from(e: tessera_api::WireError) -> Self {
        Error::Invalid {
            field: "event".into(),
            reason: e.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
