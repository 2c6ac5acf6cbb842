//! Extrinsic calls to subtensor, built for subxt's dynamic API.
//!
//! Each [`SubtensorCall`] names its pallet, call and arguments by name (so the live
//! runtime metadata decides the encoding) and which of the wallet's keys must sign it.
//! Argument names and order follow the finney runtime (`SubtensorModule` = pallet 7,
//! `Balances` = 5, `Commitments` = 18); the byte-for-byte encodings are checked against
//! the Python encoder of bittensor 10.5.0 in `tests/it/subtensor_python.rs`.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use parity_scale_codec::Encode;
use subxt::dynamic::Value;
use subxt::ext::scale_value::Composite;
use subxt::metadata::Metadata;
use subxt::tx::DynamicPayload;

use crate::chain::{AxonServe, ChainError, MAX_COMMITMENT_BYTES};

/// The wallet key an extrinsic must be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerRole {
    /// The hotkey: weights, axon serving, commitments.
    Hotkey,
    /// The coldkey: registration, staking, transfers.
    Coldkey,
}

/// One call to the chain: pallet, call name, named arguments and the signing key.
#[derive(Debug, Clone)]
pub struct SubtensorCall {
    pallet: &'static str,
    name: &'static str,
    args: Vec<(&'static str, Value)>,
    signer: SignerRole,
}

fn u16_vec(values: &[u16]) -> Value {
    Value::unnamed_composite(values.iter().map(|v| Value::u128(u128::from(*v))))
}

fn account(id: [u8; 32]) -> Value {
    Value::from_bytes(id)
}

impl SubtensorCall {
    fn new(
        pallet: &'static str,
        name: &'static str,
        signer: SignerRole,
        args: Vec<(&'static str, Value)>,
    ) -> Self {
        Self {
            pallet,
            name,
            args,
            signer,
        }
    }

    /// `SubtensorModule.set_weights(netuid, dests, weights, version_key)`, signed by the
    /// hotkey. `weights` are the already u16-normalised values.
    pub fn set_weights(netuid: u16, uids: &[u16], weights: &[u16], version_key: u64) -> Self {
        Self::new(
            "SubtensorModule",
            "set_weights",
            SignerRole::Hotkey,
            vec![
                ("netuid", Value::u128(netuid.into())),
                ("dests", u16_vec(uids)),
                ("weights", u16_vec(weights)),
                ("version_key", Value::u128(version_key.into())),
            ],
        )
    }

    /// `SubtensorModule.set_mechanism_weights(netuid, mecid, dests, weights,
    /// version_key)`, signed by the hotkey: weights of one mechanism of a subnet.
    pub fn set_mechanism_weights(
        netuid: u16,
        mechid: u8,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Self {
        Self::new(
            "SubtensorModule",
            "set_mechanism_weights",
            SignerRole::Hotkey,
            vec![
                ("netuid", Value::u128(netuid.into())),
                ("mecid", Value::u128(mechid.into())),
                ("dests", u16_vec(uids)),
                ("weights", u16_vec(weights)),
                ("version_key", Value::u128(version_key.into())),
            ],
        )
    }

    /// `SubtensorModule.commit_mechanism_weights(netuid, mecid, commit_hash)`
    /// (commit-reveal v2 of a mechanism other than 0), signed by the hotkey.
    pub fn commit_mechanism_weights(netuid: u16, mechid: u8, commit_hash: [u8; 32]) -> Self {
        Self::new(
            "SubtensorModule",
            "commit_mechanism_weights",
            SignerRole::Hotkey,
            vec![
                ("netuid", Value::u128(netuid.into())),
                ("mecid", Value::u128(mechid.into())),
                ("commit_hash", Value::from_bytes(commit_hash)),
            ],
        )
    }

    /// `SubtensorModule.commit_timelocked_mechanism_weights(netuid, mecid, commit,
    /// reveal_round, commit_reveal_version = 4)` (commit-reveal v4), signed by the
    /// hotkey: `commit` is the timelock ciphertext of the weights
    /// ([`crate::chain::timelock`]), revealed by the chain at `reveal_round`.
    pub fn commit_timelocked_mechanism_weights(
        netuid: u16,
        mechid: u8,
        commit: &[u8],
        reveal_round: u64,
    ) -> Self {
        Self::new(
            "SubtensorModule",
            "commit_timelocked_mechanism_weights",
            SignerRole::Hotkey,
            vec![
                ("netuid", Value::u128(netuid.into())),
                ("mecid", Value::u128(mechid.into())),
                ("commit", Value::from_bytes(commit)),
                ("reveal_round", Value::u128(reveal_round.into())),
                (
                    "commit_reveal_version",
                    Value::u128(COMMIT_REVEAL_VERSION.into()),
                ),
            ],
        )
    }

    /// `SubtensorModule.commit_weights(netuid, commit_hash)` (commit-reveal v2), signed by
    /// the hotkey; the hash comes from [`weights_commit_hash`].
    pub fn commit_weights(netuid: u16, commit_hash: [u8; 32]) -> Self {
        Self::new(
            "SubtensorModule",
            "commit_weights",
            SignerRole::Hotkey,
            vec![
                ("netuid", Value::u128(netuid.into())),
                ("commit_hash", Value::from_bytes(commit_hash)),
            ],
        )
    }

    /// `SubtensorModule.reveal_weights(netuid, uids, values, salt, version_key)` (or
    /// `reveal_mechanism_weights` with `mecid` after `netuid` for a mechanism other than
    /// 0), signed by the hotkey; the arguments must be those the commit hash was made
    /// from.
    pub fn reveal_weights(reveal: &WeightsReveal) -> Self {
        let mut args = vec![("netuid", Value::u128(reveal.netuid.into()))];
        let name = if reveal.mechid == 0 {
            "reveal_weights"
        } else {
            args.push(("mecid", Value::u128(reveal.mechid.into())));
            "reveal_mechanism_weights"
        };
        args.extend([
            ("uids", u16_vec(&reveal.uids)),
            ("values", u16_vec(&reveal.values)),
            ("salt", u16_vec(&reveal.salt)),
            ("version_key", Value::u128(reveal.version_key.into())),
        ]);
        Self::new("SubtensorModule", name, SignerRole::Hotkey, args)
    }

    /// `SubtensorModule.serve_axon(netuid, version, ip, port, ip_type, protocol,
    /// placeholder1, placeholder2)`, signed by the hotkey.
    pub fn serve_axon(netuid: u16, axon: &AxonServe) -> Self {
        let (ip, ip_type) = match axon.ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 4u8),
            IpAddr::V6(v6) => (u128::from(v6), 6u8),
        };
        Self::new(
            "SubtensorModule",
            "serve_axon",
            SignerRole::Hotkey,
            vec![
                ("netuid", Value::u128(netuid.into())),
                ("version", Value::u128(axon.version.into())),
                ("ip", Value::u128(ip)),
                ("port", Value::u128(axon.port.into())),
                ("ip_type", Value::u128(ip_type.into())),
                ("protocol", Value::u128(axon.protocol.into())),
                ("placeholder1", Value::u128(0)),
                ("placeholder2", Value::u128(0)),
            ],
        )
    }

