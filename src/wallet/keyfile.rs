//! Keyfiles as the bittensor SDK (btwallet 4.x) writes them: a JSON object, optionally
//! encrypted with `$NACL` (Argon2i + XSalsa20-Poly1305); legacy Ansible Vault and Fernet
//! files are read. Files are written with mode 0600.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Keypair, WalletError};

/// Prefix of `$NACL` encrypted keyfiles.
pub const NACL_PREFIX: &[u8] = b"$NACL";
/// The fixed Argon2i salt of `$NACL` keyfiles (btwallet `keyfile.rs`).
pub const NACL_SALT: [u8; 16] = *b"\x13q\x83\xdf\xf1Z\t\xbc\x9c\x90\xb5Q\x879\xe9\xb1";
const ANSIBLE_PREFIX: &[u8] = b"$ANSIBLE_VAULT";
const FERNET_PREFIX: &[u8] = b"gAAAAA";
const FERNET_SALT: &[u8] = b"Iguesscyborgslikemyselfhaveatendencytobeparanoidaboutourorigins";

/// Largest keyfile read, in bytes (an SDK keyfile is under 1 KiB).
pub const MAX_KEYFILE_BYTES: u64 = 64 * 1024;

/// Reads all of `reader` if it holds at most `max` bytes; `None` when it holds more.
pub(super) fn read_bounded(reader: impl Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// The JSON object inside a keyfile (and, with the public fields only, a `*pub.txt`).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyfileData {
    /// `0x`-hex public key (same as `public_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `0x`-hex public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// `0x`-hex 64-byte secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// BIP39 mnemonic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_phrase: Option<String>,
    /// `0x`-hex 32-byte mini-secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_seed: Option<String>,
    /// SS58 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ss58_address: Option<String>,
    /// 1 = sr25519 (the only type supported here), 0 = ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto_type: Option<u8>,
}

impl Drop for KeyfileData {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.private_key.zeroize();
        self.secret_phrase.zeroize();
        self.secret_seed.zeroize();
    }
}

impl KeyfileData {
    /// The keyfile JSON for `keypair`; with `public_only`, the `*pub.txt` form.
    pub fn from_keypair(keypair: &Keypair, public_only: bool) -> Self {
        let public = format!("0x{}", hex::encode(keypair.public()));
        let secret = !public_only;
        Self {
            account_id: Some(public.clone()),
            public_key: Some(public),
            private_key: keypair
                .private_key()
                .filter(|_| secret)
                .map(|k| format!("0x{}", hex::encode(k))),
            secret_phrase: keypair.mnemonic().filter(|_| secret).map(str::to_owned),
            secret_seed: keypair
                .secret_seed()
                .filter(|_| secret)
                .map(|s| format!("0x{}", hex::encode(s))),
            ss58_address: Some(keypair.ss58()),
            crypto_type: Some(1),
        }
    }

    /// The key, trying `secretPhrase`, `secretSeed`, `privateKey`, then the public
    /// fields, in the SDK's order.
    pub fn to_keypair(&self) -> Result<Keypair, WalletError> {
        if self.crypto_type == Some(0) {
            return Err(WalletError::Keyfile(
                "ed25519 keyfiles are not supported".into(),
            ));
        }
        if let Some(phrase) = &self.secret_phrase {
            return Keypair::from_mnemonic(phrase, None);
        }
        if let Some(seed) = &self.secret_seed {
            let seed: [u8; 32] = decode_hex(seed, "secretSeed")?
                .as_slice()
                .try_into()
                .map_err(|_| WalletError::Keyfile("secretSeed must be 32 bytes".into()))?;
            return Keypair::from_seed(&seed);
        }
        if let Some(private) = &self.private_key {
            return Keypair::from_private_key(&decode_hex(private, "privateKey")?);
        }
        if let Some(address) = &self.ss58_address {
            return Keypair::from_ss58(address);
        }
        if let Some(public) = self.public_key.as_ref().or(self.account_id.as_ref()) {
            let bytes: [u8; 32] = decode_hex(public, "publicKey")?
                .as_slice()
                .try_into()
                .map_err(|_| WalletError::Keyfile("publicKey must be 32 bytes".into()))?;
            return Keypair::from_public(&bytes);
        }
        Err(WalletError::Keyfile("keyfile holds no key".into()))
    }
}

fn decode_hex(s: &str, what: &str) -> Result<Zeroizing<Vec<u8>>, WalletError> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s))
        .map(Zeroizing::new)
        .map_err(|_| WalletError::Keyfile(format!("{what} is not hex")))
}

