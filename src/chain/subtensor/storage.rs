//! Storage reads of a subtensor node at one block: subnet values (with the
//! `NetworksAdded` check), the metagraph (from the neurons runtime API and
//! `BlockAtRegistration`), hyperparameters, commit-reveal settings, uids and
//! commitments.

use std::collections::HashMap;

use parity_scale_codec::Encode;
use subxt::dynamic::Value;
use subxt::ext::scale_value::ValueDef;

use super::connection::rpc_err;
use super::value::{decode_err, field, seq_items, ss58, value_bool, value_bytes, value_u128};
use super::{ApiAt, NeuronsLiteForm, decode_neurons_lite, neurons};
use crate::chain::timelock::EpochSchedule;
use crate::chain::{AxonServe, ChainError, Commitment, Hyperparameters, Metagraph, NeuronInfo};

const SUBTENSOR: &str = "SubtensorModule";

/// Reads `SubtensorModule.<entry>(netuid)` (default when unset) as a dynamic value.
async fn fetch_subnet_value(at: &ApiAt, entry: &str, netuid: u16) -> Result<Value, ChainError> {
    let addr = subxt::dynamic::storage::<(u16,), Value>(SUBTENSOR, entry);
    let value = at
        .storage()
        .fetch(addr, (netuid,))
        .await
        .map_err(|e| ChainError::Decode(format!("{SUBTENSOR}.{entry}({netuid}): {e}")))?;
    value
        .decode()
        .map_err(|e| ChainError::Decode(format!("{SUBTENSOR}.{entry}({netuid}): {e}")))
}

/// Reads the plain value `SubtensorModule.<entry>` (default when unset) as a u64.
async fn fetch_plain_u64(at: &ApiAt, entry: &str) -> Result<u64, ChainError> {
    let addr = subxt::dynamic::storage::<(), Value>(SUBTENSOR, entry);
    let value: Value = at
        .storage()
        .fetch(addr, ())
        .await
        .map_err(|e| ChainError::Decode(format!("{SUBTENSOR}.{entry}: {e}")))?
        .decode()
        .map_err(|e| ChainError::Decode(format!("{SUBTENSOR}.{entry}: {e}")))?;
    value_u128(&value)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| decode_err(entry, &value))
}

async fn fetch_subnet_u64(at: &ApiAt, entry: &str, netuid: u16) -> Result<u64, ChainError> {
    let value = fetch_subnet_value(at, entry, netuid).await?;
    value_u128(&value)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| decode_err(entry, &value))
}

async fn fetch_subnet_u16(at: &ApiAt, entry: &str, netuid: u16) -> Result<u16, ChainError> {
    let v = fetch_subnet_u64(at, entry, netuid).await?;
    u16::try_from(v).map_err(|_| ChainError::Decode(format!("{entry}({netuid}) = {v} exceeds u16")))
}

/// Fails with [`ChainError::SubnetNotFound`] unless `NetworksAdded(netuid)` is set.
async fn ensure_subnet(at: &ApiAt, netuid: u16) -> Result<(), ChainError> {
    let value = fetch_subnet_value(at, "NetworksAdded", netuid).await?;
    match value_bool(&value) {
        Some(true) => Ok(()),
        Some(false) => Err(ChainError::SubnetNotFound {
            error: "SubnetNotExists".into(),
            reason: format!("subnet {netuid} does not exist on this chain"),
        }),
        None => Err(decode_err("NetworksAdded", &value)),
    }
}

/// `(uid → value)` of a double map keyed `(netuid, uid)`, e.g. `BlockAtRegistration`.
async fn uid_map_u64(
    at: &ApiAt,
    entry: &str,
    netuid: u16,
) -> Result<HashMap<u16, u64>, ChainError> {
    let addr = subxt::dynamic::storage::<(u16, u16), Value>(SUBTENSOR, entry);
    let mut entries = at
        .storage()
        .iter(addr, (netuid,))
        .await
        .map_err(|e| ChainError::Decode(format!("{SUBTENSOR}.{entry}({netuid}, *): {e}")))?;
    let mut out = HashMap::new();
    while let Some(kv) = entries.next().await {
        let kv = kv.map_err(|e| ChainError::Decode(format!("{entry}: {e}")))?;
        let (_, uid) = kv
            .key()
            .and_then(|k| k.decode())
            .map_err(|e| ChainError::Decode(format!("{entry} key: {e}")))?;
        let value = kv
            .value()
            .decode()
            .map_err(|e| ChainError::Decode(format!("{entry} value: {e}")))?;
        let v = value_u128(&value)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| decode_err(entry, &value))?;
        out.insert(uid, v);
    }
    Ok(out)
}