    /// `SubtensorModule.burned_register(netuid, hotkey)`, signed by the coldkey.
    pub fn burned_register(netuid: u16, hotkey: [u8; 32]) -> Self {
        Self::new(
            "SubtensorModule",
            "burned_register",
            SignerRole::Coldkey,
            vec![
                ("netuid", Value::u128(netuid.into())),
                ("hotkey", account(hotkey)),
            ],
        )
    }

    /// `SubtensorModule.add_stake(hotkey, netuid, amount_staked)` in rao, signed by the
    /// coldkey.
    pub fn add_stake(hotkey: [u8; 32], netuid: u16, amount_rao: u64) -> Self {
        Self::new(
            "SubtensorModule",
            "add_stake",
            SignerRole::Coldkey,
            vec![
                ("hotkey", account(hotkey)),
                ("netuid", Value::u128(netuid.into())),
                ("amount_staked", Value::u128(amount_rao.into())),
            ],
        )
    }

    /// `SubtensorModule.remove_stake(hotkey, netuid, amount_unstaked)` (in the subnet's
    /// alpha units), signed by the coldkey.
    pub fn remove_stake(hotkey: [u8; 32], netuid: u16, amount: u64) -> Self {
        Self::new(
            "SubtensorModule",
            "remove_stake",
            SignerRole::Coldkey,
            vec![
                ("hotkey", account(hotkey)),
                ("netuid", Value::u128(netuid.into())),
                ("amount_unstaked", Value::u128(amount.into())),
            ],
        )
    }

