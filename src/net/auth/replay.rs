//! The replay store of the signed-request schemes (btauth/1, Epistula v2): remembers
//! accepted keys (btauth: `(hotkey, nonce)`, Epistula: `(hotkey, uuid)`) for a retention
//! time longer than the scheme's freshness window, so a replay inside the window is
//! refused and anything older is already refused as stale.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Remembers accepted request keys for `retention` (written only after a signature
/// verified, so unauthenticated traffic cannot poison it against a real sender).
pub struct ReplayStore {
    retention: Duration,
    state: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    keys: HashSet<(String, String)>,
    expiry: VecDeque<(Instant, (String, String))>,
}

impl ReplayStore {
    /// A store keeping keys for `retention`.
    pub fn new(retention: Duration) -> Self {
        Self {
            retention,
            state: Mutex::new(Seen::default()),
        }
    }

    /// How long accepted keys are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Records `(sender, id)` and returns true if it was never seen within the
    /// retention time; false (and records nothing) for a replay.
    pub fn check_and_store(&self, sender: &str, id: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.state.lock().expect("replay store lock");
        while seen.expiry.front().is_some_and(|(at, _)| *at <= now) {
            let (_, key) = seen.expiry.pop_front().expect("front exists");
            seen.keys.remove(&key);
        }
        let key = (sender.to_string(), id.to_string());
        if seen.keys.contains(&key) {
            return false;
        }
        seen.keys.insert(key.clone());
        seen.expiry.push_back((now + self.retention, key));
        true
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.state.lock().expect("replay store lock").keys.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_refused_until_expiry() {
        let store = ReplayStore::new(Duration::from_millis(30));
        assert!(store.check_and_store("alice", "1"));
        assert!(!store.check_and_store("alice", "1"));
        assert!(store.check_and_store("bob", "1"));
        assert!(store.check_and_store("alice", "2"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(store.check_and_store("alice", "1"));
        assert_eq!(store.len(), 1);
    }
}
