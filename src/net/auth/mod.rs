//! The request-authentication schemes one axon port accepts, told apart by their
//! headers: `X-Bittensor-*` → btauth/1 ([`btauth`]), `Epistula-*` → Epistula v2
//! ([`epistula`]), `bt_header_*` (or anything else) → the SDK-10 Synapse protocol
//! (verified in the axon). `--axon.auth` selects the accepted set.

pub mod btauth;
pub mod epistula;
mod replay;

use hyper::HeaderMap;

pub use replay::ReplayStore;

pub use crate::config::AuthScheme;

/// The scheme a request claims, from its header names alone (no parsing).
pub fn scheme_of(headers: &HeaderMap) -> AuthScheme {
    let claims = |prefix: &str| headers.keys().any(|k| k.as_str().starts_with(prefix));
    if claims(btauth::HEADER_PREFIX) {
        AuthScheme::Btauth
    } else if claims(epistula::HEADER_PREFIX) {
        AuthScheme::Epistula
    } else {
        AuthScheme::Synapse
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn schemes_are_told_apart_by_header_names() {
        let mut h = HeaderMap::new();
        assert_eq!(scheme_of(&h), AuthScheme::Synapse);
        h.insert("bt_header_dendrite_nonce", HeaderValue::from_static("1"));
        assert_eq!(scheme_of(&h), AuthScheme::Synapse);
        h.insert("epistula-uuid", HeaderValue::from_static("u"));
        assert_eq!(scheme_of(&h), AuthScheme::Epistula);
        h.insert("x-bittensor-nonce", HeaderValue::from_static("1"));
        assert_eq!(scheme_of(&h), AuthScheme::Btauth);
        assert_eq!("btauth".parse::<AuthScheme>(), Ok(AuthScheme::Btauth));
        assert!("epistula2".parse::<AuthScheme>().is_err());
    }
}
