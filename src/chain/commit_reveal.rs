//! Commit-reveal v2 weights on any [`Chain`] that runs it: [`commit`] keeps what the
//! reveal needs in a durable [`RevealStore`] *before* it sends the hash of the weights
//! (so a process killed right after the commit still has its reveal), then records the
//! block that included it; [`reveal_pending`] later reveals the kept commits whose reveal
//! window is open, drops the revealed, expired and unknown ones and keeps the rest.
//!
//! The store is one JSON file per hotkey and subnet,
//! `$NEURON_HOME/chain/reveals/netuid<N>-<hotkey>.json` (a list of [`PendingReveal`]),
//! replaced atomically and durably with [`crate::fsutil::write_atomic`] (mode 0600: the
//! salt keeps the weights secret until the reveal). A file that does not parse is an
//! error naming it; the other files are untouched.

use std::io;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::subtensor::WeightsReveal;
use super::{Chain, ChainError, Signer, TxReceipt};

/// Most unrevealed v2 commits the chain holds per hotkey and subnet (subtensor's limit);
/// [`commit`] refuses to add one more.
pub const MAX_UNREVEALED_COMMITS: usize = 10;

/// A commit-reveal v2 commitment waiting for its reveal, as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReveal {
    /// The chain it was committed on ([`Chain::network`]).
    pub endpoint: String,
    /// Block that included the commit.
    pub commit_block: u64,
    /// The blocks in which the chain accepts the reveal.
    pub window: RangeInclusive<u64>,
    /// What the reveal sends.
    pub reveal: WeightsReveal,
}

/// Errors of the commit-reveal flow and its store.
#[derive(Debug, Error)]
pub enum CommitRevealError {
    /// The pending-reveal file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pending-reveal file is not a list of pending reveals.
    #[error("{} is not a list of pending reveals", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The pending-reveal file could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A chain read or the commit's transport failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The chain refused the commit itself (not a connection failure or timeout).
    #[error(
        "the chain refused the commit-reveal v2 commit; if this runtime only accepts \
         timelocked commits, use --neuron.commit_reveal v4 (or auto)"
    )]
    CommitRefused(#[source] ChainError),
    /// The hotkey already waits on [`MAX_UNREVEALED_COMMITS`] reveals on this subnet.
    #[error(
        "{pending} commits of {hotkey} on subnet {netuid} are still unrevealed (the chain \
         allows {MAX_UNREVEALED_COMMITS}); reveal them in their windows (`neuron chain \
         reveal`) or wait for them to expire before committing again (kept in {})",
        path.display()
    )]
    TooManyUnrevealed {
        /// Hotkey SS58.
        hotkey: String,
        /// Subnet.
        netuid: u16,
        /// Unrevealed commits kept.
        pending: usize,
        /// The store file.
        path: PathBuf,
    },
    /// The store holds no commit of this hotkey on this subnet and endpoint.
    #[error(
        "no pending commits of {hotkey} on subnet {netuid} at {endpoint} (in {})",
        path.display()
    )]
    NothingPending {
        /// Hotkey SS58.
        hotkey: String,
        /// Subnet.
        netuid: u16,
        /// The chain's endpoint.
        endpoint: String,
        /// The store file looked in.
        path: PathBuf,
    },
    /// A reveal failed; `done` is what happened before it (already saved: revealed
    /// commits are gone from the store, the failed one and the rest are kept).
    #[error("revealing weights")]
    Reveal {
        /// The reveals and expiries before the failure.
        done: Box<RevealReport>,
        /// The chain's error.
        #[source]
        source: ChainError,
    },
}

/// The durable store of pending reveals: one JSON file per subnet and hotkey in a
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevealStore {
    dir: PathBuf,
}

impl RevealStore {
    /// A store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store in `$NEURON_HOME/chain/reveals`.
    pub fn in_neuron_home() -> Self {
        Self::new(crate::home::neuron_home().join("chain").join("reveals"))
    }

    /// The file of `hotkey` (SS58) on `netuid`: `<dir>/netuid<N>-<hotkey>.json`.
    pub fn path(&self, netuid: u16, hotkey: &str) -> PathBuf {
        self.dir.join(format!("netuid{netuid}-{hotkey}.json"))
    }

    /// The pending reveals of `hotkey` on `netuid` (none when the file does not exist).
    pub fn load(&self, netuid: u16, hotkey: &str) -> Result<Vec<PendingReveal>, CommitRevealError> {
        let path = self.path(netuid, hotkey);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|source| CommitRevealError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(CommitRevealError::Read { path, source }),
        }
    }

    /// Replaces the pending reveals of `hotkey` on `netuid`, atomically and durably.
    pub fn save(
        &self,
        netuid: u16,
        hotkey: &str,
        pending: &[PendingReveal],
    ) -> Result<(), CommitRevealError> {
        let path = self.path(netuid, hotkey);
        let bytes = serde_json::to_vec_pretty(pending).map_err(|e| CommitRevealError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        crate::fsutil::write_atomic(&path, &bytes, 0o600)
            .map_err(|source| CommitRevealError::Write { path, source })
    }
}

