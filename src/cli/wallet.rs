//! `neuron wallet ...`: create, regenerate, list and inspect bittensor wallets; sign and
//! verify messages. Files and formats are the SDK's (see `neuron::wallet`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use neuron::wallet::{Keypair, MnemonicInput, Password, Wallet, password_env_var};

use super::flags;

/// `neuron wallet`: the wallet to act on and what to do.
#[derive(Debug, Args)]
pub struct WalletArgs {
    /// `--config` and the wallet (`--wallet.*`).
    #[command(flatten)]
    wallet: flags::WalletConfigArgs,
    #[command(subcommand)]
    command: WalletCommand,
}

/// Key material for regen commands (at most one; with none, the mnemonic is read from
/// a hidden prompt on a terminal, else from standard input).
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
struct KeySource {
    /// BIP39 mnemonic (12–24 words, quoted). Visible to `ps` and kept in shell history:
    /// prefer --mnemonic-file, standard input or the prompt.
    #[arg(long)]
    mnemonic: Option<String>,
    /// Read the mnemonic from this file (`-`: standard input).
    #[arg(long, value_name = "PATH")]
    mnemonic_file: Option<std::path::PathBuf>,
    /// 32-byte mini-secret seed, 0x-hex.
    #[arg(long)]
    seed: Option<String>,
    /// Substrate secret URI, e.g. //Alice.
    #[arg(long)]
    uri: Option<String>,
}

