//! The core services the script API adapts, independent of scripting: the offline
//! Wikipedia corpus ([`Corpus`]), allowlisted HTTP GET ([`HttpClient`]) and read-only
//! source trees ([`SourceTree`]). They fail with [`ServiceError`]; the script host's API
//! modules turn that into the script runtime error a hook sees.

mod corpus;
mod http;
mod source;

use std::path::PathBuf;

pub use corpus::{Article, Corpus, DatedEvent};
pub use http::{HttpClient, HttpConfig};
pub use source::{SourceTree, language};

/// Errors of the corpus, HTTP and source services.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A file could not be read, parsed, or is outside what may be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path (as the caller named it).
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An HTTP request was refused (allowlist, scheme) or failed.
    #[error("http GET {url}: {message}")]
    Http {
        /// The requested URL.
        url: String,
        /// Why it failed.
        message: String,
    },
}