/// How a keyfile's bytes are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// Plain JSON.
    None,
    /// `$NACL`: Argon2i (t=8, 512 MiB) + XSalsa20-Poly1305.
    Nacl,
    /// Legacy Ansible Vault 1.1 (read only).
    AnsibleVault,
    /// Legacy Fernet with the v6 PBKDF2 key (read only).
    Fernet,
}

/// Detects the encryption of keyfile bytes by prefix, as the SDK does.
pub fn detect_encryption(data: &[u8]) -> Encryption {
    if data.starts_with(NACL_PREFIX) {
        Encryption::Nacl
    } else if data.starts_with(ANSIBLE_PREFIX) {
        Encryption::AnsibleVault
    } else if data.starts_with(FERNET_PREFIX) {
        Encryption::Fernet
    } else {
        Encryption::None
    }
}

/// Encrypts keyfile bytes in the `$NACL` format (the only format the SDK writes).
pub fn encrypt_nacl(plain: &[u8], password: &str) -> Result<Vec<u8>, WalletError> {
    let key = nacl_key(password)?;
    let cipher = XSalsa20Poly1305::new(key.as_slice().into());
    let mut nonce = [0u8; 24];
    rand::fill(&mut nonce);
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), plain)
        .map_err(|_| WalletError::Crypto("encryption failed".into()))?;
    Ok([NACL_PREFIX, &nonce, &sealed].concat())
}

/// Decrypts keyfile bytes in any supported format (plain bytes are returned as is).
pub fn decrypt(data: &[u8], password: &str) -> Result<Zeroizing<Vec<u8>>, WalletError> {
    match detect_encryption(data) {
        Encryption::None => Ok(Zeroizing::new(data.to_vec())),
        Encryption::Nacl => {
            let body = &data[NACL_PREFIX.len()..];
            if let Some(reason) = nacl_damage(body) {
                return Err(WalletError::Damaged(reason));
            }
            let key = nacl_key(password)?;
            let cipher = XSalsa20Poly1305::new(key.as_slice().into());
            cipher
                .decrypt(Nonce::from_slice(&body[..24]), &body[24..])
                .map(Zeroizing::new)
                .map_err(|_| WalletError::WrongPassword)
        }
        Encryption::AnsibleVault => decrypt_ansible(data, password),
        Encryption::Fernet => {
            let mut key = Zeroizing::new([0u8; 32]);
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                password.as_bytes(),
                FERNET_SALT,
                10_000_000,
                key.as_mut_slice(),
            );
            let fernet = fernet::Fernet::new(&URL_SAFE.encode(key.as_slice()))
                .ok_or_else(|| WalletError::Crypto("bad Fernet key".into()))?;
            let token = std::str::from_utf8(data)
                .map_err(|_| WalletError::Keyfile("Fernet token is not text".into()))?;
            fernet
                .decrypt(token.trim())
                .map(Zeroizing::new)
                .map_err(|_| WalletError::WrongPassword)
        }
    }
}

/// Why the body of a `$NACL` keyfile (the bytes after the prefix: a 24-byte nonce, then
/// the ciphertext with its 16-byte tag) cannot be what the SDK wrote, if it cannot: too
/// short for a nonce and a tag; valid UTF-8 text (the file was edited or re-encoded as
/// text); or a run of 16 equal bytes (a zero-filled or overwritten block). A body the SDK
/// writes is several hundred uniformly random bytes (nonce, tag and the ciphertext of
/// the key's JSON), which show either of the last two with odds below 2^-100, so these
/// do not blame a good file. Any other alteration only shows as a failed
/// authentication, which a wrong password also gives.
pub fn nacl_damage(body: &[u8]) -> Option<String> {
    const NONCE_AND_TAG: usize = 24 + 16;
    if body.len() < NONCE_AND_TAG {
        return Some(format!(
            "cut short: {} encrypted bytes, a nonce and a tag need {NONCE_AND_TAG}",
            body.len()
        ));
    }
    if std::str::from_utf8(body).is_ok() {
        return Some("the encrypted part is text, not ciphertext (edited or re-encoded?)".into());
    }
    if let Some(at) = body.windows(16).position(|w| w.iter().all(|&b| b == w[0])) {
        return Some(format!(
            "16 equal bytes (0x{:02x}) at byte {}: a zero-filled or overwritten block",
            body[at],
            NACL_PREFIX.len() + at
        ));
    }
    None
}