    /// `Balances.transfer_keep_alive(dest, value)` in rao, signed by the coldkey.
    pub fn transfer(dest: [u8; 32], amount_rao: u64) -> Self {
        Self::new(
            "Balances",
            "transfer_keep_alive",
            SignerRole::Coldkey,
            vec![
                ("dest", Value::unnamed_variant("Id", [account(dest)])),
                ("value", Value::u128(amount_rao.into())),
            ],
        )
    }

    /// `Commitments.set_commitment(netuid, {fields: [Raw<len>(data)]})`, signed by the
    /// hotkey. Fails for data longer than [`MAX_COMMITMENT_BYTES`].
    pub fn set_commitment(netuid: u16, data: &[u8]) -> Result<Self, ChainError> {
        if data.len() > MAX_COMMITMENT_BYTES {
            return Err(ChainError::InvalidInput(format!(
                "commitment is {} bytes, at most {MAX_COMMITMENT_BYTES} fit in one Raw field",
                data.len()
            )));
        }
        let field = Value::unnamed_variant(format!("Raw{}", data.len()), [Value::from_bytes(data)]);
        let info = Value::named_composite([("fields", Value::unnamed_composite([field]))]);
        Ok(Self::new(
            "Commitments",
            "set_commitment",
            SignerRole::Hotkey,
            vec![("netuid", Value::u128(netuid.into())), ("info", info)],
        ))
    }

    /// The pallet this call belongs to.
    pub fn pallet(&self) -> &'static str {
        self.pallet
    }

    /// The call's name within its pallet.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Which wallet key must sign it.
    pub fn signer(&self) -> SignerRole {
        self.signer
    }

    /// The call as a subxt dynamic payload, encoded against whatever metadata the client
    /// holds when it is submitted.
    pub fn payload(&self) -> DynamicPayload<Composite<()>> {
        let args = Composite::named(self.args.iter().map(|(k, v)| (*k, v.clone())));
        subxt::dynamic::tx(self.pallet, self.name, args)
    }

    /// The SCALE call data (pallet index, call index, arguments) for `metadata`.
    pub fn call_data(&self, metadata: &Metadata) -> Result<Vec<u8>, ChainError> {
        let payload = self.payload();
        subxt::ext::frame_decode::extrinsics::encode_call_data(
            self.pallet,
            self.name,
            payload.call_data(),
            metadata,
            metadata.types(),
        )
        .map_err(|e| {
            ChainError::InvalidInput(format!(
                "cannot encode {}.{} for this runtime: {e}",
                self.pallet, self.name
            ))
        })
    }
}

/// The `commit_reveal_version` of timelocked commits the SDK sends (and we do).
pub const COMMIT_REVEAL_VERSION: u16 = 4;

/// Mechanisms per subnet in the storage index: mechanism `m` of subnet `n` is stored
/// at `m * 4096 + n`.
pub const MECHANISM_STRIDE: u16 = 4096;

/// The storage index of mechanism `mechid` of `netuid` (`mecid·4096 + netuid`), the
/// `netuid_index` of the commit hash.
pub fn mechanism_index(netuid: u16, mechid: u8) -> u16 {
    u16::from(mechid)
        .wrapping_mul(MECHANISM_STRIDE)
        .wrapping_add(netuid)
}

/// What a commit-reveal v2 commitment hides, and what the later reveal sends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeightsReveal {
    /// Subnet.
    pub netuid: u16,
    /// Mechanism of the subnet (0 for the main one).
    #[serde(default)]
    pub mechid: u8,
    /// Destination uids.
    pub uids: Vec<u16>,
    /// u16-normalised weights, one per uid.
    pub values: Vec<u16>,
    /// Random salt (the SDK uses 8 u16 values).
    pub salt: Vec<u16>,
    /// Weights version key.
    pub version_key: u64,
}

