//! `btauth/1`: hotkey-signed HTTP requests as bittensor 11.x signs and verifies them
//! (`bittensor.http_auth.sign` / `verify`, normative spec "Signed requests").
//!
//! A request carries `X-Bittensor-{Version,Hotkey,Receiver,Nonce,Signature}` (plus
//! `X-Bittensor-Crypto: ed25519` for ed25519 keys). The signature (sr25519 in the
//! `substrate` context, or plain RFC 8032 ed25519) covers eight `\n`-joined UTF-8 lines:
//! `btauth/1`, the scheme, the upper-case method, the request target as sent (path and
//! `?query`), `sha256_hex(raw body)`, the decimal nanosecond nonce, the sender and the
//! receiver (`-` when unbound). Verification runs in the spec's order: header shape →
//! receiver → freshness (10 s back, 2 s ahead) → signature → replay store of
//! `(hotkey, nonce)`, written only after the signature verified. Every failure is 401.

use std::time::Duration;

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hyper::HeaderMap;
use sha2::{Digest, Sha256};

use super::replay::ReplayStore;
use crate::net::NetError;
use crate::wallet::{Keypair, ss58_decode, ss58_encode};

/// The protocol line that opens every signed payload.
pub const PROTOCOL: &str = "btauth/1";
/// `X-Bittensor-Version` (value `1`).
pub const HEADER_VERSION: &str = "x-bittensor-version";
/// `X-Bittensor-Hotkey`: the sender's SS58 address.
pub const HEADER_HOTKEY: &str = "x-bittensor-hotkey";
/// `X-Bittensor-Receiver`: the receiver's SS58 address.
pub const HEADER_RECEIVER: &str = "x-bittensor-receiver";
/// `X-Bittensor-Nonce`: unix time in nanoseconds, decimal.
pub const HEADER_NONCE: &str = "x-bittensor-nonce";
/// `X-Bittensor-Crypto`: the key scheme, omitted for sr25519.
pub const HEADER_CRYPTO: &str = "x-bittensor-crypto";
/// `X-Bittensor-Signature`: `0x` + lowercase hex.
pub const HEADER_SIGNATURE: &str = "x-bittensor-signature";
/// The prefix that marks a request as btauth/1.
pub const HEADER_PREFIX: &str = "x-bittensor-";
/// How old a nonce may be (the SDK's `DEFAULT_MAX_AGE`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10);
/// How far ahead of our clock a nonce may be (`DEFAULT_ALLOWED_SKEW`).
pub const DEFAULT_ALLOWED_SKEW: Duration = Duration::from_secs(2);
/// How long accepted `(hotkey, nonce)` pairs are kept (the SDK store's default; more
/// than max age + skew).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(60);

/// The key scheme a request is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoScheme {
    /// sr25519 in the `substrate` signing context (the default; no crypto header).
    Sr25519,
    /// ed25519 (RFC 8032).
    Ed25519,
}