fn nacl_key(password: &str) -> Result<Zeroizing<[u8; 32]>, WalletError> {
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(524_288, 8, 1, Some(32))
        .map_err(|e| WalletError::Crypto(format!("argon2 params: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2i, Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password.as_bytes(), &NACL_SALT, key.as_mut_slice())
        .map_err(|e| WalletError::Crypto(format!("argon2: {e}")))?;
    Ok(key)
}

/// Ansible Vault 1.1: hex(salt \n hmac \n ciphertext) under a `$ANSIBLE_VAULT;1.1;AES256`
/// line; PBKDF2-HMAC-SHA256(10,000) gives the AES-256-CTR key, HMAC key and IV.
fn decrypt_ansible(data: &[u8], password: &str) -> Result<Zeroizing<Vec<u8>>, WalletError> {
    use aes::cipher::{KeyIvInit, StreamCipher};
    let bad = |why: &str| WalletError::Keyfile(format!("Ansible Vault: {why}"));
    let text = std::str::from_utf8(data).map_err(|_| bad("not text"))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if !header.starts_with("$ANSIBLE_VAULT;1.1;AES256")
        && !header.starts_with("$ANSIBLE_VAULT;1.2;AES256")
    {
        return Err(bad("unsupported header"));
    }
    let hexed: String = lines.map(str::trim).collect();
    let inner = hex::decode(hexed).map_err(|_| bad("body is not hex"))?;
    let inner = std::str::from_utf8(&inner).map_err(|_| bad("inner body is not text"))?;
    let parts: Vec<&str> = inner.split('\n').map(str::trim).collect();
    let [salt, mac, cipher] = parts[..] else {
        return Err(bad("expected salt, hmac and ciphertext"));
    };
    let (salt, mac, cipher) = (
        hex::decode(salt).map_err(|_| bad("salt"))?,
        hex::decode(mac).map_err(|_| bad("hmac"))?,
        hex::decode(cipher).map_err(|_| bad("ciphertext"))?,
    );
    let mut derived = Zeroizing::new([0u8; 80]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, 10_000, derived.as_mut_slice());
    let mut check =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(&derived[32..64]).expect("any key length");
    check.update(&cipher);
    check
        .verify_slice(&mac)
        .map_err(|_| WalletError::WrongPassword)?;
    let mut plain = Zeroizing::new(cipher);
    let mut ctr = ctr::Ctr128BE::<aes::Aes256>::new(derived[..32].into(), derived[64..80].into());
    ctr.apply_keystream(plain.as_mut_slice());
    // PKCS#7 padding.
    let pad = *plain.last().ok_or_else(|| bad("empty plaintext"))? as usize;
    if pad == 0 || pad > 16 || pad > plain.len() {
        return Err(bad("bad padding"));
    }
    let len = plain.len() - pad;
    plain.truncate(len);
    Ok(plain)
}

/// The SDK's environment variable for a keyfile's password: `BT_PW_` + the keyfile path
/// with `/` and `.` replaced by `_`, upper-cased.
pub fn password_env_var(keyfile: &Path) -> String {
    let path = keyfile
        .to_string_lossy()
        .replace([std::path::MAIN_SEPARATOR, '.'], "_");
    format!("BT_PW_{}", path.to_uppercase())
}

/// Encodes a password for the `BT_PW_...` variable: base64 of the password XORed with
/// the variable's name (the SDK's obfuscation, not encryption).
pub fn encode_env_password(var: &str, password: &str) -> String {
    STANDARD.encode(xor_with(password.as_bytes(), var))
}

/// Decodes a `BT_PW_...` variable's value.
pub fn decode_env_password(var: &str, value: &str) -> Result<Zeroizing<String>, WalletError> {
    let bad = || WalletError::Password(format!("{var} is not a valid encoded password"));
    let raw = Zeroizing::new(STANDARD.decode(value.trim()).map_err(|_| bad())?);
    String::from_utf8(xor_with(&raw, var))
        .map(Zeroizing::new)
        .map_err(|_| bad())
}

fn xor_with(data: &[u8], key: &str) -> Vec<u8> {
    data.iter()
        .zip(key.bytes().cycle())
        .map(|(d, k)| d ^ k)
        .collect()
}

/// Where the password for an encrypted keyfile comes from.
#[derive(Clone)]
pub enum Password {
    /// This password.
    Given(Zeroizing<String>),
    /// The keyfile's `BT_PW_...` variable, else an interactive prompt on the terminal.
    EnvOrPrompt,
    /// The keyfile's `BT_PW_...` variable only (non-interactive).
    Env,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Password::Given(_) => "Password::Given(..)",
            Password::EnvOrPrompt => "Password::EnvOrPrompt",
            Password::Env => "Password::Env",
        })
    }
}

