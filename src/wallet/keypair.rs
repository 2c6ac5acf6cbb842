//! sr25519 key pairs as substrate and the bittensor SDK make them: BIP39 mnemonics via
//! substrate's mini-secret derivation, secret URIs (`//Alice`, `phrase//hard/soft///pw`),
//! SS58 addresses (format 42) and signatures in the `substrate` signing context.

use blake2::{Blake2b512, Digest};
use parity_scale_codec::Encode;
use schnorrkel::derive::{ChainCode, Derivation};
use schnorrkel::{ExpansionMode, MiniSecretKey, PublicKey, SecretKey, Signature};
use zeroize::Zeroizing;

use super::WalletError;

/// The signing context substrate (and so bittensor) uses for sr25519.
pub const SIGNING_CONTEXT: &[u8] = b"substrate";
/// The SS58 address format bittensor uses ("substrate generic").
pub const SS58_FORMAT: u8 = 42;
/// Substrate's development phrase, the root of `//Alice`, `//Bob`, ….
pub const DEV_PHRASE: &str =
    "bottom drive obey lake curtain smoke basket hold race lonely fit walk";

/// An sr25519 key: a full key pair, or only a public key (loaded from a `*pub.txt` file
/// or an address), which can verify but not sign.
#[derive(Clone)]
pub struct Keypair {
    public: PublicKey,
    secret: Option<SecretKey>,
    seed: Option<Zeroizing<[u8; 32]>>,
    mnemonic: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, even in debug output.
        f.debug_struct("Keypair")
            .field("ss58", &self.ss58())
            .field("has_secret", &self.secret.is_some())
            .finish()
    }
}

