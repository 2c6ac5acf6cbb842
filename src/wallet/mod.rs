//! Bittensor-compatible wallets: the SDK's directory layout and keyfiles, mnemonics,
//! `$NACL` encryption and sr25519 keys.
//!
//! ```text
//! <path>/<wallet>/coldkey            (usually $NACL-encrypted)
//! <path>/<wallet>/coldkeypub.txt
//! <path>/<wallet>/hotkeys/<hotkey>
//! <path>/<wallet>/hotkeys/<hotkey>pub.txt
//! ```
//!
//! [`Wallet::from_config`] selects the configured wallet and [`Wallet::signer`] loads the
//! key that signs (or a development key given by secret URI).

mod input;
mod keyfile;
mod keypair;

use std::path::{Path, PathBuf};

use crate::chain::subtensor::SignerRole;
use crate::config::WalletConfig;

pub use input::{MAX_MNEMONIC_BYTES, MnemonicInput};
pub use keyfile::{
    Encryption, Keyfile, KeyfileData, MAX_KEYFILE_BYTES, NACL_PREFIX, NACL_SALT, Password,
    decode_env_password, decrypt, detect_encryption, encode_env_password, encrypt_nacl,
    nacl_damage, parse_keyfile, password_env_var,
};
pub use keypair::{
    DEV_PHRASE, Keypair, SIGNING_CONTEXT, SS58_FORMAT, ss58_decode, ss58_encode, verify,
};

/// Errors from wallets, keyfiles and keys.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// Reading or writing a file failed.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// A keyfile exists and overwriting was not asked for.
    #[error("{0} already exists (use --overwrite to replace it)")]
    Exists(PathBuf),
    /// A keyfile's content is malformed.
    #[error("bad keyfile: {0}")]
    Keyfile(String),
    /// The password does not decrypt the keyfile. An encrypted keyfile whose bytes were
    /// altered in a way [`WalletError::Damaged`] does not recognise fails the same way:
    /// authenticated encryption cannot tell the two apart.
    #[error(
        "wrong password (decryption failed; if the password is right, the file was \
         altered: restore it from a backup or regenerate the key from its mnemonic)"
    )]
    WrongPassword,
    /// An encrypted keyfile is damaged (cut short, zero-filled, rewritten as text): no
    /// password opens it, so none is blamed.
    #[error("damaged keyfile: {0}")]
    Damaged(String),
    /// No usable password was available.
    #[error("password: {0}")]
    Password(String),
    /// A cryptographic primitive failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// A key's bytes are invalid.
    #[error("invalid key: {0}")]
    Key(String),
    /// A mnemonic is invalid.
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    /// A secret URI is invalid.
    #[error("invalid secret URI: {0}")]
    Uri(String),
    /// An SS58 address is invalid.
    #[error("invalid SS58 address {0}")]
    Ss58(String),
    /// The operation needs a secret key but only the public key is known.
    #[error("this key has no secret (public key only)")]
    NoSecret,
    /// The wallet has no key file for the role asked for.
    #[error("wallet {wallet:?} has no {role}: {} does not exist", path.display())]
    MissingKey {
        /// The wallet's name.
        wallet: String,
        /// `coldkey` or `hotkey`.
        role: &'static str,
        /// The key file that is missing.
        path: PathBuf,
    },
}

/// `coldkey` or `hotkey`: how a role's key is named in files, flags and messages.
pub fn role_name(role: SignerRole) -> &'static str {
    match role {
        SignerRole::Coldkey => "coldkey",
        SignerRole::Hotkey => "hotkey",
    }
}

/// Expands a leading `~/` to `$HOME`, like the SDK's `os.path.expanduser`.
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// A named wallet (one coldkey) with one selected hotkey, under a wallets directory.
#[derive(Debug, Clone)]
pub struct Wallet {
    path: PathBuf,
    name: String,
    hotkey: String,
}

impl Wallet {
    /// The wallet `name` with hotkey `hotkey` under `path` (`~` is expanded).
    pub fn new(path: impl AsRef<Path>, name: impl Into<String>, hotkey: impl Into<String>) -> Self {
        Self {
            path: expand_home(path.as_ref()),
            name: name.into(),
            hotkey: hotkey.into(),
        }
    }

