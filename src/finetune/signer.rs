//! A [`Signer`] from a secret URI (`//Alice`, a mnemonic, `0x…` seed) for the finetune
//! commands, built on `subxt-signer`'s sr25519 keys.

use std::str::FromStr;

use subxt_signer::SecretUri;
use subxt_signer::sr25519::Keypair;

use crate::chain::{ChainError, Signer};

use super::FinetuneError;

/// An sr25519 keypair derived from a secret URI.
#[derive(Clone)]
pub struct UriSigner {
    pair: Keypair,
}

impl std::fmt::Debug for UriSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UriSigner")
            .field("ss58", &self.ss58())
            .finish()
    }
}

impl UriSigner {
    /// Parses `uri` (`//Alice`, `mnemonic//hard/soft`, `0x…` seed) into a keypair.
    pub fn from_uri(uri: &str) -> Result<Self, FinetuneError> {
        let secret = SecretUri::from_str(uri).map_err(|e| FinetuneError::BadKey(e.to_string()))?;
        let pair = Keypair::from_uri(&secret).map_err(|e| FinetuneError::BadKey(e.to_string()))?;
        Ok(Self { pair })
    }
}

impl Signer for UriSigner {
    fn ss58(&self) -> String {
        self.pair.public_key().to_account_id().to_string()
    }

    fn public(&self) -> [u8; 32] {
        self.pair.public_key().0
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], ChainError> {
        Ok(self.pair.sign(message).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alice_has_the_well_known_address() {
        let alice = UriSigner::from_uri("//Alice").unwrap();
        assert_eq!(
            alice.ss58(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
        assert!(UriSigner::from_uri("not a uri at all //").is_err());
    }
}