impl CryptoScheme {
    /// The scheme's name as it appears in the payload and the crypto header.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sr25519 => "sr25519",
            Self::Ed25519 => "ed25519",
        }
    }

    /// Parses a crypto header as the SDK does: a name (`sr25519`, `ed25519`, any case,
    /// surrounding whitespace ignored) or the SDK's numeric crypto type (`0` ed25519,
    /// `1` sr25519).
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim().to_ascii_lowercase();
        match v.as_str() {
            "sr25519" => Some(Self::Sr25519),
            "ed25519" => Some(Self::Ed25519),
            _ if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                match v.trim_start_matches('0') {
                    "" => Some(Self::Ed25519),
                    "1" => Some(Self::Sr25519),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Why a btauth/1 request was refused; messages are the SDK's and safe to return to
/// the (unauthenticated) caller. Every variant answers 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtAuthError {
    /// A required header is missing or unparseable (`MalformedAuth`).
    #[error("{0}")]
    Malformed(String),
    /// Signed for another receiver, or for none (`WrongReceiver`).
    #[error("{0}")]
    WrongReceiver(String),
    /// The nonce is outside the freshness window (`StaleRequest`).
    #[error("{0}")]
    Stale(String),
    /// This `(hotkey, nonce)` was already accepted (`ReplayedRequest`).
    #[error("this nonce was already accepted from this hotkey")]
    Replayed,
    /// The signature does not verify (`BadSignature`).
    #[error("signature does not verify against the claimed hotkey")]
    BadSignature,
}

/// The exact bytes a btauth/1 signature covers.
pub fn payload(
    scheme: CryptoScheme,
    method: &str,
    target: &str,
    body: &[u8],
    nonce_ns: i64,
    sender: &str,
    receiver: Option<&str>,
) -> Vec<u8> {
    [
        PROTOCOL,
        scheme.name(),
        &method.to_uppercase(),
        target,
        &hex::encode(Sha256::digest(body)),
        &nonce_ns.to_string(),
        sender,
        receiver.unwrap_or("-"),
    ]
    .join("\n")
    .into_bytes()
}

/// A hotkey that signs btauth/1 requests.
#[derive(Clone, Copy)]
pub enum BtAuthSigner<'a> {
    /// An sr25519 hotkey (the wallet's kind).
    Sr25519(&'a Keypair),
    /// An ed25519 hotkey.
    Ed25519(&'a SigningKey),
}

impl BtAuthSigner<'_> {
    /// The signer's scheme.
    pub fn scheme(&self) -> CryptoScheme {
        match self {
            Self::Sr25519(_) => CryptoScheme::Sr25519,
            Self::Ed25519(_) => CryptoScheme::Ed25519,
        }
    }

    /// The signer's SS58 address (format 42).
    pub fn ss58(&self) -> String {
        match self {
            Self::Sr25519(k) => k.ss58(),
            Self::Ed25519(k) => ss58_encode(&k.verifying_key().to_bytes(), 42),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], NetError> {
        match self {
            Self::Sr25519(k) => Ok(k.try_sign(message)?),
            Self::Ed25519(k) => Ok(k.sign(message).to_bytes()),
        }
    }
}

/// Signs a request: the btauth/1 headers (name, value) for `method` on `target` (the
/// path and query exactly as sent) with `body`, bound to `receiver`, with nonce
/// `nonce_ns` (sign a fresh one — [`crate::net::now_ns`] — for every attempt).
pub fn sign(
    signer: BtAuthSigner<'_>,
    method: &str,
    target: &str,
    body: &[u8],
    receiver: Option<&str>,
    nonce_ns: i64,
) -> Result<Vec<(&'static str, String)>, NetError> {
    let sender = signer.ss58();
    let message = payload(
        signer.scheme(),
        method,
        target,
        body,
        nonce_ns,
        &sender,
        receiver,
    );
    let signature = signer.sign(&message)?;
    let mut headers = vec![
        (HEADER_VERSION, "1".to_string()),
        (HEADER_HOTKEY, sender),
        (HEADER_NONCE, nonce_ns.to_string()),
        (HEADER_SIGNATURE, format!("0x{}", hex::encode(signature))),
    ];
    if signer.scheme() != CryptoScheme::Sr25519 {
        headers.push((HEADER_CRYPTO, signer.scheme().name().to_string()));
    }
    if let Some(receiver) = receiver {
        headers.push((HEADER_RECEIVER, receiver.to_string()));
    }
    Ok(headers)
}

/// A request whose headers passed the cheap checks (shape, receiver, freshness); its
/// signature is still unchecked.
#[derive(Debug, Clone)]
pub struct BtAuthClaim {
    /// The claimed sender (SS58), not yet authenticated.
    pub sender: String,
    /// The receiver the request is bound to.
    pub receiver: Option<String>,
    /// The nonce (unix ns), inside the freshness window.
    pub nonce_ns: i64,
    /// The declared scheme.
    pub scheme: CryptoScheme,
    signature: Vec<u8>,
}

/// Verifies btauth/1 requests addressed to one hotkey, with its own replay store.
pub struct BtAuthVerifier {
    hotkey: String,
    max_age: Duration,
    allowed_skew: Duration,
    require_receiver: bool,
    replay: ReplayStore,
}

impl BtAuthVerifier {
    /// A verifier for requests to `hotkey` with the SDK's defaults (bound requests only,
    /// 10 s back, 2 s ahead, 60 s replay retention).
    pub fn new(hotkey: impl Into<String>) -> Self {
        Self {
            hotkey: hotkey.into(),
            max_age: DEFAULT_MAX_AGE,
            allowed_skew: DEFAULT_ALLOWED_SKEW,
            require_receiver: true,
            replay: ReplayStore::new(DEFAULT_RETENTION),
        }
    }

    /// The cheap checks, in the spec's order: header shape, receiver, freshness against
    /// `now_ns`. No signature work.
    pub fn precheck(&self, headers: &HeaderMap, now_ns: i64) -> Result<BtAuthClaim, BtAuthError> {
        let malformed = |m: String| BtAuthError::Malformed(m);
        if header(headers, HEADER_VERSION).as_deref() != Some("1") {
            return Err(malformed(
                "missing or unsupported X-Bittensor-Version (expected '1')".into(),
            ));
        }
        let sender = header(headers, HEADER_HOTKEY)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| malformed("missing X-Bittensor-Hotkey".into()))?;
        let raw_nonce = header(headers, HEADER_NONCE)
            .ok_or_else(|| malformed("missing X-Bittensor-Nonce".into()))?;
        let nonce = parse_python_int(&raw_nonce)
            .ok_or_else(|| malformed("X-Bittensor-Nonce is not a decimal integer".into()))?;
        let scheme = match header(headers, HEADER_CRYPTO) {
            None => CryptoScheme::Sr25519,
            Some(v) => CryptoScheme::parse(&v)
                .ok_or_else(|| malformed("unsupported X-Bittensor-Crypto".into()))?,
        };
        let raw_signature = header(headers, HEADER_SIGNATURE)
            .ok_or_else(|| malformed("missing X-Bittensor-Signature".into()))?;
        let signature =
            parse_python_hex(raw_signature.strip_prefix("0x").unwrap_or(&raw_signature))
                .ok_or_else(|| malformed("X-Bittensor-Signature is not hex".into()))?;
        let receiver = header(headers, HEADER_RECEIVER);
        match &receiver {
            None if self.require_receiver => {
                return Err(BtAuthError::WrongReceiver(
                    "missing X-Bittensor-Receiver: this server requires receiver-bound requests"
                        .into(),
                ));
            }
            Some(r) if *r != self.hotkey => {
                return Err(BtAuthError::WrongReceiver(
                    "request was signed for a different receiving hotkey".into(),
                ));
            }
            _ => {}
        }
        let now = i128::from(now_ns);
        if now - nonce > self.max_age.as_nanos() as i128 {
            return Err(BtAuthError::Stale(format!(
                "nonce is older than the {}s freshness window",
                crate::net::float_repr(self.max_age.as_secs_f64()).trim_end_matches(".0")
            )));
        }
        if nonce - now > self.allowed_skew.as_nanos() as i128 {
            return Err(BtAuthError::Stale(format!(
                "nonce is more than {}s in the future",
                crate::net::float_repr(self.allowed_skew.as_secs_f64()).trim_end_matches(".0")
            )));
        }
        Ok(BtAuthClaim {
            sender,
            receiver,
            nonce_ns: i64::try_from(nonce).expect("a fresh nonce fits i64"),
            scheme,
            signature,
        })
    }

    /// The signature over the received `method`, `target` (path and query as received)
    /// and raw `body`, then the replay store (written only on success).
    pub fn verify(
        &self,
        claim: &BtAuthClaim,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(), BtAuthError> {
        let message = payload(
            claim.scheme,
            method,
            target,
            body,
            claim.nonce_ns,
            &claim.sender,
            claim.receiver.as_deref(),
        );
        let encoding =
            || BtAuthError::Malformed("invalid hotkey address or signature encoding".into());
        let public = ss58_decode(&claim.sender).map_err(|_| encoding())?;
        let signature: [u8; 64] = claim
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| encoding())?;
        let valid = match claim.scheme {
            CryptoScheme::Sr25519 => crate::wallet::verify(public, &message, &signature),
            CryptoScheme::Ed25519 => verify_ed25519(&public, &message, &signature),
        };
        if !valid {
            return Err(BtAuthError::BadSignature);
        }
        if !self
            .replay
            .check_and_store(&claim.sender, &claim.nonce_ns.to_string())
        {
            return Err(BtAuthError::Replayed);
        }
        Ok(())
    }
}

/// Plain RFC 8032 ed25519, also accepting a signature over `<Bytes>msg</Bytes>` as the
/// SDK's verifier does.
fn verify_ed25519(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify(message, &sig).is_ok() || {
        let wrapped = [b"<Bytes>", message, b"</Bytes>"].concat();
        key.verify(&wrapped, &sig).is_ok()
    }
}

/// A header's value (the last one, as a Python dict of the headers keeps), decoded as
/// Latin-1 like Starlette does.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .map(|v| v.as_bytes().iter().map(|&b| char::from(b)).collect())
}