    /// The wallet a configuration selects (`wallet.path`, `wallet.name`,
    /// `wallet.hotkey`).
    pub fn from_config(config: &WalletConfig) -> Self {
        Self::new(&config.path, &config.name, &config.hotkey)
    }

    /// The key that signs as `role`: the secret URI `uri` when given (a development key
    /// such as `//Alice`, or `<mnemonic>//hard/soft`), else this wallet's coldkey or
    /// hotkey, decrypted with `password` when encrypted. A missing key file is
    /// [`WalletError::MissingKey`].
    pub fn signer(
        &self,
        role: SignerRole,
        uri: Option<&str>,
        password: &Password,
    ) -> Result<Keypair, WalletError> {
        if let Some(uri) = uri {
            return Keypair::from_uri(uri);
        }
        let file = self.key_file(role);
        self.ensure_exists(role, file.path())?;
        file.keypair(password)
    }

    /// The SS58 address of the key for `role` (of `uri` when given), read from the
    /// wallet's public files without unlocking anything.
    pub fn address(&self, role: SignerRole, uri: Option<&str>) -> Result<String, WalletError> {
        if let Some(uri) = uri {
            return Ok(Keypair::from_uri(uri)?.ss58());
        }
        let (file, key) = match role {
            SignerRole::Coldkey => (self.coldkeypub_file(), self.coldkeypub()),
            SignerRole::Hotkey => (self.hotkey_file(), self.hotkeypub()),
        };
        let has_hotkeypub = role == SignerRole::Hotkey && self.hotkeypub_file().exists();
        if !has_hotkeypub {
            self.ensure_exists(role, file.path())?;
        }
        Ok(key?.ss58())
    }

    /// The secret key file of `role`.
    pub fn key_file(&self, role: SignerRole) -> Keyfile {
        match role {
            SignerRole::Coldkey => self.coldkey_file(),
            SignerRole::Hotkey => self.hotkey_file(),
        }
    }

    fn ensure_exists(&self, role: SignerRole, file: &Path) -> Result<(), WalletError> {
        // Present but not a regular file (a FIFO, a device) is left to the reader to
        // refuse with that reason.
        if file.exists() {
            return Ok(());
        }
        Err(WalletError::MissingKey {
            wallet: self.name.clone(),
            role: role_name(role),
            path: file.to_path_buf(),
        })
    }

    /// The wallets directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wallet's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The selected hotkey's name.
    pub fn hotkey_name(&self) -> &str {
        &self.hotkey
    }

    /// This wallet's directory.
    pub fn dir(&self) -> PathBuf {
        self.path.join(&self.name)
    }

    /// The coldkey file.
    pub fn coldkey_file(&self) -> Keyfile {
        Keyfile::new(self.dir().join("coldkey"))
    }

    /// The coldkey's public file, `coldkeypub.txt`.
    pub fn coldkeypub_file(&self) -> Keyfile {
        Keyfile::new(self.dir().join("coldkeypub.txt"))
    }

    /// The selected hotkey's file.
    pub fn hotkey_file(&self) -> Keyfile {
        Keyfile::new(self.dir().join("hotkeys").join(&self.hotkey))
    }

    /// The selected hotkey's public file, `hotkeys/<name>pub.txt`.
    pub fn hotkeypub_file(&self) -> Keyfile {
        Keyfile::new(
            self.dir()
                .join("hotkeys")
                .join(format!("{}pub.txt", self.hotkey)),
        )
    }

    /// Loads the hotkey (decrypting with `password` if the file is encrypted).
    pub fn hotkey(&self, password: &Password) -> Result<Keypair, WalletError> {
        self.hotkey_file().keypair(password)
    }

    /// Loads the coldkey (decrypting with `password` if the file is encrypted).
    pub fn coldkey(&self, password: &Password) -> Result<Keypair, WalletError> {
        self.coldkey_file().keypair(password)
    }

    /// Loads the coldkey's public key from `coldkeypub.txt`, without any password.
    pub fn coldkeypub(&self) -> Result<Keypair, WalletError> {
        self.coldkeypub_file().keypair(&Password::Env)
    }

