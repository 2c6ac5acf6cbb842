//! Epistula v2: the signed-request headers of SN1 v2 (`macrocosm-os/prompting`
//! `shared/epistula.py`) and other subnets.
//!
//! Headers: `Epistula-Version: 2`, `Epistula-Timestamp` (unix ms), `Epistula-Uuid`
//! (uuid4), `Epistula-Signed-By`, `Epistula-Signed-For` (optional),
//! `Epistula-Request-Signature` = `0x` + hex sr25519 over the UTF-8 of
//! `"{sha256_hex(body)}.{uuid}.{timestamp}.{signed_for or ''}"`; with a receiver also
//! `Epistula-Secret-Signature-{0,1,2}` over `"{T-1}.{signed_for}"`, `"{T}.{signed_for}"`,
//! `"{T+1}.{signed_for}"`, T = ceil(ts / 1e4) · 1e4 written as a Python float
//! (`1700000010000.0`). A receiver requires `Signed-For` == its hotkey (else 400) and a
//! timestamp at most 8 s old (400); beyond SN1 we also refuse timestamps more than 8 s
//! ahead and keep a `(hotkey, uuid)` replay store (60 s), both 400.

use std::time::Duration;

use hyper::HeaderMap;
use sha2::{Digest, Sha256};

use super::replay::ReplayStore;
use crate::net::{NetError, float_repr};
use crate::wallet::Keypair;

/// The prefix that marks a request as Epistula.
pub const HEADER_PREFIX: &str = "epistula-";
/// `Epistula-Version` (value `2`).
pub const HEADER_VERSION: &str = "epistula-version";
/// `Epistula-Timestamp`: unix time in milliseconds.
pub const HEADER_TIMESTAMP: &str = "epistula-timestamp";
/// `Epistula-Uuid`: a uuid4 per request.
pub const HEADER_UUID: &str = "epistula-uuid";
/// `Epistula-Signed-By`: the sender's SS58 address.
pub const HEADER_SIGNED_BY: &str = "epistula-signed-by";
/// `Epistula-Signed-For`: the receiver's SS58 address.
pub const HEADER_SIGNED_FOR: &str = "epistula-signed-for";
/// `Epistula-Request-Signature`: `0x` + hex.
pub const HEADER_REQUEST_SIGNATURE: &str = "epistula-request-signature";
/// `Epistula-Secret-Signature-{0,1,2}`.
pub const HEADER_SECRET_SIGNATURES: [&str; 3] = [
    "epistula-secret-signature-0",
    "epistula-secret-signature-1",
    "epistula-secret-signature-2",
];
/// How old (and, ours, how far ahead) a timestamp may be, in ms (SN1's `ALLOWED_DELTA_MS`).
pub const ALLOWED_DELTA_MS: i64 = 8_000;
/// How long accepted `(hotkey, uuid)` pairs are kept (more than the 16 s window).
pub const REPLAY_RETENTION: Duration = Duration::from_secs(60);

/// Why an Epistula request was refused; every variant answers 400 with SN1's message
/// (the last two are ours).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpistulaError {
    /// `Signed-For` is not our hotkey.
    #[error("Bad Request, message is not intended for self")]
    NotForSelf,
    /// A header is missing or unparseable (`Invalid Signature`, `Invalid Timestamp`, …).
    #[error("{0}")]
    Invalid(&'static str),
    /// The timestamp is more than 8 s old.
    #[error("Request is too stale")]
    Stale,
    /// The signature does not verify.
    #[error("Signature Mismatch")]
    Mismatch,
    /// The timestamp is more than 8 s ahead of our clock (ours).
    #[error("Request is from the future")]
    Future,
    /// This `(hotkey, uuid)` was already accepted (ours).
    #[error("Request replayed")]
    Replayed,
}

/// The message a request signature covers.
pub fn request_message(
    body: &[u8],
    uuid: &str,
    timestamp_ms: i64,
    signed_for: Option<&str>,
) -> String {
    format!(
        "{}.{uuid}.{timestamp_ms}.{}",
        hex::encode(Sha256::digest(body)),
        signed_for.unwrap_or("")
    )
}

/// The three secret-signature messages `"{T-1}.{for}"`, `"{T}.{for}"`, `"{T+1}.{for}"`,
/// T = ceil(ts / 1e4) · 1e4 as a Python float prints it.
pub fn secret_messages(timestamp_ms: i64, signed_for: &str) -> [String; 3] {
    let t = (timestamp_ms as f64 / 1e4).ceil() * 1e4;
    [t - 1.0, t, t + 1.0].map(|x| format!("{}.{signed_for}", float_repr(x)))
}

/// Signs a request for `body` to `signed_for` at `timestamp_ms` with `uuid` (a fresh
/// uuid4 per attempt): the Epistula v2 headers (name, value).
pub fn sign(
    keypair: &Keypair,
    body: &[u8],
    signed_for: Option<&str>,
    timestamp_ms: i64,
    uuid: &str,
) -> Result<Vec<(&'static str, String)>, NetError> {
    let hex_sig = |m: &str| -> Result<String, NetError> {
        Ok(format!(
            "0x{}",
            hex::encode(keypair.try_sign(m.as_bytes())?)
        ))
    };
    let mut headers = vec![
        (HEADER_VERSION, "2".to_string()),
        (HEADER_TIMESTAMP, timestamp_ms.to_string()),
        (HEADER_UUID, uuid.to_string()),
        (HEADER_SIGNED_BY, keypair.ss58()),
        (
            HEADER_REQUEST_SIGNATURE,
            hex_sig(&request_message(body, uuid, timestamp_ms, signed_for))?,
        ),
    ];
    if let Some(receiver) = signed_for {
        headers.push((HEADER_SIGNED_FOR, receiver.to_string()));
        for (name, message) in HEADER_SECRET_SIGNATURES
            .into_iter()
            .zip(secret_messages(timestamp_ms, receiver))
        {
            headers.push((name, hex_sig(&message)?));
        }
    }
    Ok(headers)
}

