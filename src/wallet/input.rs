//! Secrets an operator supplies to regenerate a key: where a mnemonic comes from when it
//! is not on the command line (where `ps` and shell history would show it): a hidden
//! prompt on the terminal, a file, or standard input.

use std::io::Read;
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::WalletError;
use super::keyfile::read_bounded;

/// Most bytes read for a mnemonic (24 words of the longest BIP39 language fit in far
/// less).
pub const MAX_MNEMONIC_BYTES: u64 = 4096;

/// Where a mnemonic is read from.
#[derive(Debug, Clone)]
pub enum MnemonicInput {
    /// This file (a pipe such as `<(pass show key)` works too); `-` is standard input.
    File(PathBuf),
    /// Standard input, to its end.
    Stdin,
    /// The terminal, with this prompt and without echo.
    Prompt(String),
}

impl MnemonicInput {
    /// Reads the mnemonic: at most [`MAX_MNEMONIC_BYTES`], words separated by any
    /// whitespace (newlines included), joined by single spaces.
    pub fn read(&self) -> Result<Zeroizing<String>, WalletError> {
        let text = match self {
            MnemonicInput::File(path) if path.as_os_str() == "-" => read_stdin()?,
            MnemonicInput::File(path) => {
                let file =
                    std::fs::File::open(path).map_err(|e| WalletError::Io(path.clone(), e))?;
                bounded_text(file, &path.display().to_string())?
            }
            MnemonicInput::Stdin => read_stdin()?,
            MnemonicInput::Prompt(prompt) => Zeroizing::new(
                rpassword::prompt_password(prompt)
                    .map_err(|e| WalletError::Mnemonic(format!("cannot read it: {e}")))?,
            ),
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            return Err(WalletError::Mnemonic("no words given".into()));
        }
        Ok(Zeroizing::new(words.join(" ")))
    }
}

fn read_stdin() -> Result<Zeroizing<String>, WalletError> {
    bounded_text(std::io::stdin().lock(), "standard input")
}

fn bounded_text(reader: impl Read, source: &str) -> Result<Zeroizing<String>, WalletError> {
    let bytes = read_bounded(reader, MAX_MNEMONIC_BYTES)
        .map_err(|e| WalletError::Mnemonic(format!("cannot read {source}: {e}")))?
        .ok_or_else(|| {
            WalletError::Mnemonic(format!(
                "{source} holds more than {MAX_MNEMONIC_BYTES} bytes: not a mnemonic"
            ))
        })?;
    let bytes = Zeroizing::new(bytes);
    std::str::from_utf8(&bytes)
        .map(|s| Zeroizing::new(s.to_owned()))
        .map_err(|_| WalletError::Mnemonic(format!("{source} is not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_whitespace_normalised_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("words");
        std::fs::write(&path, "  alpha\nbeta \t gamma\n").unwrap();
        let read = MnemonicInput::File(path.clone()).read().unwrap();
        assert_eq!(read.as_str(), "alpha beta gamma");
        std::fs::write(&path, "word ".repeat(1000)).unwrap();
        let err = MnemonicInput::File(path.clone()).read().unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(MnemonicInput::File(path).read().is_err());
    }
}