impl Password {
    /// A given password.
    pub fn given(password: impl Into<String>) -> Self {
        Password::Given(Zeroizing::new(password.into()))
    }

    /// Resolves the password for `keyfile`.
    pub fn resolve(&self, keyfile: &Path) -> Result<Zeroizing<String>, WalletError> {
        if let Password::Given(pw) = self {
            return Ok(pw.clone());
        }
        let var = password_env_var(keyfile);
        if let Ok(value) = std::env::var(&var) {
            return decode_env_password(&var, &value);
        }
        match self {
            Password::EnvOrPrompt => rpassword::prompt_password(format!(
                "Enter password to unlock key {}: ",
                keyfile.display()
            ))
            .map(Zeroizing::new)
            .map_err(|e| WalletError::Password(format!("cannot read password: {e}"))),
            _ => Err(WalletError::Password(format!(
                "{} is encrypted and {var} is not set",
                keyfile.display()
            ))),
        }
    }
}

/// One keyfile on disk.
#[derive(Debug, Clone)]
pub struct Keyfile {
    path: PathBuf,
}

impl Keyfile {
    /// The keyfile at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file exists.
    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    /// The file's encryption, read from its prefix.
    pub fn encryption(&self) -> Result<Encryption, WalletError> {
        Ok(detect_encryption(&self.read_raw()?))
    }

    /// The file's bytes: a regular file of at most [`MAX_KEYFILE_BYTES`] (a symlink to
    /// `/dev/zero` or a FIFO is refused at once instead of read forever).
    fn read_raw(&self) -> Result<Vec<u8>, WalletError> {
        let io = |e| WalletError::Io(self.path.clone(), e);
        let file = crate::fsutil::open_regular(&self.path).map_err(io)?;
        let raw = read_bounded(file, MAX_KEYFILE_BYTES).map_err(io)?;
        raw.ok_or_else(|| {
            WalletError::Keyfile(format!(
                "{} is larger than a keyfile ({MAX_KEYFILE_BYTES} bytes at most)",
                self.path.display()
            ))
        })
    }

    /// Loads the key ([`parse_keyfile`] of the file's bytes), asking `password` only
    /// when the file is encrypted.
    pub fn keypair(&self, password: &Password) -> Result<Keypair, WalletError> {
        parse_keyfile(&self.read_raw()?, &self.path, password)
    }

    /// Writes `keypair` (public fields only with `public_only`), `$NACL`-encrypted when
    /// `password` is given, with mode 0600. Refuses to replace a file unless `overwrite`.
    pub fn write(
        &self,
        keypair: &Keypair,
        public_only: bool,
        password: Option<&str>,
        overwrite: bool,
    ) -> Result<(), WalletError> {
        if self.path.exists() && !overwrite {
            return Err(WalletError::Exists(self.path.clone()));
        }
        let data = KeyfileData::from_keypair(keypair, public_only);
        let json = Zeroizing::new(serde_json::to_vec(&data).expect("keyfile JSON serialises"));
        let bytes = match password {
            Some(pw) => encrypt_nacl(&json, pw)?,
            None => json.to_vec(),
        };
        write_private(&self.path, &bytes)
    }
}

/// The key in keyfile bytes `raw` read from `path` (named in errors and used to find the
/// `BT_PW_...` variable): plain JSON, a bare `0x<hex public key>` (v6, public only), or
/// encrypted, then decrypted with `password` (asked only then). A damaged `$NACL` body
/// ([`nacl_damage`]) is reported before any password is asked for.
pub fn parse_keyfile(raw: &[u8], path: &Path, password: &Password) -> Result<Keypair, WalletError> {
    let plain = match detect_encryption(raw) {
        Encryption::None => Zeroizing::new(raw.to_vec()),
        Encryption::Nacl if let Some(reason) = nacl_damage(&raw[NACL_PREFIX.len()..]) => {
            return Err(WalletError::Damaged(format!(
                "{}: {reason}",
                path.display()
            )));
        }
        _ => decrypt(raw, &password.resolve(path)?)?,
    };
    let text = std::str::from_utf8(&plain)
        .map_err(|_| WalletError::Keyfile(format!("{}: not UTF-8", path.display())))?
        .trim();
    if let Some(h) = text.strip_prefix("0x").filter(|h| h.len() == 64) {
        let public: [u8; 32] = hex::decode(h)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| WalletError::Keyfile("bad public key hex".into()))?;
        return Keypair::from_public(&public);
    }
    let data: KeyfileData = serde_json::from_str(text)
        .map_err(|e| WalletError::Keyfile(format!("{}: {e}", path.display())))?;
    data.to_keypair()
}

