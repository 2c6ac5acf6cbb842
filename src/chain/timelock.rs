//! Timelock encryption of weights (commit-reveal v4), as the bittensor SDK does it with
//! `bittensor-drand`: the SCALE payload [`WeightsPayload`] is encrypted with the
//! `timelock` crate (Boneh–Franklin IBE over BLS12-381 in drand quicknet's "tiny BLS"
//! setting: signatures in G1, public key in G2, then AES-GCM) to the identity
//! `sha256(round as u64 big-endian)` of a [`Beacon`] round. Whoever holds the beacon's
//! signature of that round (drand publishes it when the round comes) can decrypt.
//!
//! [`Beacon::quicknet`] is the League of Entropy's quicknet that subtensor reads;
//! [`BeaconKey`] is a beacon of our own (the embedded chain runs one) that signs rounds
//! with real BLS signatures over the same scheme, so the same code encrypts to both.
//! [`reveal_round`] picks the round as `bittensor_drand.get_encrypted_commit_v2` does,
//! from the subnet's [`EpochSchedule`].
//!
//! The ciphertext bytes are those the chain and `bittensor-drand` read: the layout of
//! the `tle` crate revision bittensor-drand builds on, where the IBE header's `v` and
//! `w` are length-prefixed vectors ([`WireCiphertext`]); the maintained `timelock`
//! crate keeps them as fixed arrays, so [`Beacon::encrypt`] and [`decrypt`] convert.
//!
//! No pairing code lives here: the crates `timelock` and arkworks do the curve work.

use std::ops::RangeInclusive;

use ark_ec::PrimeGroup;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use parity_scale_codec::{Decode, Encode};
use sha2::{Digest, Sha256};
use thiserror::Error;
use timelock::block_ciphers::AESGCMBlockCipherProvider;
use timelock::engines::EngineBLS;
use timelock::engines::drand::TinyBLS381;
use timelock::ibe::fullident::{Ciphertext as IbeCiphertext, Identity};
use timelock::tlock::{TLECiphertext, tld, tle};

/// Bytes of a compressed beacon public key (a G2 point).
pub const PUBLIC_KEY_BYTES: usize = 96;
/// Bytes of a compressed round signature (a G1 point).
pub const SIGNATURE_BYTES: usize = 48;

/// drand quicknet's public key (hex), as published in its chain info
/// (`https://api.drand.sh/52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971/info`).
pub const QUICKNET_PUBLIC_KEY: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
/// drand quicknet's genesis time (Unix seconds).
pub const QUICKNET_GENESIS_SECS: u64 = 1_692_803_367;
/// drand quicknet's round period (seconds).
pub const QUICKNET_PERIOD_SECS: u64 = 3;

/// Blocks the SDK adds after the predicted reveal block, so the round's pulse has
/// reached the chain by then (bittensor-drand's `SECURITY_BLOCK_OFFSET`).
pub const REVEAL_SAFETY_BLOCKS: u64 = 3;
/// Longest tempo the chain allows (blocks); bounds the reveal-block search.
pub const MAX_TEMPO: u64 = 50_400;

/// Errors of timelock encryption and decryption.
#[derive(Debug, Error)]
pub enum TimelockError {
    /// A key, signature or ciphertext is not a valid encoding.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// Encryption failed.
    #[error("timelock encryption failed: {0}")]
    Encrypt(String),
    /// The signature does not open the ciphertext (wrong round or wrong beacon).
    #[error("timelock decryption failed: {0}")]
    Decrypt(String),
    /// The reveal block could not be predicted.
    #[error("cannot predict the reveal block: {0}")]
    Schedule(String),
}

fn malformed(
    what: &'static str,
) -> impl FnOnce(ark_serialize::SerializationError) -> TimelockError {
    move |e| TimelockError::Malformed {
        what,
        reason: e.to_string(),
    }
}

type PublicKeyGroup = <TinyBLS381 as EngineBLS>::PublicKeyGroup;
type SignatureGroup = <TinyBLS381 as EngineBLS>::SignatureGroup;
type Scalar = <TinyBLS381 as EngineBLS>::Scalar;

/// A randomness beacon that timelocked commits are encrypted to: its public key and
/// its round clock (round `r` is published at `genesis_ms + r * period_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// Compressed G2 public key.
    pub public_key: Vec<u8>,
    /// Unix time of round 0, in milliseconds.
    pub genesis_ms: u64,
    /// Time between rounds, in milliseconds (at least 1).
    pub period_ms: u64,
}

impl Beacon {
    /// drand quicknet, the beacon subtensor reveals timelocked commits with.
    pub fn quicknet() -> Self {
        Self {
            public_key: hex::decode(QUICKNET_PUBLIC_KEY).expect("quicknet key is hex"),
            genesis_ms: QUICKNET_GENESIS_SECS * 1000,
            period_ms: QUICKNET_PERIOD_SECS * 1000,
        }
    }