pub(super) async fn read_metagraph(at: ApiAt, netuid: u16) -> Result<Metagraph, ChainError> {
    ensure_subnet(&at, netuid).await?;
    let form = NeuronsLiteForm::from_metadata(at.metadata_ref())?;
    let bytes = at
        .runtime_apis()
        .call_raw(
            &format!("{}_{}", neurons::NEURON_INFO_API, neurons::GET_NEURONS_LITE),
            Some(&netuid.encode()),
        )
        .await
        .map_err(rpc_err)?;
    let lite = decode_neurons_lite(&bytes, form)?;
    let registered_at = uid_map_u64(&at, "BlockAtRegistration", netuid).await?;
    let mut neurons: Vec<NeuronInfo> = lite
        .into_iter()
        .map(|n| {
            let axon = n.axon_info.ip_addr().map(|ip| AxonServe {
                version: n.axon_info.version,
                ip,
                port: n.axon_info.port,
                protocol: n.axon_info.protocol,
            });
            NeuronInfo {
                uid: n.uid,
                hotkey: ss58(n.hotkey),
                coldkey: ss58(n.coldkey),
                stake: n.total_stake(),
                trust: n.trust,
                validator_trust: n.validator_trust,
                consensus: n.consensus,
                incentive: n.incentive,
                dividends: n.dividends,
                emission: n.emission,
                validator_permit: n.validator_permit,
                last_update: n.last_update,
                block_at_registration: registered_at.get(&n.uid).copied().unwrap_or(0),
                active: n.active,
                axon_block: if axon.is_some() { n.axon_info.block } else { 0 },
                axon,
            }
        })
        .collect();
    neurons.sort_by_key(|n| n.uid);
    Ok(Metagraph {
        netuid,
        block: at.block_number(),
        neurons,
    })
}

pub(super) async fn read_hyperparameters(
    at: ApiAt,
    netuid: u16,
) -> Result<Hyperparameters, ChainError> {
    ensure_subnet(&at, netuid).await?;
    let cr = fetch_subnet_value(&at, "CommitRevealWeightsEnabled", netuid).await?;
    Ok(Hyperparameters {
        tempo: fetch_subnet_u16(&at, "Tempo", netuid).await?,
        immunity_period: fetch_subnet_u16(&at, "ImmunityPeriod", netuid).await?,
        max_allowed_uids: fetch_subnet_u16(&at, "MaxAllowedUids", netuid).await?,
        min_allowed_weights: fetch_subnet_u16(&at, "MinAllowedWeights", netuid).await?,
        max_weight_limit: fetch_subnet_u16(&at, "MaxWeightsLimit", netuid).await?,
        weights_rate_limit: fetch_subnet_u64(&at, "WeightsSetRateLimit", netuid).await?,
        kappa: fetch_subnet_u16(&at, "Kappa", netuid).await?,
        bonds_moving_average: fetch_subnet_u64(&at, "BondsMovingAverage", netuid).await?,
        bonds_penalty: fetch_subnet_u16(&at, "BondsPenalty", netuid).await?,
        activity_cutoff: fetch_subnet_u16(&at, "ActivityCutoff", netuid).await?,
        max_allowed_validators: fetch_subnet_u16(&at, "MaxAllowedValidators", netuid).await?,
        weights_version_key: fetch_subnet_u64(&at, "WeightsVersionKey", netuid).await?,
        commit_reveal_weights_enabled: value_bool(&cr)
            .ok_or_else(|| decode_err("CommitRevealWeightsEnabled", &cr))?,
        commit_reveal_period: fetch_subnet_u64(&at, "RevealPeriodEpochs", netuid).await?,
        commit_reveal_version: u16::try_from(
            fetch_plain_u64(&at, "CommitRevealWeightsVersion").await?,
        )
        .map_err(|_| ChainError::Decode("CommitRevealWeightsVersion exceeds u16".into()))?,
        burn: fetch_subnet_u64(&at, "Burn", netuid).await?,
        serving_rate_limit: fetch_subnet_u64(&at, "ServingRateLimit", netuid).await?,
    })
}

/// The bytes of a commitment's first field: `Raw*`/`BigRaw` data, or the 32 bytes of a
/// hash variant; `None` for an empty field.
fn commitment_bytes(data: &Value) -> Option<Vec<u8>> {
    match &data.value {
        ValueDef::Variant(v) if v.name == "None" => None,
        ValueDef::Variant(v) => v.values.values().next().and_then(value_bytes),
        _ => None,
    }
}