/// Python's `int(text)` for ASCII text: surrounding whitespace, an optional sign, and
/// digits with single underscores between them. Saturates far outside any freshness
/// window instead of overflowing.
fn parse_python_int(text: &str) -> Option<i128> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b' || c == '\x0c');
    let (negative, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let bytes = digits.as_bytes();
    if bytes.is_empty() || bytes[0] == b'_' || bytes[bytes.len() - 1] == b'_' {
        return None;
    }
    let mut value: i128 = 0;
    let mut last_underscore = false;
    for &b in bytes {
        match b {
            b'_' if !last_underscore => last_underscore = true,
            b'0'..=b'9' => {
                last_underscore = false;
                value = value
                    .saturating_mul(10)
                    .saturating_add(i128::from(b - b'0'));
            }
            _ => return None,
        }
    }
    Some(if negative { -value } else { value })
}

/// Python's `bytes.fromhex(text)`: hex digit pairs, ASCII whitespace allowed between
/// pairs (not inside one).
fn parse_python_hex(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut chars = text.bytes().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_whitespace() || c == b'\x0b' {
            chars.next();
            continue;
        }
        let hi = (chars.next()? as char).to_digit(16)?;
        let lo = (chars.next()? as char).to_digit(16)?;
        out.push((hi * 16 + lo) as u8);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};

    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const GOLDEN_NONCE: i64 = 1_752_076_800_000_000_000;
    const GOLDEN_BODY: &[u8] = br#"{"prompt": "hello"}"#;

    /// `//Alice` as an ed25519 key: substrate's hard derivation
    /// `blake2b_256(SCALE(("Ed25519HDKD", seed, chain_code)))` from the dev phrase.
    fn alice_ed25519() -> SigningKey {
        let seed = Keypair::from_uri("").unwrap().secret_seed().unwrap();
        let mut chain_code = [0u8; 32];
        chain_code[0] = 5 << 2; // SCALE compact length of "Alice"
        chain_code[1..6].copy_from_slice(b"Alice");
        let mut h = blake2::Blake2b::<blake2::digest::consts::U32>::new();
        h.update([11 << 2]);
        h.update(b"Ed25519HDKD");
        h.update(seed);
        h.update(chain_code);
        SigningKey::from_bytes(&h.finalize().into())
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn golden_payload_and_ed25519_signature() {
        let alice = Keypair::from_uri("//Alice").unwrap();
        let p = payload(
            CryptoScheme::Sr25519,
            "post",
            "/generate?stream=false",
            GOLDEN_BODY,
            GOLDEN_NONCE,
            &alice.ss58(),
            Some(BOB),
        );
        assert_eq!(
            String::from_utf8(p).unwrap(),
            "btauth/1\nsr25519\nPOST\n/generate?stream=false\n\
             341c57448e531310fbbe83f44cea2a5e838bd9e8a6b82b269f01d0dbbc23c3cc\n\
             1752076800000000000\n5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY\n\
             5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
        );
        let ed = alice_ed25519();
        let signer = BtAuthSigner::Ed25519(&ed);
        assert_eq!(
            signer.ss58(),
            "5FA9nQDVg267DEd8m1ZypXLBnvN7SFxYwV7ndqSYGiN9TTpu"
        );
        let h = sign(
            signer,
            "POST",
            "/generate?stream=false",
            GOLDEN_BODY,
            Some(BOB),
            GOLDEN_NONCE,
        )
        .unwrap();
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get(HEADER_SIGNATURE),
            Some(
                "0x1a6b631988bf1f7ea093ab9d5acf61f05c316d0b0e428b24b487b75a5f6ee0e1a56a26918fdf871b6cf09437e6588023a4ce423cf622621b2a7feee17612f704"
            )
        );
        assert_eq!(get(HEADER_CRYPTO), Some("ed25519"));
        // Our verifier accepts it at the golden time, once.
        let v = BtAuthVerifier::new(BOB);
        let claim = v.precheck(&headers(&h), GOLDEN_NONCE).unwrap();
        v.verify(&claim, "POST", "/generate?stream=false", GOLDEN_BODY)
            .unwrap();
        assert_eq!(
            v.verify(&claim, "POST", "/generate?stream=false", GOLDEN_BODY),
            Err(BtAuthError::Replayed)
        );
    }

    #[test]
    fn verification_order_and_errors() {
        let alice = Keypair::from_uri("//Alice").unwrap();
        let bob = Keypair::from_uri("//Bob").unwrap();
        let v = BtAuthVerifier::new(bob.ss58());
        let now = 1_800_000_000_000_000_000;
        let signed = |receiver: Option<&str>, nonce| {
            sign(
                BtAuthSigner::Sr25519(&alice),
                "POST",
                "/x",
                b"{}",
                receiver,
                nonce,
            )
            .unwrap()
        };
        let good = signed(Some(&bob.ss58()), now);
        let claim = v.precheck(&headers(&good), now).unwrap();
        // The body, method and target are bound.
        assert_eq!(
            v.verify(&claim, "POST", "/x", b"{ }"),
            Err(BtAuthError::BadSignature)
        );
        assert_eq!(
            v.verify(&claim, "POST", "/y", b"{}"),
            Err(BtAuthError::BadSignature)
        );
        // A failed signature does not poison the store.
        v.verify(&claim, "post", "/x", b"{}").unwrap();
        assert_eq!(
            v.verify(&claim, "POST", "/x", b"{}"),
            Err(BtAuthError::Replayed)
        );
        let kind = |h: &HeaderMap, at| match v.precheck(h, at) {
            Ok(_) => "ok",
            Err(BtAuthError::Malformed(_)) => "malformed",
            Err(BtAuthError::WrongReceiver(_)) => "receiver",
            Err(BtAuthError::Stale(_)) => "stale",
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            kind(&headers(&signed(Some(&alice.ss58()), now)), now),
            "receiver"
        );
        assert_eq!(kind(&headers(&signed(None, now)), now), "receiver");
        assert_eq!(kind(&headers(&good), now + 10_000_000_001), "stale");
        assert_eq!(kind(&headers(&good), now + 10_000_000_000), "ok");
        assert_eq!(kind(&headers(&good), now - 2_000_000_001), "stale");
        let mut h = headers(&good);
        h.insert(HEADER_VERSION, HeaderValue::from_static("2"));
        assert_eq!(kind(&h, now), "malformed");
        let mut h = headers(&good);
        h.insert(HEADER_NONCE, HeaderValue::from_static("12a"));
        assert_eq!(kind(&h, now), "malformed");
        let mut h = headers(&good);
        h.insert(HEADER_CRYPTO, HeaderValue::from_static("ecdsa"));
        assert_eq!(kind(&h, now), "malformed");
        let mut h = headers(&good);
        h.insert(HEADER_SIGNATURE, HeaderValue::from_static("0xzz"));
        assert_eq!(kind(&h, now), "malformed");
        // Receiver is checked before freshness.
        assert_eq!(
            kind(&headers(&signed(Some(&alice.ss58()), 0)), now),
            "receiver"
        );
        // A short signature is an encoding error, found at signature time.
        let mut h = headers(&signed(Some(&bob.ss58()), now + 1));
        h.insert(HEADER_SIGNATURE, HeaderValue::from_static("0xabcd"));
        let claim = v.precheck(&h, now).unwrap();
        assert!(matches!(
            v.verify(&claim, "POST", "/x", b"{}"),
            Err(BtAuthError::Malformed(_))
        ));
    }

    #[test]
    fn python_number_and_hex_forms() {
        assert_eq!(parse_python_int(" +1_000 "), Some(1000));
        assert_eq!(parse_python_int("-5"), Some(-5));
        for bad in ["", "_1", "1_", "1__0", "0x10", "1.0", "+"] {
            assert_eq!(parse_python_int(bad), None, "{bad}");
        }
        assert!(parse_python_int(&"9".repeat(80)).unwrap() > i128::from(i64::MAX));
        assert_eq!(parse_python_hex("ab cd"), Some(vec![0xab, 0xcd]));
        assert_eq!(parse_python_hex("a bcd"), None);
        assert_eq!(parse_python_hex("abc"), None);
        assert_eq!(
            CryptoScheme::parse(" ED25519 "),
            Some(CryptoScheme::Ed25519)
        );
        assert_eq!(CryptoScheme::parse("1"), Some(CryptoScheme::Sr25519));
        assert_eq!(CryptoScheme::parse("0"), Some(CryptoScheme::Ed25519));
        assert_eq!(CryptoScheme::parse("2"), None);
    }
}