/// A commit that went through and is kept for its reveal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Where the commit landed.
    pub receipt: TxReceipt,
    /// The blocks in which to reveal it.
    pub window: RangeInclusive<u64>,
    /// The store file keeping the reveal.
    pub path: PathBuf,
}

/// Commits `reveal` (weights of mechanism `reveal.mechid` of `reveal.netuid`, u16 as
/// from [`super::normalize_weights`], under its salt) with commit-reveal v2.
///
/// Reads the subnet's hyperparameters and epoch schedule first, appends the reveal to
/// `store` with the window a commit in the next block gets, sends the commit hash
/// (signed by the hotkey), then records the including block and its exact window. A
/// commit the chain refused is removed from the store again; after a connection failure
/// it stays (the commit may have landed; a reveal the chain does not know is dropped
/// when the chain says so).
pub async fn commit(
    chain: &dyn Chain,
    hotkey: &dyn Signer,
    reveal: &WeightsReveal,
    store: &RevealStore,
) -> Result<Committed, CommitRevealError> {
    let (netuid, mechid) = (reveal.netuid, reveal.mechid);
    if reveal.uids.len() != reveal.values.len() {
        return Err(ChainError::InvalidInput(format!(
            "{} uids but {} weights",
            reveal.uids.len(),
            reveal.values.len()
        ))
        .into());
    }
    let params = chain.hyperparameters(netuid).await?;
    let schedule = chain.epoch_schedule(netuid).await?;
    let endpoint = chain.network();
    let ss58 = hotkey.ss58();
    let path = store.path(netuid, &ss58);
    let mut pending = store.load(netuid, &ss58)?;
    let now = schedule.current_block;
    let waiting = pending
        .iter()
        .filter(|p| p.endpoint == endpoint && *p.window.end() >= now)
        .count();
    if waiting >= MAX_UNREVEALED_COMMITS {
        return Err(CommitRevealError::TooManyUnrevealed {
            hotkey: ss58,
            netuid,
            pending: waiting,
            path,
        });
    }
    let expected_block = now + 1;
    pending.push(PendingReveal {
        endpoint,
        commit_block: expected_block,
        window: chain.reveal_window(netuid, &params, &schedule, expected_block),
        reveal: reveal.clone(),
    });
    store.save(netuid, &ss58, &pending)?;
    let hash = reveal.commit_hash(hotkey.public());
    let sent = chain.commit_weights(hotkey, netuid, mechid, hash).await;
    let entry = pending.pop().expect("just pushed");
    let receipt = match sent {
        Ok(receipt) => receipt,
        Err(e) => {
            if !matches!(e, ChainError::Connection(_) | ChainError::Timeout { .. }) {
                // Refused: the chain holds no such commit, so nothing is left to reveal.
                store.save(netuid, &ss58, &pending)?;
                return Err(CommitRevealError::CommitRefused(e));
            }
            // The commit may or may not have landed: keep its reveal; a reveal of a
            // commit the chain never saw is dropped when the chain says so.
            pending.push(entry);
            return Err(CommitRevealError::Chain(e));
        }
    };
    let window = chain.reveal_window(netuid, &params, &schedule, receipt.block);
    pending.push(PendingReveal {
        commit_block: receipt.block,
        window: window.clone(),
        ..entry
    });
    store.save(netuid, &ss58, &pending)?;
    Ok(Committed {
        receipt,
        window,
        path,
    })
}

/// A pending reveal that was revealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revealed {
    /// What was revealed.
    pub pending: PendingReveal,
    /// Where the reveal landed.
    pub receipt: TxReceipt,
}

/// What [`reveal_pending`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevealReport {
    /// The block the windows were judged at.
    pub block: u64,
    /// Commits revealed now (dropped from the store).
    pub revealed: Vec<Revealed>,
    /// Commits whose window had ended (dropped from the store).
    pub expired: Vec<PendingReveal>,
    /// Commits the chain does not hold (never landed, or already expired there), with
    /// its reason (dropped from the store).
    pub unknown: Vec<(PendingReveal, String)>,
    /// The earliest window still to open among the kept commits.
    pub next_window: Option<u64>,
}

