//! Finetuning-subnet evaluation (SN6-style): miners commit a model id to the chain,
//! validators fetch each committed model, compute its loss on (prompt, response) pairs
//! (response tokens only), count per-batch wins between every pair of models (an
//! earlier commit wins within ε) and turn win rates into weights. The policy (ε
//! schedule, wins, softmax, moving average, competitions) lives in the Rhai script
//! `scripts/finetune/validator.rhai`; see `docs/finetune.md`.

mod data;
mod eval;
mod policy;
mod store;
mod validator;

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

pub use data::{Batch, Pair, batches, load_pairs, pair_from_event};
pub use eval::{
    Candidate, EvalOutcome, Evaluator, ModelScore, PairLoss, WorkerCommand, WorkerReply,
    WorkerRequest,
};
pub use policy::{Competition, DEFAULT_POLICY, Policy, PolicySettings, ScriptPolicy};
pub use store::{ModelCheck, ModelStore, StoreConfig, inspect_gguf};
pub use validator::{FinetuneConfig, FinetuneState, FinetuneValidator, RoundReport, read_models};

/// Largest compressed model id, in bytes (the chain's commitment limit).
pub const MAX_METADATA_BYTES: usize = 128;
/// Competition id used by commitments that name none (the reference's `m1`).
pub const ORIGINAL_COMPETITION_ID: &str = "m1";