impl Keypair {
    /// Key pair from a 32-byte mini-secret (substrate's "seed"), expanded in Ed25519 mode.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, WalletError> {
        let mini = MiniSecretKey::from_bytes(seed).map_err(|e| WalletError::Key(e.to_string()))?;
        let secret = mini.expand(ExpansionMode::Ed25519);
        Ok(Self {
            public: secret.to_public(),
            secret: Some(secret),
            seed: Some(Zeroizing::new(*seed)),
            mnemonic: None,
        })
    }

    /// Key pair from a BIP39 English mnemonic (12, 15, 18, 21 or 24 words) and an
    /// optional BIP39 password, as `sp_core::sr25519::Pair::from_phrase` does it.
    pub fn from_mnemonic(phrase: &str, password: Option<&str>) -> Result<Self, WalletError> {
        let seed = mini_secret_from_phrase(phrase, password.unwrap_or(""))?;
        let mut pair = Self::from_seed(&seed)?;
        pair.mnemonic = Some(Zeroizing::new(normalize_phrase(phrase)));
        Ok(pair)
    }

    /// Key pair from the 64-byte secret key (`privateKey` in keyfiles: scalar || nonce).
    pub fn from_private_key(bytes: &[u8]) -> Result<Self, WalletError> {
        let secret = SecretKey::from_bytes(bytes)
            .map_err(|e| WalletError::Key(format!("private key: {e}")))?;
        Ok(Self {
            public: secret.to_public(),
            secret: Some(secret),
            seed: None,
            mnemonic: None,
        })
    }

    /// Public-only key from 32 raw bytes.
    pub fn from_public(bytes: &[u8; 32]) -> Result<Self, WalletError> {
        let public = PublicKey::from_bytes(bytes)
            .map_err(|e| WalletError::Key(format!("public key: {e}")))?;
        Ok(Self {
            public,
            secret: None,
            seed: None,
            mnemonic: None,
        })
    }

    /// Public-only key from an SS58 address.
    pub fn from_ss58(address: &str) -> Result<Self, WalletError> {
        Self::from_public(&ss58_decode(address)?)
    }

    /// Key pair from a substrate secret URI: `[phrase | 0xSEED][//hard|/soft]*[///password]`.
    /// Without a phrase the development phrase is used, so `//Alice` is Alice's dev key.
    /// Numeric junctions are encoded as u64, others as SCALE strings, as substrate does.
    pub fn from_uri(uri: &str) -> Result<Self, WalletError> {
        let (rest, password) = match uri.find("///") {
            Some(i) => (&uri[..i], Some(&uri[i + 3..])),
            None => (uri, None),
        };
        let (root, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let root = root.trim();
        let mut pair = if root.is_empty() {
            Self::from_mnemonic(DEV_PHRASE, password)?
        } else if let Some(hex_seed) = root.strip_prefix("0x") {
            let seed: [u8; 32] = hex::decode(hex_seed)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| WalletError::Uri("hex seed must be 32 bytes".into()))?;
            Self::from_seed(&seed)?
        } else {
            Self::from_mnemonic(root, password)?
        };
        if path.is_empty() {
            return Ok(pair);
        }
        for junction in parse_junctions(path)? {
            pair = pair.derive(&junction)?;
        }
        Ok(pair)
    }

    /// Derives one junction (hard derivations keep a mini-secret seed, soft ones lose it).
    fn derive(&self, junction: &Junction) -> Result<Self, WalletError> {
        let secret = self.secret.as_ref().ok_or(WalletError::NoSecret)?;
        Ok(match junction {
            Junction::Hard(cc) => {
                let (mini, _) = secret.hard_derive_mini_secret_key(Some(ChainCode(*cc)), b"");
                Self::from_seed(&mini.to_bytes())?
            }
            Junction::Soft(cc) => {
                let (derived, _) = secret.derived_key_simple(ChainCode(*cc), []);
                Self {
                    public: derived.to_public(),
                    secret: Some(derived),
                    seed: None,
                    mnemonic: None,
                }
            }
        })
    }

    /// A new random key pair and its 12-word (or `words`-word) mnemonic.
    pub fn generate(words: usize) -> Result<Self, WalletError> {
        let bytes = match words {
            12 | 15 | 18 | 21 | 24 => words / 3 * 4,
            _ => {
                return Err(WalletError::Mnemonic(format!(
                    "{words} words: use 12, 15, 18, 21 or 24"
                )));
            }
        };
        let mut entropy = Zeroizing::new(vec![0u8; bytes]);
        rand::fill(entropy.as_mut_slice());
        let mnemonic = bip39::Mnemonic::from_entropy(&entropy)
            .map_err(|e| WalletError::Mnemonic(e.to_string()))?;
        Self::from_mnemonic(&mnemonic.to_string(), None)
    }

    /// The SS58 address (format 42).
    pub fn ss58(&self) -> String {
        ss58_encode(&self.public.to_bytes(), SS58_FORMAT)
    }

    /// The 32-byte public key.
    pub fn public(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// The 32-byte mini-secret this key was expanded from, when known (mnemonic, seed
    /// or hard-derived URI keys); what subxt's sr25519 signer takes.
    pub fn secret_seed(&self) -> Option<[u8; 32]> {
        self.seed.as_deref().copied()
    }

    /// The 64-byte secret key (scalar || nonce), as stored in `privateKey`.
    pub fn private_key(&self) -> Option<[u8; 64]> {
        self.secret.as_ref().map(SecretKey::to_bytes)
    }

    /// The mnemonic this key came from, when known.
    pub fn mnemonic(&self) -> Option<&str> {
        self.mnemonic.as_deref().map(String::as_str)
    }

    /// Whether this key can sign.
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }

    /// Signs `msg` in the `substrate` context. Panics only on a public-only key; use
    /// [`Keypair::try_sign`] where the key may lack a secret.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.try_sign(msg).expect("sign with a public-only keypair")
    }

    /// Signs `msg` in the `substrate` context, or fails on a public-only key.
    pub fn try_sign(&self, msg: &[u8]) -> Result<[u8; 64], WalletError> {
        let secret = self.secret.as_ref().ok_or(WalletError::NoSecret)?;
        let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
        Ok(secret.sign(ctx.bytes(msg), &self.public).to_bytes())
    }

    /// Verifies a signature made by this key (also accepting `<Bytes>msg</Bytes>`).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        verify_public(&self.public, msg, sig)
    }
}

/// Verifies an sr25519 signature (`substrate` context) by `ss58_or_public` (an SS58
/// address, or `0x`-hex / raw 32-byte public key) over `msg`. Like the SDK it also accepts
/// a signature over `<Bytes>msg</Bytes>`. Malformed keys or signatures give `false`.
pub fn verify(ss58_or_public: impl AsRef<[u8]>, msg: &[u8], sig: &[u8]) -> bool {
    let key = ss58_or_public.as_ref();
    let public = if key.len() == 32 {
        key.try_into().ok()
    } else {
        std::str::from_utf8(key)
            .ok()
            .and_then(|s| match s.strip_prefix("0x") {
                Some(h) => hex::decode(h).ok().and_then(|b| b.try_into().ok()),
                None => ss58_decode(s).ok(),
            })
    };
    match public.and_then(|p: [u8; 32]| PublicKey::from_bytes(&p).ok()) {
        Some(public) => verify_public(&public, msg, sig),
        None => false,
    }
}

