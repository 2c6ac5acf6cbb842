//! The API keys a validator's OpenAI-compatible API accepts, in one SQLite file
//! (`$NEURON_HOME/api_keys.sqlite` unless `--api.keys_db`): each key's name, the
//! SHA-256 of its secret, its limits and whether it is revoked. The secret itself is
//! shown once, when the key is made, and never stored: keys are 256 random bits, so a
//! plain SHA-256 (no salt, no slow hash) is enough to make a stolen file useless.
//! Every lookup reads the file, so `neuron api-key revoke` takes effect on a running
//! API at its next request.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// The prefix of every secret (so a leaked one is recognisable in logs and scanners).
pub const SECRET_PREFIX: &str = "nk-";

/// Default requests per minute of a new key.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 60;
/// Default tokens per minute of a new key.
pub const DEFAULT_TOKENS_PER_MINUTE: u64 = 100_000;

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The database could not be opened, read or written.
    #[error("api key store {path}: {message}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// `add` with a name that is taken.
    #[error("an API key named `{0}` exists already (revoke it or pick another name)")]
    Exists(String),
    /// `revoke` of a name that is not there.
    #[error("no API key named `{0}`")]
    Unknown(String),
    /// A name that is empty, too long or not `[A-Za-z0-9._-]`.
    #[error("API key name `{0}`: use 1-64 characters of A-Z a-z 0-9 . _ -")]
    BadName(String),
}

/// One key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its name.
    pub name: String,
    /// Requests it may make per minute.
    pub requests_per_minute: u32,
    /// Tokens (prompt and completion) it may use per minute.
    pub tokens_per_minute: u64,
    /// Unix seconds of its creation.
    pub created: i64,
    /// Whether it is revoked.
    pub revoked: bool,
}

/// The key database.
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl KeyStore {
    /// Opens (or creates, readable by the owner only) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        let err = |e: &dyn std::fmt::Display| KeyError::Store {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| err(&e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(&e))?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| err(&e))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS api_keys (
                name TEXT PRIMARY KEY,
                secret_sha256 TEXT NOT NULL UNIQUE,
                requests_per_minute INTEGER NOT NULL,
                tokens_per_minute INTEGER NOT NULL,
                created INTEGER NOT NULL,
                revoked INTEGER NOT NULL DEFAULT 0
            )",
        )
        .map_err(|e| err(&e))?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn store_error(&self, e: rusqlite::Error) -> KeyError {
        KeyError::Store {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Makes a key `name` with these limits; returns its secret (shown once: only its
    /// hash is kept).
    pub fn add(
        &self,
        name: &str,
        requests_per_minute: u32,
        tokens_per_minute: u64,
    ) -> Result<String, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::BadName(name.to_string()));
        }
        let secret = format!("{SECRET_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
        let conn = self.conn.lock().expect("key store lock");
        let taken: bool = conn
            .query_row("SELECT 1 FROM api_keys WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map_err(|e| self.store_error(e))?
            .is_some();
        if taken {
            return Err(KeyError::Exists(name.to_string()));
        }
        conn.execute(
            "INSERT INTO api_keys (name, secret_sha256, requests_per_minute, tokens_per_minute, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                name,
                hash(&secret),
                requests_per_minute,
                tokens_per_minute as i64,
                crate::net::now_ns() / 1_000_000_000
            ],
        )
        .map_err(|e| self.store_error(e))?;
        Ok(secret)
    }

    /// Every key, by name.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let conn = self.conn.lock().expect("key store lock");
        let mut stmt = conn
            .prepare(
                "SELECT name, requests_per_minute, tokens_per_minute, created, revoked
                 FROM api_keys ORDER BY name",
            )
            .map_err(|e| self.store_error(e))?;
        let rows = stmt
            .query_map([], row_info)
            .map_err(|e| self.store_error(e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.store_error(e))
    }

    /// Revokes key `name` (kept, listed as revoked; its secret no longer works).
    pub fn revoke(&self, name: &str) -> Result<(), KeyError> {
        let conn = self.conn.lock().expect("key store lock");
        let changed = conn
            .execute("UPDATE api_keys SET revoked = 1 WHERE name = ?1", [name])
            .map_err(|e| self.store_error(e))?;
        if changed == 0 {
            return Err(KeyError::Unknown(name.to_string()));
        }
        Ok(())
    }

    /// The live (not revoked) key whose secret is `secret`, if any.
    pub fn verify(&self, secret: &str) -> Result<Option<KeyInfo>, KeyError> {
        let conn = self.conn.lock().expect("key store lock");
        conn.query_row(
            "SELECT name, requests_per_minute, tokens_per_minute, created, revoked
             FROM api_keys WHERE secret_sha256 = ?1 AND revoked = 0",
            [hash(secret)],
            row_info,
        )
        .optional()
        .map_err(|e| self.store_error(e))
    }
}

fn row_info(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        name: row.get(0)?,
        requests_per_minute: row.get(1)?,
        tokens_per_minute: row.get::<_, i64>(2)?.max(0) as u64,
        created: row.get(3)?,
        revoked: row.get::<_, i64>(4)? != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_once_stored_hashed_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.sqlite");
        let store = KeyStore::open(&path).unwrap();
        let secret = store.add("alice", 10, 1000).unwrap();
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == 3 + 64);
        assert!(matches!(store.add("alice", 1, 1), Err(KeyError::Exists(_))));
        assert!(matches!(store.add("a b", 1, 1), Err(KeyError::BadName(_))));
        let raw = std::fs::read(&path).unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(!raw.contains(&secret[3..]), "the secret is not stored");
        assert!(raw.contains(&hash(&secret)), "its hash is");
        // A second handle (another process: `neuron api-key revoke`) sees the same keys.
        let other = KeyStore::open(&path).unwrap();
        assert_eq!(other.verify(&secret).unwrap().unwrap().name, "alice");
        assert_eq!(other.verify("nk-wrong").unwrap(), None);
        other.revoke("alice").unwrap();
        assert_eq!(store.verify(&secret).unwrap(), None);
        assert!(matches!(store.revoke("bob"), Err(KeyError::Unknown(_))));
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked);
        assert_eq!(
            (listed[0].requests_per_minute, listed[0].tokens_per_minute),
            (10, 1000)
        );
    }
}