    /// The latest round published at Unix time `now_ms` (0 before genesis).
    pub fn round_at(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.genesis_ms) / self.period_ms.max(1)
    }

    /// Encrypts `plaintext` so that only the signature of `round` opens it; returns the
    /// compressed ciphertext (the bytes `commit_timelocked_*` carries).
    pub fn encrypt(&self, round: u64, plaintext: &[u8]) -> Result<Vec<u8>, TimelockError> {
        let key = PublicKeyGroup::deserialize_compressed(&self.public_key[..])
            .map_err(malformed("beacon public key"))?;
        let mut secret = [0u8; 32];
        rand_core_06::RngCore::fill_bytes(&mut rand_core_06::OsRng, &mut secret);
        let ciphertext = tle::<TinyBLS381, AESGCMBlockCipherProvider, _>(
            key,
            secret,
            plaintext,
            round_identity(round),
            rand_core_06::OsRng,
        )
        .map_err(|e| TimelockError::Encrypt(format!("{e:?}")))?;
        let wire = WireCiphertext {
            u: ciphertext.header.u,
            v: ciphertext.header.v.to_vec(),
            w: ciphertext.header.w.to_vec(),
            body: ciphertext.body,
            cipher_suite: ciphertext.cipher_suite,
        };
        let mut out = Vec::new();
        wire.serialize_compressed(&mut out)
            .map_err(|e| TimelockError::Encrypt(e.to_string()))?;
        Ok(out)
    }

    /// Whether `signature` is this beacon's signature of `round` (a BLS pairing check).
    pub fn verify(&self, round: u64, signature: &[u8]) -> Result<bool, TimelockError> {
        let key = PublicKeyGroup::deserialize_compressed(&self.public_key[..])
            .map_err(malformed("beacon public key"))?;
        let sig = SignatureGroup::deserialize_compressed(signature)
            .map_err(malformed("round signature"))?;
        let message = round_identity(round).public::<TinyBLS381>();
        Ok(TinyBLS381::pairing(key, message)
            == TinyBLS381::pairing(PublicKeyGroup::generator(), sig))
    }
}

/// Opens a ciphertext made by [`Beacon::encrypt`] (or by `bittensor_drand`) with the
/// beacon's signature of its round.
pub fn decrypt(ciphertext: &[u8], signature: &[u8]) -> Result<Vec<u8>, TimelockError> {
    let wire = WireCiphertext::deserialize_compressed(ciphertext)
        .map_err(malformed("timelock ciphertext"))?;
    let hash = |field: Vec<u8>| {
        <[u8; 32]>::try_from(field).map_err(|v| TimelockError::Malformed {
            what: "timelock ciphertext",
            reason: format!("an IBE header field of {} bytes, not 32", v.len()),
        })
    };
    let ciphertext = TLECiphertext::<TinyBLS381> {
        header: IbeCiphertext {
            u: wire.u,
            v: hash(wire.v)?,
            w: hash(wire.w)?,
        },
        body: wire.body,
        cipher_suite: wire.cipher_suite,
    };
    let sig =
        SignatureGroup::deserialize_compressed(signature).map_err(malformed("round signature"))?;
    tld::<TinyBLS381, AESGCMBlockCipherProvider>(ciphertext, sig)
        .map_err(|e| TimelockError::Decrypt(format!("{e:?}")))
}

/// A timelock ciphertext as the chain and bittensor-drand (de)serialise it (arkworks
/// compressed): the IBE header `u` (G2), `v`, `w` (32 bytes each, length-prefixed),
/// then the AES-GCM body and the cipher suite name (`AES_GCM_`).
#[derive(CanonicalSerialize, CanonicalDeserialize)]
struct WireCiphertext {
    u: PublicKeyGroup,
    v: Vec<u8>,
    w: Vec<u8>,
    body: Vec<u8>,
    cipher_suite: Vec<u8>,
}

/// The IBE identity of a round: `sha256(round as u64 big-endian)`, as drand signs it.
fn round_identity(round: u64) -> Identity {
    Identity::new(b"", &Sha256::digest(round.to_be_bytes()))
}

/// A beacon's secret key: signs rounds so that ciphertexts to them open. The embedded
/// chain keeps one and signs each round as its blocks pass.
#[derive(Clone)]
pub struct BeaconKey {
    secret: Scalar,
}

impl std::fmt::Debug for BeaconKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeaconKey").finish_non_exhaustive()
    }
}