fn verify_public(public: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = Signature::from_bytes(sig) else {
        return false;
    };
    let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
    if public.verify(ctx.bytes(msg), &sig).is_ok() {
        return true;
    }
    let wrapped = [b"<Bytes>", msg, b"</Bytes>"].concat();
    public.verify(ctx.bytes(&wrapped), &sig).is_ok()
}

/// Encodes a public key as an SS58 address with a one-byte `format` (< 64).
pub fn ss58_encode(public: &[u8; 32], format: u8) -> String {
    let mut data = Vec::with_capacity(35);
    data.push(format);
    data.extend_from_slice(public);
    let checksum = ss58_checksum(&data);
    data.extend_from_slice(&checksum[..2]);
    bs58::encode(data).into_string()
}

/// Decodes an SS58 address (any one-byte format) to its public key, checking the checksum.
pub fn ss58_decode(address: &str) -> Result<[u8; 32], WalletError> {
    let bad = |why: &str| WalletError::Ss58(format!("{address:?}: {why}"));
    let data = bs58::decode(address)
        .into_vec()
        .map_err(|_| bad("not base58"))?;
    if data.len() != 35 {
        return Err(bad("wrong length"));
    }
    if data[0] >= 64 {
        return Err(bad("unsupported address format"));
    }
    if ss58_checksum(&data[..33])[..2] != data[33..] {
        return Err(bad("bad checksum"));
    }
    Ok(data[1..33].try_into().expect("32 bytes"))
}

fn ss58_checksum(data: &[u8]) -> [u8; 64] {
    let mut h = Blake2b512::new();
    h.update(b"SS58PRE");
    h.update(data);
    h.finalize().into()
}

fn normalize_phrase(phrase: &str) -> String {
    phrase.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// substrate-bip39: PBKDF2-HMAC-SHA512 over the mnemonic's *entropy* with salt
/// `"mnemonic" + password`, 2048 rounds, first 32 bytes.
fn mini_secret_from_phrase(phrase: &str, password: &str) -> Result<[u8; 32], WalletError> {
    let mnemonic = bip39::Mnemonic::parse_in(bip39::Language::English, normalize_phrase(phrase))
        .map_err(|e| WalletError::Mnemonic(e.to_string()))?;
    let entropy = Zeroizing::new(mnemonic.to_entropy());
    let salt = Zeroizing::new(format!("mnemonic{password}"));
    let mut out = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(&entropy, salt.as_bytes(), 2048, out.as_mut_slice());
    Ok(out[..32].try_into().expect("32 bytes"))
}

enum Junction {
    Hard([u8; 32]),
    Soft([u8; 32]),
}

fn parse_junctions(path: &str) -> Result<Vec<Junction>, WalletError> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let after = rest
            .strip_prefix('/')
            .ok_or_else(|| WalletError::Uri(format!("bad derivation path {path:?}")))?;
        let (hard, after) = match after.strip_prefix('/') {
            Some(a) => (true, a),
            None => (false, after),
        };
        let end = after.find('/').unwrap_or(after.len());
        let code = &after[..end];
        if code.is_empty() {
            return Err(WalletError::Uri(format!("empty junction in {path:?}")));
        }
        let encoded = match code.parse::<u64>() {
            Ok(n) => n.encode(),
            Err(_) => code.encode(),
        };
        let mut cc = [0u8; 32];
        if encoded.len() > 32 {
            cc = blake2_256(&encoded);
        } else {
            cc[..encoded.len()].copy_from_slice(&encoded);
        }
        out.push(if hard {
            Junction::Hard(cc)
        } else {
            Junction::Soft(cc)
        });
        rest = &after[end..];
    }
    Ok(out)
}

fn blake2_256(data: &[u8]) -> [u8; 32] {
    use blake2::digest::{Update, VariableOutput};
    let mut h = blake2::Blake2bVar::new(32).expect("valid output size");
    h.update(data);
    let mut out = [0u8; 32];
    h.finalize_variable(&mut out).expect("32-byte buffer");
    out
}