pub(super) async fn read_commitments(
    at: ApiAt,
    netuid: u16,
) -> Result<Vec<Commitment>, ChainError> {
    ensure_subnet(&at, netuid).await?;
    let uids_addr = subxt::dynamic::storage::<(u16, [u8; 32]), Value>(SUBTENSOR, "Uids");
    let mut uid_of = HashMap::new();
    let mut entries = at
        .storage()
        .iter(uids_addr, (netuid,))
        .await
        .map_err(|e| ChainError::Decode(format!("Uids({netuid}, *): {e}")))?;
    while let Some(kv) = entries.next().await {
        let kv = kv.map_err(|e| ChainError::Decode(format!("Uids: {e}")))?;
        let (_, hotkey) = kv
            .key()
            .and_then(|k| k.decode())
            .map_err(|e| ChainError::Decode(format!("Uids key: {e}")))?;
        let value = kv
            .value()
            .decode()
            .map_err(|e| ChainError::Decode(format!("Uids value: {e}")))?;
        let uid = value_u128(&value)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| decode_err("Uids", &value))?;
        uid_of.insert(hotkey, uid);
    }

    let addr = subxt::dynamic::storage::<(u16, [u8; 32]), Value>("Commitments", "CommitmentOf");
    let mut entries = at
        .storage()
        .iter(addr, (netuid,))
        .await
        .map_err(|e| ChainError::Decode(format!("CommitmentOf({netuid}, *): {e}")))?;
    let mut out = Vec::new();
    while let Some(kv) = entries.next().await {
        let kv = kv.map_err(|e| ChainError::Decode(format!("CommitmentOf: {e}")))?;
        let (_, account) = kv
            .key()
            .and_then(|k| k.decode())
            .map_err(|e| ChainError::Decode(format!("CommitmentOf key: {e}")))?;
        let Some(&uid) = uid_of.get(&account) else {
            continue;
        };
        let value = kv
            .value()
            .decode()
            .map_err(|e| ChainError::Decode(format!("CommitmentOf value: {e}")))?;
        let block = field(&value, "block")
            .and_then(value_u128)
            .and_then(|b| u64::try_from(b).ok())
            .ok_or_else(|| decode_err("CommitmentOf.block", &value))?;
        let first = field(&value, "info")
            .and_then(|info| field(info, "fields"))
            .and_then(seq_items)
            .and_then(|items| items.first().map(|v| (*v).clone()));
        out.push(Commitment {
            uid,
            hotkey: ss58(account),
            data: first
                .as_ref()
                .and_then(commitment_bytes)
                .unwrap_or_default(),
            block,
        });
    }
    out.sort_by_key(|c| c.uid);
    Ok(out)
}

/// `CommitRevealWeightsEnabled(netuid)`: whether weights must go through commit-reveal.
pub(super) async fn read_commit_reveal_enabled(at: ApiAt, netuid: u16) -> Result<bool, ChainError> {
    ensure_subnet(&at, netuid).await?;
    let value = fetch_subnet_value(&at, "CommitRevealWeightsEnabled", netuid).await?;
    value_bool(&value).ok_or_else(|| decode_err("CommitRevealWeightsEnabled", &value))
}

/// The subnet's epoch state now: `LastMechansimStepBlock`, `BlocksSinceLastStep` and
/// `Tempo` (this runtime keeps no epoch counter or pending owner epoch: both read as 0;
/// the reveal prediction only uses differences of epochs).
pub(super) async fn read_epoch_schedule(
    at: ApiAt,
    netuid: u16,
) -> Result<EpochSchedule, ChainError> {
    ensure_subnet(&at, netuid).await?;
    Ok(EpochSchedule {
        last_epoch_block: fetch_subnet_u64(&at, "LastMechansimStepBlock", netuid).await?,
        pending_epoch_at: 0,
        epoch_index: 0,
        tempo: fetch_subnet_u64(&at, "Tempo", netuid).await?,
        blocks_since_last_step: fetch_subnet_u64(&at, "BlocksSinceLastStep", netuid).await?,
        current_block: at.block_number(),
    })
}

/// `Uids(netuid, hotkey)`: the uid of a hotkey, `None` when not registered.
pub(super) async fn read_uid(
    at: &ApiAt,
    netuid: u16,
    hotkey: [u8; 32],
) -> Result<Option<u16>, ChainError> {
    let addr = subxt::dynamic::storage::<(u16, [u8; 32]), Value>(SUBTENSOR, "Uids");
    let Some(value) = at
        .storage()
        .try_fetch(addr, (netuid, hotkey))
        .await
        .map_err(rpc_err)?
    else {
        return Ok(None);
    };
    let value = value
        .decode()
        .map_err(|e| ChainError::Decode(format!("Uids value: {e}")))?;
    value_u128(&value)
        .and_then(|v| u16::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| decode_err("Uids", &value))
}