impl WeightsReveal {
    /// Weights to commit with a fresh random salt of 8 u16 values, as the SDK makes it.
    pub fn with_random_salt(
        netuid: u16,
        mechid: u8,
        uids: Vec<u16>,
        values: Vec<u16>,
        version_key: u64,
    ) -> Self {
        Self {
            netuid,
            mechid,
            uids,
            values,
            salt: (0..8).map(|_| rand::random::<u16>()).collect(),
            version_key,
        }
    }

    /// The commit hash for `hotkey` (the signer of both commit and reveal), as the chain
    /// recomputes it: see [`weights_commit_hash`], over the mechanism's storage index
    /// ([`mechanism_index`]).
    pub fn commit_hash(&self, hotkey: [u8; 32]) -> [u8; 32] {
        weights_commit_hash(
            hotkey,
            mechanism_index(self.netuid, self.mechid),
            &self.uids,
            &self.values,
            &self.salt,
            self.version_key,
        )
    }
}

/// Commit-reveal v2 hash: `blake2_256(SCALE(hotkey, netuid_index: u16, uids: Vec<u16>,
/// values: Vec<u16>, salt: Vec<u16>, version_key: u64))`, as the chain's
/// `get_commit_hash` and the SDK's `generate_weight_hash` compute it.
pub fn weights_commit_hash(
    hotkey: [u8; 32],
    netuid_index: u16,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> [u8; 32] {
    let encoded = (hotkey, netuid_index, uids, values, salt, version_key).encode();
    Blake2b::<U32>::digest(&encoded).into()
}

/// The commit-reveal epoch of `block` on `netuid`, as subtensor's `get_epoch_index`
/// computes it: `(block + netuid + 1) / (tempo + 1)`.
pub fn epoch_index(netuid: u16, tempo: u64, block: u64) -> u64 {
    (block + u64::from(netuid) + 1) / (tempo + 1)
}

/// The blocks in which the chain accepts the reveal of weights committed at
/// `commit_block`: exactly the epoch `epoch_index(commit_block) + reveal_period`
/// (`RevealPeriodEpochs`), as subtensor's `is_reveal_block_range` checks.
pub fn reveal_window(
    netuid: u16,
    tempo: u64,
    reveal_period: u64,
    commit_block: u64,
) -> RangeInclusive<u64> {
    let epoch = epoch_index(netuid, tempo, commit_block) + reveal_period;
    let first = (epoch * (tempo + 1)).saturating_sub(u64::from(netuid) + 1);
    first..=first + tempo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_window_is_the_whole_reveal_epoch() {
        let (netuid, tempo) = (2, 9);
        // Epochs of netuid 2 with tempo 9 start at blocks 7, 17, 27, ...
        assert_eq!(epoch_index(netuid, tempo, 6), 0);
        assert_eq!(epoch_index(netuid, tempo, 7), 1);
        let window = reveal_window(netuid, tempo, 1, 12);
        assert_eq!(window, 17..=26);
        for block in window.clone() {
            assert_eq!(
                epoch_index(netuid, tempo, block),
                epoch_index(netuid, tempo, 12) + 1
            );
        }
        assert_eq!(epoch_index(netuid, tempo, window.end() + 1), 3);
        assert_eq!(reveal_window(netuid, tempo, 2, 7), 27..=36);
    }

    #[test]
    fn random_salts_differ_and_have_eight_values() {
        let a = WeightsReveal::with_random_salt(1, 0, vec![0], vec![65535], 0);
        let b = WeightsReveal::with_random_salt(1, 0, vec![0], vec![65535], 0);
        assert_eq!(a.salt.len(), 8);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.commit_hash([1; 32]), b.commit_hash([1; 32]));
        let mech1 = WeightsReveal {
            mechid: 1,
            ..a.clone()
        };
        assert_eq!(mechanism_index(1, 1), 4097);
        assert_eq!(
            mech1.commit_hash([1; 32]),
            weights_commit_hash([1; 32], 4097, &a.uids, &a.values, &a.salt, 0)
        );
    }
}