impl BeaconKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            secret: TinyBLS381::generate(&mut rand_core_06::OsRng),
        }
    }

    /// The key from its [`Self::to_bytes`] form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TimelockError> {
        Ok(Self {
            secret: Scalar::deserialize_compressed(bytes)
                .map_err(malformed("beacon secret key"))?,
        })
    }

    /// The secret scalar, serialised (keep it private).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.secret
            .serialize_compressed(&mut out)
            .expect("a scalar serialises");
        out
    }

    /// The compressed G2 public key.
    pub fn public_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PUBLIC_KEY_BYTES);
        (PublicKeyGroup::generator() * self.secret)
            .serialize_compressed(&mut out)
            .expect("a point serialises");
        out
    }

    /// The BLS signature of `round` (compressed G1), the key that opens ciphertexts to it.
    pub fn sign_round(&self, round: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNATURE_BYTES);
        round_identity(round)
            .extract::<TinyBLS381>(self.secret)
            .0
            .serialize_compressed(&mut out)
            .expect("a point serialises");
        out
    }
}

/// What a timelocked weights commit hides, SCALE-encoded as the chain decodes it:
/// `{hotkey: Vec<u8>, uids: Vec<u16>, values: Vec<u16>, version_key: u64}`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WeightsPayload {
    /// The committing hotkey's public key (32 bytes).
    pub hotkey: Vec<u8>,
    /// Destination uids.
    pub uids: Vec<u16>,
    /// u16 weights, one per uid.
    pub values: Vec<u16>,
    /// Weights version key.
    pub version_key: u64,
}

/// A subnet's epoch state at a block, as the chain's epoch scheduler keeps it (the
/// inputs of `bittensor_drand.get_encrypted_commit_v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EpochSchedule {
    /// Block the last epoch ran at.
    pub last_epoch_block: u64,
    /// Block of an owner-triggered epoch still to run (0 when none).
    pub pending_epoch_at: u64,
    /// Epochs run so far.
    pub epoch_index: u64,
    /// Blocks between epochs.
    pub tempo: u64,
    /// Blocks since the last epoch.
    pub blocks_since_last_step: u64,
    /// The block this state was read at.
    pub current_block: u64,
}

impl EpochSchedule {
    /// Whether an epoch runs at `block` after this state.
    fn epoch_runs_at(&self, block: u64) -> bool {
        self.tempo != 0
            && ((self.pending_epoch_at > 0 && block >= self.pending_epoch_at)
                || self.blocks_since_last_step > MAX_TEMPO
                || block.saturating_sub(self.last_epoch_block) >= self.tempo)
    }

    /// The state after `block` (its epoch run if one is due).
    fn after(&self, block: u64) -> Self {
        let mut next = Self {
            blocks_since_last_step: self.blocks_since_last_step + 1,
            current_block: block,
            ..*self
        };
        if next.epoch_runs_at(block) {
            next.last_epoch_block = block;
            next.pending_epoch_at = 0;
            next.epoch_index += 1;
            next.blocks_since_last_step = 0;
        }
        next
    }

    /// The epoch an extrinsic in `block` belongs to, given the state before that block:
    /// the epoch due at `block` counts (it runs first).
    fn epoch_of_block(&self, block: u64) -> u64 {
        self.epoch_index + u64::from(self.epoch_runs_at(block))
    }

    /// The epoch of each block after `current_block` up to `last`, in order.
    pub fn epochs_until(&self, last: u64) -> impl Iterator<Item = (u64, u64)> {
        let mut state = *self;
        (self.current_block + 1..=last).map(move |block| {
            let epoch = state.epoch_of_block(block);
            state = state.after(block);
            (block, epoch)
        })
    }

    /// The blocks whose epoch is `reveal_period` epochs after that of `commit_block`
    /// (commit-reveal v2's reveal window on a chain with this scheduler); empty when the
    /// subnet runs no epochs. A commit in the block this state was read at (a chain that
    /// includes at once, as the embedded one does) belongs to `epoch_index`; one in an
    /// earlier block is judged as if it were in this one.
    pub fn window_of(&self, commit_block: u64, reveal_period: u64) -> RangeInclusive<u64> {
        if self.tempo == 0 {
            return no_blocks();
        }
        let mut blocks = std::iter::once((self.current_block, self.epoch_index))
            .chain(self.epochs_until(u64::MAX))
            .skip_while(|&(block, _)| block < commit_block.max(self.current_block));
        let Some((_, commit_epoch)) = blocks.next() else {
            return no_blocks();
        };
        let target = commit_epoch + reveal_period;
        let mut window = blocks
            .skip_while(|&(_, epoch)| epoch < target)
            .take_while(|&(_, epoch)| epoch == target)
            .map(|(block, _)| block);
        match window.next() {
            Some(first) => first..=window.last().unwrap_or(first),
            None => no_blocks(),
        }
    }