/// Writes `bytes` to `path` with mode 0600 (creating parent directories), atomically and
/// durably, so a crash never leaves a half-written key.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    crate::fsutil::write_atomic(path, bytes, 0o600)
        .map_err(|e| WalletError::Io(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_password_roundtrip_and_name() {
        let var = password_env_var(Path::new("/root/.bittensor/wallets/w1/coldkey"));
        assert_eq!(var, "BT_PW__ROOT__BITTENSOR_WALLETS_W1_COLDKEY");
        let enc = encode_env_password(&var, "s3cret pw");
        assert_eq!(
            decode_env_password(&var, &enc).unwrap().as_str(),
            "s3cret pw"
        );
        assert!(decode_env_password(&var, "!!!").is_err());
    }

    #[test]
    fn detects_formats() {
        assert_eq!(detect_encryption(b"$NACLabc"), Encryption::Nacl);
        assert_eq!(
            detect_encryption(b"$ANSIBLE_VAULT;1.1;AES256\n"),
            Encryption::AnsibleVault
        );
        assert_eq!(detect_encryption(b"gAAAAABk"), Encryption::Fernet);
        assert_eq!(detect_encryption(b"{}"), Encryption::None);
    }

    #[test]
    fn truncated_or_garbled_files_are_errors() {
        assert!(matches!(
            decrypt(b"$NACLshort", "pw"),
            Err(WalletError::Damaged(_))
        ));
        assert!(decrypt(b"$ANSIBLE_VAULT;1.1;AES256\nzz", "pw").is_err());
        assert!(decrypt(b"$ANSIBLE_VAULT;9.9;XOR\n00", "pw").is_err());
        let missing = Keyfile::new("/nonexistent/neuron/keyfile");
        assert!(matches!(
            missing.keypair(&Password::Env),
            Err(WalletError::Io(..))
        ));
    }

    #[test]
    fn keyfile_data_roundtrip_and_precedence() {
        let k = Keypair::from_mnemonic(super::super::keypair::DEV_PHRASE, None).unwrap();
        let data = KeyfileData::from_keypair(&k, false);
        let json = serde_json::to_string(&data).unwrap();
        let back: KeyfileData = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_keypair().unwrap().public(), k.public());
        let public = KeyfileData::from_keypair(&k, true);
        assert!(public.private_key.is_none() && public.secret_seed.is_none());
        assert!(!public.to_keypair().unwrap().has_secret());
        let only_priv: KeyfileData =
            serde_json::from_value(serde_json::json!({ "privateKey": data.private_key })).unwrap();
        assert_eq!(only_priv.to_keypair().unwrap().public(), k.public());
        let bad: KeyfileData = serde_json::from_str(r#"{"secretSeed": "0xzz"}"#).unwrap();
        assert!(bad.to_keypair().is_err());
        assert!(KeyfileData::default().to_keypair().is_err());
    }

    #[test]
    fn damage_is_told_from_ciphertext() {
        let mut random = vec![0u8; 24 + 16 + 300];
        rand::fill(random.as_mut_slice());
        // Random bytes hold no 16-byte run and are not UTF-8 (with overwhelming odds).
        assert_eq!(nacl_damage(&random), None);
        let mut zeroed = random.clone();
        zeroed[100..132].fill(0);
        assert!(nacl_damage(&zeroed).unwrap().contains("16 equal bytes"));
        let text = "x".repeat(200);
        assert!(nacl_damage(text.as_bytes()).unwrap().contains("text"));
        assert!(nacl_damage(&random[..39]).unwrap().contains("cut short"));
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        for path in [zero, fifo] {
            let err = Keyfile::new(&path).keypair(&Password::Env).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b' '; MAX_KEYFILE_BYTES as usize + 1]).unwrap();
        let err = Keyfile::new(&big).keypair(&Password::Env).unwrap_err();
        assert!(err.to_string().contains("larger than a keyfile"), "{err}");
    }
}
