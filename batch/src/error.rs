//! Errors of the batch scheduler, each mapping to an HTTP status in the REST API.

use crate::spec::JobId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: names the field and says what is accepted. HTTP 400.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// No such job. HTTP 404.
    #[error("job {0} does not exist")]
    UnknownJob(JobId),
    /// The request does not fit the job's state (cancelling a finished job). HTTP 409.
    #[error("job {job} is {state}: {message}")]
    Conflict {
        job: JobId,
        state: String,
        message: String,
    },
    /// The job store failed. HTTP 500.
    #[error("job store: {0}")]
    Store(String),
    /// Reading logs from an agent failed. HTTP 502.
    #[error("{0}")]
    Upstream(String),
}

impl Error {
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Invalid { .. } => 400,
            Error::UnknownJob(_) => 404,
            Error::Conflict { .. } => 409,
            Error::Store(_) => 500,
            Error::Upstream(_) => 502,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