/// Errors of the finetuning evaluator.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// A compressed model id or its parts are malformed.
    #[error("bad model id `{id}`: {reason}")]
    BadModelId {
        /// The text given.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Evaluation data is missing or malformed.
    #[error("evaluation data {path}: {reason}")]
    Data {
        /// File (and line) concerned.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A committed model could not be retrieved.
    #[error("model {id}: {reason}")]
    Retrieve {
        /// The model id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A model fails the competition's checks (size, architecture, hash).
    #[error("model {id} rejected: {reason}")]
    Rejected {
        /// The model id.
        id: String,
        /// Which check failed.
        reason: String,
    },
    /// The policy script failed or returned something unusable.
    #[error("policy script: {0}")]
    Policy(String),
    /// The chain refused or failed.
    #[error("chain: {0}")]
    Chain(#[from] crate::chain::ChainError),
    /// Weights were not set (see the message for what to do).
    #[error(transparent)]
    Weights(#[from] crate::chain::weights::WeightsError),
    /// The inference core failed outside a single model's evaluation.
    #[error("llm: {0}")]
    Llm(#[from] crate::llm::LlmError),
}

/// A model named on chain: `namespace:name:commit:hash:competition_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId {
    /// Hub namespace (user or organisation).
    pub namespace: String,
    /// Repository name.
    pub name: String,
    /// Git revision of the repository (`None` only for models handled locally).
    pub commit: Option<String>,
    /// Base64 sha256 over the model's files (see [`hash_directory`]).
    pub hash: Option<String>,
    /// Competition entered (`None` means [`ORIGINAL_COMPETITION_ID`]).
    pub competition_id: Option<String>,
}

impl ModelId {
    /// `namespace/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The competition, defaulting to [`ORIGINAL_COMPETITION_ID`].
    pub fn competition(&self) -> &str {
        self.competition_id
            .as_deref()
            .unwrap_or(ORIGINAL_COMPETITION_ID)
    }

    /// The compressed form written to the chain (`None` parts as `None`, as the
    /// reference writes them). Fails when it exceeds [`MAX_METADATA_BYTES`] or a part
    /// is empty or contains `:`.
    pub fn to_compressed(&self) -> Result<String, FinetuneError> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "None".into());
        let text = format!(
            "{}:{}:{}:{}:{}",
            self.namespace,
            self.name,
            opt(&self.commit),
            opt(&self.hash),
            opt(&self.competition_id)
        );
        let bad = |reason: String| FinetuneError::BadModelId {
            id: text.clone(),
            reason,
        };
        for (what, part) in [
            ("namespace", Some(&self.namespace)),
            ("name", Some(&self.name)),
            ("commit", self.commit.as_ref()),
            ("hash", self.hash.as_ref()),
            ("competition id", self.competition_id.as_ref()),
        ] {
            if let Some(part) = part
                && (part.is_empty() || part.contains(':'))
            {
                return Err(bad(format!("{what} `{part}` is empty or contains `:`")));
            }
        }
        if text.len() > MAX_METADATA_BYTES {
            return Err(bad(format!(
                "{} bytes, at most {MAX_METADATA_BYTES} fit in a commitment",
                text.len()
            )));
        }
        Ok(text)
    }

    /// Parses the compressed form (4 or 5 `:`-separated parts; `None` means absent).
    pub fn parse(text: &str) -> Result<Self, FinetuneError> {
        let bad = |reason: &str| FinetuneError::BadModelId {
            id: text.chars().take(200).collect(),
            reason: reason.into(),
        };
        if text.len() > MAX_METADATA_BYTES {
            return Err(bad("longer than 128 bytes"));
        }
        let parts: Vec<&str> = text.split(':').collect();
        if !(4..=5).contains(&parts.len()) {
            return Err(bad("expected namespace:name:commit:hash[:competition_id]"));
        }
        if parts[0].is_empty() || parts[1].is_empty() {
            return Err(bad("empty namespace or name"));
        }
        if parts[0].contains(['/', '\\'])
            || parts[1].contains(['/', '\\'])
            || parts[..2].contains(&"..")
        {
            return Err(bad("namespace and name may not contain path separators"));
        }
        let opt = |s: Option<&&str>| {
            s.filter(|s| !s.is_empty() && **s != "None")
                .map(|s| s.to_string())
        };
        Ok(Self {
            namespace: parts[0].into(),
            name: parts[1].into(),
            commit: opt(parts.get(2)),
            hash: opt(parts.get(3)),
            competition_id: opt(parts.get(4)),
        })
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}",
            self.repo(),
            self.commit.as_deref().unwrap_or("local")
        )
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FinetuneError + '_ {
    move |source| FinetuneError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Base64 sha256 of one file's bytes (the reference's `get_hash_of_file`).
pub fn hash_file(path: &Path) -> Result<String, FinetuneError> {
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
}

/// The reference's `get_hash_of_directory`: walk `dir` (directories and files in
/// sorted order, as `os.walk` with sorted names visits them), feed each file's
/// base64 hash text into one sha256, and base64 the result. A single file is hashed as
/// a directory holding only it.
pub fn hash_directory(dir: &Path) -> Result<String, FinetuneError> {
    let mut hasher = Sha256::new();
    if dir.is_file() {
        hasher.update(hash_file(dir)?.as_bytes());
    } else {
        walk_hash(dir, &mut hasher)?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
}

/// `os.walk` order (top-down): this directory's files, then each subdirectory.
fn walk_hash(dir: &Path, hasher: &mut Sha256) -> Result<(), FinetuneError> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if path.is_dir() {
            dirs.push(path);
        } else {
            files.push(path);
        }
    }
    files.sort();
    dirs.sort();
    for file in &files {
        hasher.update(hash_file(file)?.as_bytes());
    }
    for sub in &dirs {
        walk_hash(sub, hasher)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ModelId {
        ModelId {
            namespace: "org".into(),
            name: "model".into(),
            commit: Some("a".repeat(40)),
            hash: Some("h".repeat(44)),
            competition_id: Some("m1".into()),
        }
    }

    #[test]
    fn compressed_round_trip() {
        let text = id().to_compressed().unwrap();
        assert_eq!(
            text,
            format!("org:model:{}:{}:m1", "a".repeat(40), "h".repeat(44))
        );
        assert_eq!(ModelId::parse(&text).unwrap(), id());
    }

    #[test]
    fn none_parts_and_four_part_ids() {
        let parsed = ModelId::parse("a:b:None:None").unwrap();
        assert_eq!(parsed.commit, None);
        assert_eq!(parsed.competition(), ORIGINAL_COMPETITION_ID);
        let back = parsed.to_compressed().unwrap();
        assert_eq!(back, "a:b:None:None:None");
    }

    #[test]
    fn bad_ids_are_errors() {
        for text in [
            "",
            "a:b",
            "a:b:c:d:e:f",
            ":b:c:d",
            "../x:b:c:d",
            "a:b/c:c:d",
        ] {
            assert!(ModelId::parse(text).is_err(), "{text}");
        }
        assert!(ModelId::parse(&"x".repeat(129)).is_err());
        let mut long = id();
        long.name = "n".repeat(60);
        assert!(matches!(
            long.to_compressed(),
            Err(FinetuneError::BadModelId { .. })
        ));
        let mut colon = id();
        colon.name = "a:b".into();
        assert!(colon.to_compressed().is_err());
    }

    #[test]
    fn directory_hash_matches_python_reference() {
        // Expected value computed with the reference's get_hash_of_directory
        // (model/storage/disk/utils.py) over the same tree.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), b"second").unwrap();
        std::fs::write(dir.path().join("a.txt"), b"first").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c.bin"), [0u8, 1, 2]).unwrap();
        assert_eq!(hash_directory(dir.path()).unwrap(), PYTHON_DIR_HASH);
        assert!(hash_directory(&dir.path().join("missing")).is_err());
    }

    const PYTHON_DIR_HASH: &str = "LiLBne9wVz9hn/NN/4c0BCg6Sk65Q1zABH6X7AGDIdw=";
}
