//! The one error type of weightreel.
//!
//! Every variant renders as a single line that names the thing (file, tensor, URL, flag, reel)
//! and the problem, so that the CLI can print it as is and exit non-zero. Tokens never appear in
//! any message: URLs are stored without credentials.

use std::path::Path;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, grouped by the stage of the pipeline that found it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a named file or directory.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A safetensors file whose header is unreadable or inconsistent.
    #[error("{file}: {problem}")]
    Header { file: String, problem: String },

    /// One tensor of a safetensors file is inconsistent (shape, dtype, offsets).
    #[error("{file}: tensor '{tensor}': {problem}")]
    Tensor {
        file: String,
        tensor: String,
        problem: String,
    },

    /// A model could not be located (no file, no cache entry, not on the Hub).
    #[error("model '{model}': {problem}")]
    Model { model: String, problem: String },

    /// The Hub says a repo or a revision does not exist (or is hidden from this caller: the
    /// Hub answers for a private repo as for a missing one). The problem says what to try.
    #[error("model '{repo}': {problem}")]
    NotOnHub {
        repo: String,
        missing: HubMissing,
        problem: String,
    },

    /// An HTTP request failed. `url` never carries a token.
    #[error("{url}: {problem}")]
    Http { url: String, problem: String },

    /// A user-supplied setting is out of range; `expected` states the valid values.
    #[error("invalid {name} {value} (expected {expected})")]
    Invalid {
        name: String,
        value: String,
        expected: String,
    },

    /// A name on the command line matches several things (a model with several stored
    /// entries); `choices` says how to pick one. A usage error, as [`Error::Invalid`] is.
    #[error("'{name}' {choices}")]
    Ambiguous { name: String, choices: String },

    /// Frame layout or quantization refused a chunk.
    #[error("{0}")]
    Frame(String),

    /// A reel file is corrupt, truncated, inconsistent or too new.
    #[error("reel {file}: {problem}")]
    Reel { file: String, problem: String },

    /// The store (registry database or its directory) failed.
    #[error("store {path}: {problem}")]
    Store { path: String, problem: String },

    /// The user interrupted the work (Ctrl-C); what was kept is described by the caller.
    /// The job queue (PostgreSQL) refused or failed a request. `transient` when the connection
    /// failed or the server was shutting down or starting, so that the request may be retried.
    #[error("queue {url}: {problem}")]
    Queue {
        url: String,
        problem: String,
        transient: bool,
    },

    #[error("interrupted")]
    Interrupted,

    /// Where reels live (a directory or an S3 bucket) refused or failed a request. `location`
    /// is a URL without credentials.
    #[error("reel storage {location}: {problem}")]
    ReelStorage { location: String, problem: String },
}

/// What the Hub did not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubMissing {
    /// The repo (`X-Error-Code: RepoNotFound`).
    Repo,
    /// The revision of an existing repo (`X-Error-Code: RevisionNotFound`).
    Revision,
}

impl Error {
    /// I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Header problem in `file`.
    pub fn header(file: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Header {
            file: file.into(),
            problem: problem.into(),
        }
    }

    /// Problem with `tensor` in `file`.
    pub fn tensor(
        file: impl Into<String>,
        tensor: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Tensor {
            file: file.into(),
            tensor: tensor.into(),
            problem: problem.into(),
        }
    }

    /// Problem locating `model`.
    pub fn model(model: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Model {
            model: model.into(),
            problem: problem.into(),
        }
    }

    /// HTTP problem on `url`.
    pub fn http(url: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Http {
            url: url.into(),
            problem: problem.into(),
        }
    }

    /// A setting out of range, rav1e style: `invalid --chunk-size 0 (expected 1..=16777216)`.
    pub fn invalid(
        name: impl Into<String>,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            name: name.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// A corrupt or unsupported reel.
    pub fn reel(file: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error::Reel {
            file: file.as_ref().display().to_string(),
            problem: problem.into(),
        }
    }

    /// A store failure.
    pub fn store(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error::Store {
            path: path.as_ref().display().to_string(),
            problem: problem.into(),
        }
    }
}