    /// The first block whose epoch is `reveal_period` epochs after that of a commit
    /// included in the next block, as the chain's timelocked reveal sees it.
    pub fn first_reveal_block(&self, reveal_period: u64) -> Result<u64, TimelockError> {
        if self.tempo == 0 {
            return Err(TimelockError::Schedule(
                "tempo is 0: the subnet runs no epochs".into(),
            ));
        }
        let commit_block = self.current_block + 1;
        let target = self.epoch_of_block(commit_block) + reveal_period;
        let budget = reveal_period.saturating_mul(MAX_TEMPO) + MAX_TEMPO;
        self.epochs_until(commit_block.saturating_add(budget))
            .find(|&(_, epoch)| epoch == target)
            .map(|(block, _)| block)
            .ok_or_else(|| {
                TimelockError::Schedule(format!("no epoch {target} within {budget} blocks"))
            })
    }
}

/// An empty range of blocks.
fn no_blocks() -> RangeInclusive<u64> {
    RangeInclusive::new(1, 0)
}

/// The beacon round a timelocked commit made now is encrypted to, as the SDK picks it:
/// the round published when the chain reaches [`EpochSchedule::first_reveal_block`] +
/// [`REVEAL_SAFETY_BLOCKS`], with blocks of `block_time_ms` from `now_ms` (at least 1).
pub fn reveal_round(
    beacon: &Beacon,
    schedule: &EpochSchedule,
    reveal_period: u64,
    block_time_ms: u64,
    now_ms: u64,
) -> Result<u64, TimelockError> {
    let reveal_block = schedule.first_reveal_block(reveal_period)? + REVEAL_SAFETY_BLOCKS;
    let wait_ms = reveal_block.saturating_sub(schedule.current_block) * block_time_ms;
    Ok(beacon.round_at(now_ms + wait_ms).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_beacon_encrypts_and_decrypts_only_with_its_round() {
        let key = BeaconKey::generate();
        let beacon = Beacon {
            public_key: key.public_key(),
            genesis_ms: 0,
            period_ms: 1000,
        };
        let ct = beacon.encrypt(42, b"payload").unwrap();
        assert_eq!(decrypt(&ct, &key.sign_round(42)).unwrap(), b"payload");
        assert!(decrypt(&ct, &key.sign_round(43)).is_err(), "another round");
        assert!(beacon.verify(42, &key.sign_round(42)).unwrap());
        assert!(!beacon.verify(42, &key.sign_round(41)).unwrap());
        let again = BeaconKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(again.sign_round(7), key.sign_round(7));
        assert!(decrypt(&ct[..ct.len() - 1], &key.sign_round(42)).is_err());
    }

    #[test]
    fn reveal_block_is_the_first_of_the_reveal_epoch() {
        // Epochs at 100, 150, 200, ...: a commit in block 121 is in epoch 1.
        let s = EpochSchedule {
            last_epoch_block: 100,
            epoch_index: 0,
            tempo: 50,
            blocks_since_last_step: 20,
            current_block: 120,
            ..EpochSchedule::default()
        };
        assert_eq!(s.first_reveal_block(1).unwrap(), 150);
        assert_eq!(s.first_reveal_block(2).unwrap(), 200);
        // A commit in the epoch's own block belongs to the new epoch.
        let at_boundary = EpochSchedule {
            blocks_since_last_step: 48,
            current_block: 149,
            ..s
        };
        assert_eq!(at_boundary.first_reveal_block(1).unwrap(), 200);
        // An owner-triggered epoch moves the schedule.
        let triggered = EpochSchedule {
            pending_epoch_at: 130,
            ..s
        };
        assert_eq!(triggered.first_reveal_block(1).unwrap(), 130);
        assert!(EpochSchedule::default().first_reveal_block(1).is_err());
        // v2: a commit in block 121 (epoch 1) reveals in epoch 2, blocks 150..=199.
        assert_eq!(s.window_of(121, 1), 150..=199);
        assert_eq!(s.window_of(150, 1), 200..=249);
        // A commit included in the block the state was read at keeps that block's
        // epoch, also when the next block starts a new one.
        assert_eq!(at_boundary.window_of(149, 1), 150..=199);
        assert_eq!(at_boundary.window_of(150, 1), 200..=249);
        assert!(EpochSchedule::default().window_of(5, 1).is_empty());
    }

    #[test]
    fn reveal_round_counts_blocks_then_beacon_periods() {
        let s = EpochSchedule {
            last_epoch_block: 100,
            tempo: 50,
            blocks_since_last_step: 20,
            current_block: 120,
            ..EpochSchedule::default()
        };
        let beacon = Beacon {
            public_key: Vec::new(),
            genesis_ms: 1_000_000,
            period_ms: 3000,
        };
        // Reveal block 150 + 3 = 33 blocks of 12 s ahead.
        let now = 1_000_000 + 3000 * 10;
        assert_eq!(
            reveal_round(&beacon, &s, 1, 12_000, now).unwrap(),
            10 + 33 * 12 / 3
        );
    }
}