    /// Loads the hotkey's public key: `hotkeys/<name>pub.txt` when present, else the
    /// hotkey file itself (older SDKs wrote no pub file; hotkeys are rarely encrypted).
    pub fn hotkeypub(&self) -> Result<Keypair, WalletError> {
        let public = self.hotkeypub_file();
        if public.exists() {
            public.keypair(&Password::Env)
        } else {
            self.hotkey(&Password::Env)
        }
    }

    /// Writes `keypair` as the coldkey (encrypted with `password` if given) and its
    /// `coldkeypub.txt`.
    pub fn set_coldkey(
        &self,
        keypair: &Keypair,
        password: Option<&str>,
        overwrite: bool,
    ) -> Result<(), WalletError> {
        self.coldkey_file()
            .write(keypair, false, password, overwrite)?;
        self.set_coldkeypub(keypair, overwrite)
    }

    /// Writes only `coldkeypub.txt` for `keypair`'s public key.
    pub fn set_coldkeypub(&self, keypair: &Keypair, overwrite: bool) -> Result<(), WalletError> {
        self.coldkeypub_file().write(keypair, true, None, overwrite)
    }

    /// Writes `keypair` as the selected hotkey (encrypted with `password` if given) and
    /// its `<name>pub.txt`.
    pub fn set_hotkey(
        &self,
        keypair: &Keypair,
        password: Option<&str>,
        overwrite: bool,
    ) -> Result<(), WalletError> {
        self.hotkey_file()
            .write(keypair, false, password, overwrite)?;
        self.hotkeypub_file().write(keypair, true, None, overwrite)
    }

    /// Wallet names under `path` with their hotkey names, sorted.
    pub fn list(path: impl AsRef<Path>) -> Result<Vec<(String, Vec<String>)>, WalletError> {
        let path = expand_home(path.as_ref());
        let names = |dir: &Path| -> Result<Vec<String>, WalletError> {
            let mut out = Vec::new();
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    for entry in entries {
                        let entry = entry.map_err(|e| WalletError::Io(dir.to_path_buf(), e))?;
                        out.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalletError::Io(dir.to_path_buf(), e)),
            }
            out.sort();
            Ok(out)
        };
        let mut wallets = Vec::new();
        for name in names(&path)? {
            if !path.join(&name).is_dir() {
                continue;
            }
            let hotkeys = names(&path.join(&name).join("hotkeys"))?
                .into_iter()
                .filter(|h| !h.ends_with("pub.txt"))
                .collect();
            wallets.push((name, hotkeys));
        }
        Ok(wallets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_roundtrip_unencrypted() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wallet::new(dir.path(), "w1", "h1");
        let cold = Keypair::from_uri("//Alice").unwrap();
        let hot = Keypair::from_mnemonic(DEV_PHRASE, None).unwrap();
        w.set_coldkey(&cold, None, false).unwrap();
        w.set_hotkey(&hot, None, false).unwrap();
        for f in [
            "w1/coldkey",
            "w1/coldkeypub.txt",
            "w1/hotkeys/h1",
            "w1/hotkeys/h1pub.txt",
        ] {
            let meta = std::fs::metadata(dir.path().join(f)).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
            }
            assert!(meta.is_file());
        }
        assert_eq!(w.coldkey(&Password::Env).unwrap().ss58(), cold.ss58());
        assert_eq!(w.coldkeypub().unwrap().ss58(), cold.ss58());
        assert!(!w.coldkeypub().unwrap().has_secret());
        assert_eq!(w.hotkey(&Password::Env).unwrap().ss58(), hot.ss58());
        assert_eq!(w.hotkeypub().unwrap().ss58(), hot.ss58());
        assert!(matches!(
            w.set_hotkey(&hot, None, false),
            Err(WalletError::Exists(_))
        ));
        w.set_hotkey(&cold, None, true).unwrap();
        assert_eq!(w.hotkey(&Password::Env).unwrap().ss58(), cold.ss58());
        let pub_json = std::fs::read_to_string(dir.path().join("w1/coldkeypub.txt")).unwrap();
        assert!(!pub_json.contains("privateKey") && !pub_json.contains("secret"));
        assert_eq!(
            Wallet::list(dir.path()).unwrap(),
            vec![("w1".into(), vec!["h1".into()])]
        );
        assert!(Wallet::list(dir.path().join("missing")).unwrap().is_empty());
    }
}