/// A request whose headers passed the cheap checks (receiver, shape, window); its
/// signature is still unchecked.
#[derive(Debug, Clone)]
pub struct EpistulaClaim {
    /// The claimed sender (SS58), not yet authenticated.
    pub sender: String,
    /// The request's uuid.
    pub uuid: String,
    /// The timestamp (unix ms), inside the window.
    pub timestamp_ms: i64,
    signed_for: String,
    signature: String,
}

/// Verifies Epistula v2 requests addressed to one hotkey, with a uuid replay store.
pub struct EpistulaVerifier {
    hotkey: String,
    replay: ReplayStore,
}

impl EpistulaVerifier {
    /// A verifier for requests signed for `hotkey`.
    pub fn new(hotkey: impl Into<String>) -> Self {
        Self {
            hotkey: hotkey.into(),
            replay: ReplayStore::new(REPLAY_RETENTION),
        }
    }

    /// The cheap checks, in SN1's order: receiver, header shape, age (and, ours, the
    /// future bound) against `now_ms`. No signature work.
    pub fn precheck(
        &self,
        headers: &HeaderMap,
        now_ms: i64,
    ) -> Result<EpistulaClaim, EpistulaError> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let signed_for = get(HEADER_SIGNED_FOR).unwrap_or_default();
        if signed_for != self.hotkey {
            return Err(EpistulaError::NotForSelf);
        }
        let signature =
            get(HEADER_REQUEST_SIGNATURE).ok_or(EpistulaError::Invalid("Invalid Signature"))?;
        let timestamp_ms: i64 = get(HEADER_TIMESTAMP)
            .and_then(|t| t.trim().parse().ok())
            .ok_or(EpistulaError::Invalid("Invalid Timestamp"))?;
        let sender = get(HEADER_SIGNED_BY).ok_or(EpistulaError::Invalid("Invalid Sender key"))?;
        let uuid = get(HEADER_UUID).ok_or(EpistulaError::Invalid("Invalid uuid"))?;
        if timestamp_ms.saturating_add(ALLOWED_DELTA_MS) < now_ms {
            return Err(EpistulaError::Stale);
        }
        if timestamp_ms > now_ms.saturating_add(ALLOWED_DELTA_MS) {
            return Err(EpistulaError::Future);
        }
        Ok(EpistulaClaim {
            sender,
            uuid,
            timestamp_ms,
            signed_for,
            signature,
        })
    }

    /// The request signature over the raw `body`, then the replay store (written only
    /// on success).
    pub fn verify(&self, claim: &EpistulaClaim, body: &[u8]) -> Result<(), EpistulaError> {
        let message = request_message(
            body,
            &claim.uuid,
            claim.timestamp_ms,
            Some(&claim.signed_for),
        );
        let sig = hex::decode(
            claim
                .signature
                .strip_prefix("0x")
                .unwrap_or(&claim.signature),
        )
        .unwrap_or_default();
        if !crate::wallet::verify(claim.sender.as_str(), message.as_bytes(), &sig) {
            return Err(EpistulaError::Mismatch);
        }
        if !self.replay.check_and_store(&claim.sender, &claim.uuid) {
            return Err(EpistulaError::Replayed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};

    #[test]
    fn secret_messages_copy_the_python_float_format() {
        assert_eq!(
            secret_messages(1_700_000_001_234, "B"),
            [
                "1700000009999.0.B".to_string(),
                "1700000010000.0.B".to_string(),
                "1700000010001.0.B".to_string()
            ]
        );
        assert_eq!(
            request_message(b"", "u", 5, None),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.u.5."
        );
    }

    #[test]
    fn verification_order_and_errors() {
        let alice = Keypair::from_uri("//Alice").unwrap();
        let bob = Keypair::from_uri("//Bob").unwrap().ss58();
        let v = EpistulaVerifier::new(bob.clone());
        let now = 1_800_000_000_000;
        let headers = |receiver: Option<&str>, ts, uuid: &str| {
            let mut map = HeaderMap::new();
            for (k, val) in sign(&alice, b"{}", receiver, ts, uuid).unwrap() {
                map.insert(
                    HeaderName::from_static(k),
                    HeaderValue::from_str(&val).unwrap(),
                );
            }
            map
        };
        let good = headers(Some(&bob), now, "u1");
        let claim = v.precheck(&good, now).unwrap();
        assert_eq!(v.verify(&claim, b"{ }"), Err(EpistulaError::Mismatch));
        v.verify(&claim, b"{}").unwrap();
        assert_eq!(v.verify(&claim, b"{}"), Err(EpistulaError::Replayed));
        let err = |h: &HeaderMap, at| v.precheck(h, at).unwrap_err();
        assert_eq!(
            err(&headers(None, now, "u2"), now),
            EpistulaError::NotForSelf
        );
        assert_eq!(err(&good, now + 8_001), EpistulaError::Stale);
        v.precheck(&good, now + 8_000).unwrap();
        assert_eq!(err(&good, now - 8_001), EpistulaError::Future);
        let mut h = good.clone();
        h.insert(HEADER_TIMESTAMP, HeaderValue::from_static("soon"));
        assert_eq!(err(&h, now), EpistulaError::Invalid("Invalid Timestamp"));
        let mut h = good.clone();
        h.remove(HEADER_UUID);
        assert_eq!(err(&h, now), EpistulaError::Invalid("Invalid uuid"));
    }
}