/// Flags for commands that write keys.
#[derive(Debug, Args)]
struct WriteArgs {
    /// Do not encrypt the key (hotkeys are unencrypted unless --use-password).
    #[arg(long)]
    no_password: bool,
    /// Encrypt the key with a password ($NACL), for hotkeys.
    #[arg(long, conflicts_with = "no_password")]
    use_password: bool,
    /// Replace existing key files.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Create a new coldkey (encrypted unless --no-password) and print its mnemonic.
    NewColdkey {
        /// Mnemonic length: 12, 15, 18, 21 or 24.
        #[arg(long = "n-words", default_value_t = 12)]
        n_words: usize,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Create a new hotkey and print its mnemonic.
    NewHotkey {
        /// Mnemonic length: 12, 15, 18, 21 or 24.
        #[arg(long = "n-words", default_value_t = 12)]
        n_words: usize,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Recreate the coldkey from a mnemonic (prompted for, or read from a file or standard
    /// input, when not given), seed or URI.
    RegenColdkey {
        #[command(flatten)]
        key: KeySource,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Recreate the hotkey from a mnemonic (prompted for, or read from a file or standard
    /// input, when not given), seed or URI.
    RegenHotkey {
        #[command(flatten)]
        key: KeySource,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Recreate coldkeypub.txt from an SS58 address or public key.
    RegenColdkeypub {
        /// SS58 address.
        #[arg(long, conflicts_with = "public_key")]
        ss58: Option<String>,
        /// 0x-hex public key.
        #[arg(long)]
        public_key: Option<String>,
        /// Replace an existing file.
        #[arg(long)]
        overwrite: bool,
    },
    /// List wallets and their hotkeys with addresses.
    List,
    /// Show the selected wallet's coldkey and hotkey addresses.
    Show,
    /// Sign a message with the coldkey (or --use-hotkey); prints 0x-hex.
    Sign {
        /// The message (UTF-8).
        #[arg(long)]
        message: String,
        /// Sign with the hotkey instead of the coldkey.
        #[arg(long)]
        use_hotkey: bool,
    },
    /// Verify a 0x-hex signature over a message by an SS58 address or public key.
    Verify {
        /// The message (UTF-8).
        #[arg(long)]
        message: String,
        /// The signature, 0x-hex.
        #[arg(long)]
        signature: String,
        /// Signer (SS58 or 0x-hex public key); default: the wallet's coldkey.
        #[arg(long)]
        address: Option<String>,
    },
}

/// Runs `neuron wallet ...`.
pub fn run(args: WalletArgs) -> Result<()> {
    let config = args.wallet.load()?;
    let wallet = Wallet::from_config(&config.wallet);
    let path = wallet.path().to_path_buf();
    match args.command {
        WalletCommand::NewColdkey { n_words, write } => {
            let key = Keypair::generate(n_words)?;
            store(&wallet, &key, true, &write)?;
            print_mnemonic(&key);
        }
        WalletCommand::NewHotkey { n_words, write } => {
            let key = Keypair::generate(n_words)?;
            store(&wallet, &key, false, &write)?;
            print_mnemonic(&key);
        }
        WalletCommand::RegenColdkey { key, write } => {
            store(&wallet, &key_from(&key)?, true, &write)?
        }
        WalletCommand::RegenHotkey { key, write } => {
            store(&wallet, &key_from(&key)?, false, &write)?
        }
        WalletCommand::RegenColdkeypub {
            ss58,
            public_key,
            overwrite,
        } => {
            let key = match (ss58, public_key) {
                (Some(a), _) => Keypair::from_ss58(&a)?,
                (None, Some(h)) => {
                    let bytes: [u8; 32] = hex::decode(h.trim_start_matches("0x"))
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .context("--public-key must be 32 bytes of hex")?;
                    Keypair::from_public(&bytes)?
                }
                (None, None) => bail!("give --ss58 or --public-key"),
            };
            wallet.set_coldkeypub(&key, overwrite)?;
            println!("coldkeypub {}", key.ss58());
        }
        WalletCommand::List => {
            let wallets = Wallet::list(&path)?;
            if wallets.is_empty() {
                println!("no wallets under {}", path.display());
            }
            for (name, hotkeys) in wallets {
                let w = Wallet::new(&path, &name, "default");
                let cold = w
                    .coldkeypub()
                    .map(|k| k.ss58())
                    .unwrap_or_else(|_| "?".into());
                println!("{name} (coldkey {cold})");
                for h in hotkeys {
                    let hw = Wallet::new(&path, &name, &h);
                    let hot = hw
                        .hotkeypub()
                        .map(|k| k.ss58())
                        .unwrap_or_else(|_| "?".into());
                    println!("  {h} {hot}");
                }
            }
        }
        WalletCommand::Show => {
            println!("wallet   {}", wallet.dir().display());
            match wallet.coldkeypub() {
                Ok(k) => println!("coldkey  {}", k.ss58()),
                Err(e) => println!("coldkey  ({e})"),
            }
            match wallet.hotkeypub() {
                Ok(k) => println!("hotkey   {} {}", wallet.hotkey_name(), k.ss58()),
                Err(e) => println!("hotkey   {} ({e})", wallet.hotkey_name()),
            }
        }
        WalletCommand::Sign {
            message,
            use_hotkey,
        } => {
            let key = if use_hotkey {
                wallet.hotkey(&Password::EnvOrPrompt)?
            } else {
                wallet.coldkey(&Password::EnvOrPrompt)?
            };
            println!("0x{}", hex::encode(key.try_sign(message.as_bytes())?));
        }
        WalletCommand::Verify {
            message,
            signature,
            address,
        } => {
            let signer = match address {
                Some(a) => a,
                None => wallet.coldkeypub()?.ss58(),
            };
            let sig =
                hex::decode(signature.trim_start_matches("0x")).context("signature is not hex")?;
            if neuron::wallet::verify(&signer, message.as_bytes(), &sig) {
                println!("valid");
            } else {
                bail!("signature is NOT valid for {signer}");
            }
        }
    }
    Ok(())
}

fn key_from(src: &KeySource) -> Result<Keypair> {
    use std::io::IsTerminal;
    Ok(match (&src.mnemonic, &src.seed, &src.uri) {
        (Some(m), _, _) => {
            tracing::warn!("--mnemonic is visible to other users (ps) and in shell history");
            Keypair::from_mnemonic(m, None)?
        }
        (_, Some(s), _) => {
            let seed: [u8; 32] = hex::decode(s.trim_start_matches("0x"))
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("--seed must be 32 bytes of hex")?;
            Keypair::from_seed(&seed)?
        }
        (_, _, Some(u)) => Keypair::from_uri(u)?,
        (None, None, None) => {
            let input = match &src.mnemonic_file {
                Some(path) => MnemonicInput::File(path.clone()),
                None if std::io::stdin().is_terminal() => {
                    MnemonicInput::Prompt("Mnemonic (input hidden): ".into())
                }
                None => MnemonicInput::Stdin,
            };
            Keypair::from_mnemonic(&input.read()?, None)?
        }
    })
}

/// Writes a key; coldkeys are encrypted unless --no-password, hotkeys only with
/// --use-password. The password comes from the keyfile's BT_PW_... variable or a prompt.
fn store(wallet: &Wallet, key: &Keypair, coldkey: bool, write: &WriteArgs) -> Result<()> {
    let file = if coldkey {
        wallet.coldkey_file()
    } else {
        wallet.hotkey_file()
    };
    let encrypt = if coldkey {
        !write.no_password
    } else {
        write.use_password
    };
    let password = if encrypt {
        Some(new_password(file.path())?)
    } else {
        None
    };
    let pw = password.as_deref().map(String::as_str);
    if coldkey {
        wallet.set_coldkey(key, pw, write.overwrite)?;
    } else {
        wallet.set_hotkey(key, pw, write.overwrite)?;
    }
    let kind = if coldkey { "coldkey" } else { "hotkey" };
    let how = if encrypt {
        "encrypted ($NACL)"
    } else {
        "unencrypted"
    };
    println!(
        "{kind} {} written to {} ({how})",
        key.ss58(),
        file.path().display()
    );
    Ok(())
}

fn new_password(keyfile: &std::path::Path) -> Result<zeroize::Zeroizing<String>> {
    let var = password_env_var(keyfile);
    if std::env::var_os(&var).is_some() {
        return Ok(Password::Env.resolve(keyfile)?);
    }
    let first = zeroize::Zeroizing::new(rpassword::prompt_password(format!(
        "Password to encrypt {} (or set {var}): ",
        keyfile.display()
    ))?);
    let again = zeroize::Zeroizing::new(rpassword::prompt_password("Retype the password: ")?);
    if *first != *again {
        bail!("passwords do not match");
    }
    if first.is_empty() {
        bail!("empty password: use --no-password to store the key unencrypted");
    }
    Ok(first)
}

fn print_mnemonic(key: &Keypair) {
    if let Some(m) = key.mnemonic() {
        println!("mnemonic (write it down; it is the only way to recover this key):\n  {m}");
    }
}