/// Wallet keys sign chain transactions (hotkey for weights/serving/commitments, coldkey
/// for registration/stake/transfers).
impl crate::chain::Signer for Keypair {
    fn ss58(&self) -> String {
        Keypair::ss58(self)
    }

    fn public(&self) -> [u8; 32] {
        Keypair::public(self)
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], crate::chain::ChainError> {
        self.try_sign(message)
            .map_err(|e| crate::chain::ChainError::InvalidInput(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from the real SDK (bittensor-wallet 4.1.1), see tests/fixtures/wire/PROVENANCE.md.
    const DEV_SEED: &str = "fac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e";
    const DEV_PUB: &str = "46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a";
    const DEV_PRIV: &str = "05d65584630d16cd4af6d0bec10f34bb504a5dcb62dba2122d49f5a663763d0afd190cce74df356432b410bd64682309d6dedb27c76845daf388557cbac3ca34";

    #[test]
    fn dev_mnemonic_matches_sdk() {
        let k = Keypair::from_mnemonic(DEV_PHRASE, None).unwrap();
        assert_eq!(hex::encode(k.secret_seed().unwrap()), DEV_SEED);
        assert_eq!(hex::encode(k.public()), DEV_PUB);
        assert_eq!(hex::encode(k.private_key().unwrap()), DEV_PRIV);
        assert_eq!(k.ss58(), "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV");
        let from_priv = Keypair::from_private_key(&hex::decode(DEV_PRIV).unwrap()).unwrap();
        assert_eq!(from_priv.public(), k.public());
    }

    #[test]
    fn dev_uris_match_substrate() {
        let alice = Keypair::from_uri("//Alice").unwrap();
        assert_eq!(
            alice.ss58(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
        assert!(alice.secret_seed().is_some());
        let bob = Keypair::from_uri("//Bob").unwrap();
        assert_eq!(
            bob.ss58(),
            "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
        );
        // `subkey inspect //Alice/stash` (soft junction after a hard one).
        let stash = Keypair::from_uri("//Alice//stash").unwrap();
        assert_eq!(
            stash.ss58(),
            "5GNJqTPyNqANBkUVMN1LPPrxXnFouWXoe2wNSmmEoLctxiZY"
        );
        let soft = Keypair::from_uri("//Alice/soft").unwrap();
        assert!(soft.secret_seed().is_none());
        assert_ne!(soft.public(), alice.public());
    }

    #[test]
    fn sign_and_verify_roundtrip() {
        let k = Keypair::from_uri("//Alice").unwrap();
        let sig = k.sign(b"hello");
        assert!(k.verify(b"hello", &sig));
        assert!(!k.verify(b"hellO", &sig));
        assert!(verify(k.ss58(), b"hello", &sig));
        assert!(verify(k.public(), b"hello", &sig));
        assert!(verify(
            format!("0x{}", hex::encode(k.public())),
            b"hello",
            &sig
        ));
        assert!(!verify(
            "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
            b"hello",
            &sig
        ));
        assert!(!verify("not an address", b"hello", &sig));
        assert!(!verify(k.ss58(), b"hello", &sig[..10]));
        let wrapped = k.sign(b"<Bytes>hi</Bytes>");
        assert!(k.verify(b"hi", &wrapped));
    }

    #[test]
    fn public_only_keys_cannot_sign() {
        let k = Keypair::from_ss58("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY").unwrap();
        assert!(matches!(k.try_sign(b"x"), Err(WalletError::NoSecret)));
        assert!(k.secret_seed().is_none());
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            Keypair::from_mnemonic("not a mnemonic", None),
            Err(WalletError::Mnemonic(_))
        ));
        assert!(Keypair::from_uri("0x1234").is_err());
        assert!(Keypair::from_uri("//Alice//").is_err());
        assert!(Keypair::from_private_key(&[1, 2, 3]).is_err());
        assert!(ss58_decode("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ").is_err());
        assert!(ss58_decode("0OIl").is_err());
        assert!(ss58_decode("").is_err());
        assert!(Keypair::generate(13).is_err());
    }

    #[test]
    fn generated_mnemonics_reload() {
        for words in [12, 15, 18, 21, 24] {
            let k = Keypair::generate(words).unwrap();
            let phrase = k.mnemonic().unwrap();
            assert_eq!(phrase.split(' ').count(), words);
            let again = Keypair::from_mnemonic(phrase, None).unwrap();
            assert_eq!(again.public(), k.public());
        }
    }
}
