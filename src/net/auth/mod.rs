//! The request-authentication schemes one axon port accepts, told apart by their
//! headers: `X-Bittensor-*` → btauth/1 ([`btauth`]), `Epistula-*` → Epistula v2
//! ([`epistula`]), `bt_header_*` (or anything else) → the SDK-10 Synapse protocol
//! (verified in the axon). `--axon.auth` selects the accepted set.

pub mod btauth;
pub mod epistula;
mod replay;

use std::fmt;
use std::str::FromStr;

use hyper::HeaderMap;

pub use replay::ReplayStore;

/// An authentication scheme of incoming requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// SDK 7.2–10.x Synapse headers (`bt_header_dendrite_*`), signed per synapse.
    Synapse,
    /// bittensor 11 `btauth/1` (`X-Bittensor-*`).
    Btauth,
    /// Epistula v2 (`Epistula-*`), as SN1 v2 signs.
    Epistula,
}

impl AuthScheme {
    /// Every scheme, the default accepted set.
    pub const ALL: [AuthScheme; 3] = [
        AuthScheme::Synapse,
        AuthScheme::Btauth,
        AuthScheme::Epistula,
    ];

    /// The scheme a request claims, from its header names alone (no parsing).
    pub fn of_request(headers: &HeaderMap) -> AuthScheme {
        let claims = |prefix: &str| headers.keys().any(|k| k.as_str().starts_with(prefix));
        if claims(btauth::HEADER_PREFIX) {
            AuthScheme::Btauth
        } else if claims(epistula::HEADER_PREFIX) {
            AuthScheme::Epistula
        } else {
            AuthScheme::Synapse
        }
    }

    /// The scheme's name in configuration and flags.
    pub fn name(self) -> &'static str {
        match self {
            AuthScheme::Synapse => "synapse",
            AuthScheme::Btauth => "btauth",
            AuthScheme::Epistula => "epistula",
        }
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AuthScheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthScheme::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown auth scheme {s:?}: use synapse, btauth or epistula"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn schemes_are_told_apart_by_header_names() {
        let mut h = HeaderMap::new();
        assert_eq!(AuthScheme::of_request(&h), AuthScheme::Synapse);
        h.insert("bt_header_dendrite_nonce", HeaderValue::from_static("1"));
        assert_eq!(AuthScheme::of_request(&h), AuthScheme::Synapse);
        h.insert("epistula-uuid", HeaderValue::from_static("u"));
        assert_eq!(AuthScheme::of_request(&h), AuthScheme::Epistula);
        h.insert("x-bittensor-nonce", HeaderValue::from_static("1"));
        assert_eq!(AuthScheme::of_request(&h), AuthScheme::Btauth);
        assert_eq!("btauth".parse::<AuthScheme>(), Ok(AuthScheme::Btauth));
        assert!("epistula2".parse::<AuthScheme>().is_err());
    }
}