/// Reveals `hotkey`'s pending commits on `netuid` at this chain's endpoint whose window
/// is open at the current block (signed by the hotkey); drops them and the expired ones
/// from `store` and keeps the rest (and the commits made at other endpoints).
///
/// A failed reveal stops there with [`CommitRevealError::Reveal`], after saving the
/// store (that commit and the ones not yet tried stay pending).
pub async fn reveal_pending(
    chain: &dyn Chain,
    hotkey: &dyn Signer,
    netuid: u16,
    store: &RevealStore,
) -> Result<RevealReport, CommitRevealError> {
    let ss58 = hotkey.ss58();
    let endpoint = chain.network();
    let (mine, mut kept): (Vec<_>, Vec<_>) = store
        .load(netuid, &ss58)?
        .into_iter()
        .partition(|p| p.endpoint == endpoint);
    if mine.is_empty() {
        return Err(CommitRevealError::NothingPending {
            hotkey: ss58.clone(),
            netuid,
            endpoint,
            path: store.path(netuid, &ss58),
        });
    }
    let block = chain.current_block().await?;
    let mut report = RevealReport {
        block,
        ..RevealReport::default()
    };
    let mut mine = mine.into_iter();
    while let Some(pending) = mine.next() {
        let (start, end) = (*pending.window.start(), *pending.window.end());
        if block < start {
            report.next_window = Some(report.next_window.map_or(start, |b| b.min(start)));
            kept.push(pending);
        } else if block > end {
            report.expired.push(pending);
        } else {
            match chain.reveal_weights(hotkey, &pending.reveal).await {
                Ok(receipt) => report.revealed.push(Revealed { pending, receipt }),
                Err(e)
                    if matches!(
                        e.chain_error(),
                        Some(
                            "NoWeightsCommitFound"
                                | "InvalidRevealCommitHashNotMatch"
                                | "ExpiredWeightCommit"
                        )
                    ) =>
                {
                    report.unknown.push((pending, e.to_string()));
                }
                Err(source) => {
                    kept.push(pending);
                    kept.extend(mine);
                    store.save(netuid, &ss58, &kept)?;
                    return Err(CommitRevealError::Reveal {
                        done: Box::new(report),
                        source,
                    });
                }
            }
        }
    }
    store.save(netuid, &ss58, &kept)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(commit_block: u64) -> PendingReveal {
        PendingReveal {
            endpoint: "ws://127.0.0.1:9944".into(),
            commit_block,
            window: commit_block + 10..=commit_block + 20,
            reveal: WeightsReveal {
                netuid: 2,
                mechid: 0,
                uids: vec![0, 1],
                values: vec![65535, 16384],
                salt: vec![1, 2, 3, 4, 5, 6, 7, 8],
                version_key: 0,
            },
        }
    }

    const HOTKEY: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    #[test]
    fn store_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = RevealStore::new(dir.path().join("reveals"));
        assert!(
            store.load(2, HOTKEY).unwrap().is_empty(),
            "no file: nothing pending"
        );
        let list = vec![pending(100), pending(130)];
        store.save(2, HOTKEY, &list).unwrap();
        assert_eq!(store.load(2, HOTKEY).unwrap(), list);
        let reopened = RevealStore::new(dir.path().join("reveals"));
        assert_eq!(reopened.load(2, HOTKEY).unwrap(), list);
        assert!(reopened.load(3, HOTKEY).unwrap().is_empty(), "per subnet");
        assert_eq!(
            store.path(2, HOTKEY),
            dir.path().join(format!("reveals/netuid2-{HOTKEY}.json"))
        );
    }

    #[test]
    fn store_reads_the_existing_file_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = RevealStore::new(dir.path());
        let file = r#"[{"endpoint": "ws://127.0.0.1:9944", "commit_block": 100,
            "window": {"start": 110, "end": 120},
            "reveal": {"netuid": 2, "uids": [0, 1], "values": [65535, 16384],
                       "salt": [1, 2, 3, 4, 5, 6, 7, 8], "version_key": 0}}]"#;
        std::fs::write(store.path(2, HOTKEY), file).unwrap();
        assert_eq!(store.load(2, HOTKEY).unwrap(), vec![pending(100)]);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = RevealStore::new(dir.path());
        let path = store.path(2, HOTKEY);
        std::fs::write(&path, "{ not json").unwrap();
        let err = store.load(2, HOTKEY).unwrap_err();
        assert!(matches!(err, CommitRevealError::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_write_leaves_only_the_file_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = RevealStore::new(dir.path());
        store.save(2, HOTKEY, &[pending(100)]).unwrap();
        store.save(2, HOTKEY, &[]).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![format!("netuid2-{HOTKEY}.json")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path(2, HOTKEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(store.load(2, HOTKEY).unwrap().is_empty());
    }
}
