//! The pallet rules of the simulated chain: one function per extrinsic (and per sudo or
//! faucet call), each checking subtensor's rules in subtensor's order and then changing
//! state through [`super::store`]. Each runs inside the caller's transaction at `block`;
//! an error rolls the whole call back.

use std::collections::HashSet;

use rusqlite::Transaction;

use parity_scale_codec::Decode;

use super::store;
use crate::chain::subtensor::WeightsReveal;
use crate::chain::timelock::{self, BeaconKey, WeightsPayload};
use crate::chain::{AxonServe, ChainError, Hyperparameters, MAX_COMMITMENT_BYTES, TxReceipt, yuma};

/// Largest subnet the simulated chain accepts (keeps fixed-point row sums in range).
pub const MAX_UIDS: u16 = 4096;

fn receipt(block: u64) -> TxReceipt {
    TxReceipt { block, hash: None }
}

/// A refusal with subtensor's dispatch error name.
fn reject<T>(error: &str, reason: impl Into<String>) -> Result<T, ChainError> {
    Err(ChainError::from_dispatch(error, reason))
}

/// The hyperparameter checks: tempo at least 1, capacity within [`MAX_UIDS`], the bonds
/// moving average in millionths.
pub(super) fn check_params(p: &Hyperparameters) -> Result<(), ChainError> {
    if p.tempo == 0 {
        return Err(ChainError::InvalidInput("tempo must be at least 1".into()));
    }
    if p.max_allowed_uids == 0 || p.max_allowed_uids > MAX_UIDS {
        return Err(ChainError::InvalidInput(format!(
            "max_allowed_uids must be 1..={MAX_UIDS}, got {}",
            p.max_allowed_uids
        )));
    }
    if p.bonds_moving_average > 1_000_000 {
        return Err(ChainError::InvalidInput(format!(
            "bonds_moving_average is in millionths (at most 1000000), got {}",
            p.bonds_moving_average
        )));
    }
    Ok(())
}

/// Creates a subnet owned by `owner`; returns its netuid.
pub(super) fn create_subnet(
    tx: &Transaction<'_>,
    block: u64,
    owner: &str,
    params: &Hyperparameters,
) -> Result<u16, ChainError> {
    check_params(params)?;
    store::insert_subnet(tx, owner, params, block)
}

/// The sudo call replacing a subnet's hyperparameters; the subnet must fit the new
/// capacity.
pub(super) fn set_hyperparameters(
    tx: &Transaction<'_>,
    netuid: u16,
    params: &Hyperparameters,
) -> Result<(), ChainError> {
    check_params(params)?;
    let n = store::subnet_size(tx, netuid)?;
    if n > params.max_allowed_uids {
        return Err(ChainError::InvalidInput(format!(
            "subnet {netuid} has {n} uids, more than max_allowed_uids {}",
            params.max_allowed_uids
        )));
    }
    store::update_params(tx, netuid, params)
}

/// The faucet: credits `amount` rao to `address`, minted.
pub(super) fn faucet(
    tx: &Transaction<'_>,
    block: u64,
    address: &str,
    amount: u64,
) -> Result<TxReceipt, ChainError> {
    store::credit(tx, address, amount)?;
    store::add_issuance(tx, amount, true)?;
    Ok(receipt(block))
}

/// `burned_register`: burns the subnet's registration cost from `coldkey` and gives
/// `hotkey` the next uid, or prunes one when the subnet is full. Returns the uid.
pub(super) fn burned_register(
    tx: &Transaction<'_>,
    block: u64,
    coldkey: &str,
    netuid: u16,
    hotkey: &str,
) -> Result<u16, ChainError> {
    if hotkey.is_empty() {
        return Err(ChainError::InvalidInput("empty hotkey address".into()));
    }
    let subnet = store::load_subnet(tx, netuid)?;
    if store::uid_of(tx, netuid, hotkey)?.is_some() {
        return reject(
            "HotKeyAlreadyRegisteredInSubNet",
            format!("hotkey {hotkey} is already registered on subnet {netuid}"),
        );
    }
    match store::owner_of(tx, hotkey)? {
        Some(owner) if owner != coldkey => {
            return reject(
                "NonAssociatedColdKey",
                format!("hotkey {hotkey} belongs to coldkey {owner}, not {coldkey}"),
            );
        }
        Some(_) => {}
        None => store::insert_owner(tx, hotkey, coldkey)?,
    }
    let burn = subnet.params.burn;
    store::debit(tx, coldkey, burn, "NotEnoughBalanceToStake")?;
    store::add_issuance(tx, burn, false)?;
    let n = store::subnet_size(tx, netuid)?;
    let uid = if n < subnet.params.max_allowed_uids {
        store::insert_neuron(tx, netuid, n, hotkey, block)?;
        n
    } else {
        let uid = neuron_to_prune(tx, netuid, block, subnet.params.immunity_period)?;
        replace_neuron(tx, netuid, uid, hotkey, block)?;
        uid
    };
    tracing::info!(netuid, uid, hotkey, "registered");
    Ok(uid)
}

/// subtensor's `get_neuron_to_prune`: the lowest emission among non-immune uids (ties:
/// earlier registration, then lower uid); if every uid is immune, the lowest immune one.
fn neuron_to_prune(
    tx: &Transaction<'_>,
    netuid: u16,
    block: u64,
    immunity_period: u16,
) -> Result<u16, ChainError> {
    let mut non_immune: Option<(u64, u64, u16)> = None;
    let mut immune: Option<(u64, u64, u16)> = None;
    for (uid, emission, reg) in store::prune_candidates(tx, netuid)? {
        let key = (emission, reg, uid);
        let best = if block.saturating_sub(reg) < u64::from(immunity_period) {
            &mut immune
        } else {
            &mut non_immune
        };
        if best.is_none_or(|b| key < b) {
            *best = Some(key);
        }
    }
    non_immune
        .or(immune)
        .map(|(_, _, uid)| uid)
        .ok_or_else(|| ChainError::from_dispatch("NoNeuronIdAvailable", "subnet is empty"))
}

/// subtensor's `replace_neuron` + `clear_neuron`: the uid gets the new hotkey with fresh
/// scores, weights and bonds, and other validators' weights on it are zeroed.
fn replace_neuron(
    tx: &Transaction<'_>,
    netuid: u16,
    uid: u16,
    hotkey: &str,
    block: u64,
) -> Result<(), ChainError> {
    let old = store::hotkey_at(tx, netuid, uid)?;
    tracing::info!(
        netuid,
        uid,
        pruned = old,
        "pruning uid for a new registration"
    );
    store::delete_commitment(tx, netuid, &old)?;
    store::delete_neuron(tx, netuid, uid)?;
    store::insert_neuron(tx, netuid, uid, hotkey, block)?;
    for (other, mut pairs) in store::all_weights(tx, netuid)? {
        if pairs.iter().any(|(j, _)| *j == uid) {
            pairs
                .iter_mut()
                .filter(|(j, _)| *j == uid)
                .for_each(|(_, w)| *w = 0);
            store::write_weights(tx, netuid, other, &pairs, None)?;
        }
    }
    Ok(())
}

/// `serve_axon`: registered hotkey, a servable address, the serving rate limit, a port.
pub(super) fn serve_axon(
    tx: &Transaction<'_>,
    block: u64,
    hotkey: &str,
    netuid: u16,
    axon: &AxonServe,
) -> Result<TxReceipt, ChainError> {
    let subnet = store::load_subnet(tx, netuid)?;
    let Some(uid) = store::uid_of(tx, netuid, hotkey)? else {
        return reject(
            "HotKeyNotRegisteredInNetwork",
            format!("hotkey {hotkey} is not registered on subnet {netuid}"),
        );
    };
    if axon.ip.is_unspecified() {
        return reject(
            "InvalidIpAddress",
            format!("{} is not a servable address", axon.ip),
        );
    }
    let last = store::axon_block(tx, netuid, uid)?;
    if last != 0 && block.saturating_sub(last) < subnet.params.serving_rate_limit {
        return reject(
            "ServingRateLimitExceeded",
            format!(
                "served at block {last}, now {block}; serving rate limit is {} blocks",
                subnet.params.serving_rate_limit
            ),
        );
    }
    if axon.port == 0 {
        return reject("InvalidPort", "port 0");
    }
    store::write_axon(tx, netuid, uid, axon, block)?;
    Ok(receipt(block))
}

/// `add_stake`: moves `amount` from the coldkey's balance to stake on a hotkey that has
/// registered.
pub(super) fn add_stake(
    tx: &Transaction<'_>,
    block: u64,
    coldkey: &str,
    hotkey: &str,
    netuid: u16,
    amount: u64,
) -> Result<TxReceipt, ChainError> {
    store::load_subnet(tx, netuid)?;
    if store::owner_of(tx, hotkey)?.is_none() {
        return reject(
            "HotKeyAccountNotExists",
            format!("hotkey {hotkey} has never registered"),
        );
    }
    if amount == 0 {
        return reject("AmountTooLow", "stake amount is 0");
    }
    store::debit(tx, coldkey, amount, "NotEnoughBalanceToStake")?;
    store::change_stake(tx, hotkey, coldkey, netuid, i128::from(amount))?;
    Ok(receipt(block))
}

/// `remove_stake`: moves `amount` of the coldkey's stake on `hotkey` back to its balance.
pub(super) fn remove_stake(
    tx: &Transaction<'_>,
    block: u64,
    coldkey: &str,
    hotkey: &str,
    netuid: u16,
    amount: u64,
) -> Result<TxReceipt, ChainError> {
    store::load_subnet(tx, netuid)?;
    if amount == 0 {
        return reject("AmountTooLow", "unstake amount is 0");
    }
    let have = store::stake_of(tx, hotkey, coldkey, netuid)?;
    if have < amount {
        return reject(
            "NotEnoughStakeToWithdraw",
            format!("{coldkey} has {have} rao staked on {hotkey}, asked for {amount}"),
        );
    }
    store::change_stake(tx, hotkey, coldkey, netuid, -i128::from(amount))?;
    store::credit(tx, coldkey, amount)?;
    Ok(receipt(block))
}

/// `transfer`: moves `amount` from the coldkey's balance to `dest`.
pub(super) fn transfer(
    tx: &Transaction<'_>,
    block: u64,
    coldkey: &str,
    dest: &str,
    amount: u64,
) -> Result<TxReceipt, ChainError> {
    if dest.is_empty() {
        return Err(ChainError::InvalidInput("empty destination address".into()));
    }
    store::debit(tx, coldkey, amount, "InsufficientBalance")?;
    store::credit(tx, dest, amount)?;
    Ok(receipt(block))
}

/// `set_weights` with subtensor's checks in subtensor's order (`internal_set_weights`).
/// A subnet with commit-reveal enabled refuses it: commit the weights instead.
pub(super) fn set_weights(
    tx: &Transaction<'_>,
    block: u64,
    hotkey: &str,
    netuid: u16,
    uids: &[u16],
    values: &[u16],
    version_key: u64,
) -> Result<TxReceipt, ChainError> {
    let subnet = store::load_subnet(tx, netuid)?;
    if subnet.params.commit_reveal_weights_enabled {
        return reject(
            "CommitRevealEnabled",
            format!("subnet {netuid} requires commit-reveal; plain set_weights is refused"),
        );
    }
    apply_weights(tx, block, hotkey, netuid, uids, values, version_key)
}

/// The weights checks and write shared by `set_weights` and the reveals (the rate limit
/// applies only while commit-reveal is off, as on subtensor).
fn apply_weights(
    tx: &Transaction<'_>,
    block: u64,
    hotkey: &str,
    netuid: u16,
    uids: &[u16],
    values: &[u16],
    version_key: u64,
) -> Result<TxReceipt, ChainError> {
    let subnet = store::load_subnet(tx, netuid)?;
    let p = &subnet.params;
    if uids.len() != values.len() {
        return reject(
            "WeightVecNotEqualSize",
            format!("{} uids but {} values", uids.len(), values.len()),
        );
    }
    let n = store::subnet_size(tx, netuid)?;
    if uids.len() > usize::from(n) {
        return reject(
            "UidsLengthExceedUidsInSubNet",
            format!("{} uids for a subnet of {n}", uids.len()),
        );
    }
    let Some(uid) = store::uid_of(tx, netuid, hotkey)? else {
        return reject(
            "HotKeyNotRegisteredInSubNet",
            format!("hotkey {hotkey} is not registered on subnet {netuid}"),
        );
    };
    if p.weights_version_key != 0 && version_key < p.weights_version_key {
        return reject(
            "IncorrectWeightVersionKey",
            format!(
                "version key {version_key} is below the subnet's {}",
                p.weights_version_key
            ),
        );
    }
    let (last_update, permit) = store::weights_state(tx, netuid, uid)?;
    if !p.commit_reveal_weights_enabled
        && last_update != 0
        && block.saturating_sub(last_update) < p.weights_rate_limit
    {
        return reject(
            "SettingWeightsTooFast",
            format!(
                "uid {uid} set weights at block {last_update}, now {block}; rate limit is {} blocks",
                p.weights_rate_limit
            ),
        );
    }
    let self_weight = values.len() == 1 && uids.first() == Some(&uid);
    if !self_weight && !permit {
        return reject(
            "NeuronNoValidatorPermit",
            format!("uid {uid} has no validator permit and may only set a self-weight"),
        );
    }
    let mut seen = HashSet::with_capacity(uids.len());
    if let Some(dup) = uids.iter().find(|u| !seen.insert(**u)) {
        return reject("DuplicateUids", format!("uid {dup} appears more than once"));
    }
    if let Some(bad) = uids.iter().find(|u| **u >= n) {
        return reject(
            "UidVecContainInvalidOne",
            format!("uid {bad} does not exist (subnet has {n} uids)"),
        );
    }
    let min_allowed = usize::from(p.min_allowed_weights.min(n));
    if !self_weight && values.len() < min_allowed {
        return reject(
            "WeightVecLengthIsLow",
            format!("{} weights, at least {min_allowed} required", values.len()),
        );
    }
    let upscaled = yuma::vec_u16_max_upscale_to_u16(values);
    if !self_weight
        && p.max_weight_limit != u16::MAX
        && !yuma::check_vec_max_limited(&upscaled, p.max_weight_limit)
    {
        return reject(
            "MaxWeightExceeded",
            format!(
                "largest normalised weight exceeds the limit {}/65535",
                p.max_weight_limit
            ),
        );
    }
    let pairs: Vec<(u16, u16)> = uids.iter().copied().zip(upscaled).collect();
    store::write_weights(tx, netuid, uid, &pairs, Some(block))?;
    Ok(receipt(block))
}

/// `set_commitment` (Commitments pallet): at most [`MAX_COMMITMENT_BYTES`], from a hotkey
/// registered on the subnet; replaces an earlier commitment.
pub(super) fn set_commitment(
    tx: &Transaction<'_>,
    block: u64,
    hotkey: &str,
    netuid: u16,
    data: &[u8],
) -> Result<TxReceipt, ChainError> {
    if data.len() > MAX_COMMITMENT_BYTES {
        return Err(ChainError::InvalidInput(format!(
            "commitment is {} bytes, at most {MAX_COMMITMENT_BYTES} allowed",
            data.len()
        )));
    }
    store::load_subnet(tx, netuid)?;
    if store::uid_of(tx, netuid, hotkey)?.is_none() {
        return reject(
            "AccountNotAllowedCommit",
            format!("hotkey {hotkey} is not registered on subnet {netuid}"),
        );
    }
    store::upsert_commitment(tx, netuid, hotkey, data, block)?;
    Ok(receipt(block))
}

/// Most unrevealed v2 commits one hotkey may hold on a subnet (subtensor's limit).
pub const MAX_UNREVEALED_COMMITS: usize = 10;

/// Largest timelocked commit (bytes), as subtensor's `MAX_CRV3_COMMIT_SIZE_BYTES`.
pub const MAX_TIMELOCKED_COMMIT_BYTES: usize = 5000;

/// The checks every commit shares: mechanism 0 only, commit-reveal on, a registered
/// hotkey. Returns the subnet.
fn check_commit(
    tx: &Transaction<'_>,
    hotkey: &str,
    netuid: u16,
    mechid: u8,
) -> Result<store::Subnet, ChainError> {
    let subnet = store::load_subnet(tx, netuid)?;
    if mechid != 0 {
        return reject(
            "MechanismDoesNotExist",
            format!("the local chain runs one mechanism per subnet (0), not {mechid}"),
        );
    }
    if !subnet.params.commit_reveal_weights_enabled {
        return reject(
            "CommitRevealDisabled",
            format!("subnet {netuid} has commit-reveal off; set weights directly"),
        );
    }
    if store::uid_of(tx, netuid, hotkey)?.is_none() {
        return reject(
            "HotKeyNotRegisteredInSubNet",
            format!("hotkey {hotkey} is not registered on subnet {netuid}"),
        );
    }
    Ok(subnet)
}

/// The epoch a v2 commit of `commit_epoch` is revealed in.
fn reveal_epoch(subnet: &store::Subnet, commit_epoch: u64) -> u64 {
    commit_epoch + subnet.params.commit_reveal_period
}

/// `commit_weights` (commit-reveal v2): keeps the hash for a reveal in the epoch
/// `commit_reveal_period` epochs later. Expired commits of the hotkey are dropped first;
/// at most [`MAX_UNREVEALED_COMMITS`] may wait, one per `weights_rate_limit` blocks.
pub(super) fn commit_weights(
    tx: &Transaction<'_>,
    block: u64,
    hotkey: &str,
    netuid: u16,
    mechid: u8,
    hash: [u8; 32],
) -> Result<TxReceipt, ChainError> {
    let subnet = check_commit(tx, hotkey, netuid, mechid)?;
    let mut waiting = Vec::new();
    for c in store::commits_of(tx, netuid, hotkey)?
        .into_iter()
        .filter(|c| c.version == 2)
    {
        if reveal_epoch(&subnet, c.commit_epoch) < subnet.epochs {
            store::delete_commit(tx, c.id)?;
        } else {
            waiting.push(c);
        }
    }
    if waiting.len() >= MAX_UNREVEALED_COMMITS {
        return reject(
            "TooManyUnrevealedCommits",
            format!(
                "hotkey {hotkey} has {} unrevealed commits on subnet {netuid} (at most {MAX_UNREVEALED_COMMITS})",
                waiting.len()
            ),
        );
    }
    if let Some(last) = waiting.iter().map(|c| c.commit_block).max()
        && block.saturating_sub(last) < subnet.params.weights_rate_limit
    {
        return reject(
            "CommittingWeightsTooFast",
            format!(
                "committed at block {last}, now {block}; one commit per {} blocks",
                subnet.params.weights_rate_limit
            ),
        );
    }
    store::insert_commit(
        tx,
        &store::WeightCommit {
            id: 0,
            netuid,
            hotkey: hotkey.to_string(),
            version: 2,
            commit_block: block,
            commit_epoch: subnet.epochs,
            hash: Some(hash.to_vec()),
            reveal_round: 0,
            ciphertext: None,
        },
    )?;
    Ok(receipt(block))
}

/// `reveal_weights` (commit-reveal v2): the commit whose hash the reveal reproduces must
/// be in its reveal epoch; then the weights are checked and set, and the commit dropped.
pub(super) fn reveal_weights(
    tx: &Transaction<'_>,
    block: u64,
    hotkey: &str,
    reveal: &WeightsReveal,
) -> Result<TxReceipt, ChainError> {
    let netuid = reveal.netuid;
    let subnet = check_commit(tx, hotkey, netuid, reveal.mechid)?;
    let account = crate::chain::subtensor::parse_account(hotkey)?;
    let hash = reveal.commit_hash(account);
    let commits: Vec<_> = store::commits_of(tx, netuid, hotkey)?
        .into_iter()
        .filter(|c| c.version == 2)
        .collect();
    if commits.is_empty() {
        return reject(
            "NoWeightsCommitFound",
            format!("hotkey {hotkey} has no weights commit on subnet {netuid}"),
        );
    }
    let Some(commit) = commits
        .iter()
        .find(|c| c.hash.as_deref() == Some(&hash[..]))
    else {
        return reject(
            "InvalidRevealCommitHashNotMatch",
            "the revealed weights, salt and version key do not hash to any commit of this hotkey",
        );
    };
    let target = reveal_epoch(&subnet, commit.commit_epoch);
    if subnet.epochs < target {
        return reject(
            "RevealTooEarly",
            format!(
                "committed in epoch {}, revealable in epoch {target}; now epoch {}",
                commit.commit_epoch, subnet.epochs
            ),
        );
    }
    if subnet.epochs > target {
        store::delete_commit(tx, commit.id)?;
        return reject(
            "ExpiredWeightCommit",
            format!(
                "the commit's reveal epoch {target} has passed (now epoch {}); commit again",
                subnet.epochs
            ),
        );
    }
    store::delete_commit(tx, commit.id)?;
    apply_weights(
        tx,
        block,
        hotkey,
        netuid,
        &reveal.uids,
        &reveal.values,
        reveal.version_key,
    )
}

/// `commit_timelocked_mechanism_weights` (commit-reveal v4): keeps the ciphertext until
/// the chain's beacon reaches `reveal_round` ([`reveal_timelocked`]).
pub(super) fn commit_timelocked(
    tx: &Transaction<'_>,
    block: u64,
    hotkey: &str,
    netuid: u16,
    mechid: u8,
    commit: &[u8],
    reveal_round: u64,
) -> Result<TxReceipt, ChainError> {
    let subnet = check_commit(tx, hotkey, netuid, mechid)?;
    if commit.len() > MAX_TIMELOCKED_COMMIT_BYTES {
        return reject(
            "CommitTooLarge",
            format!(
                "{} bytes, at most {MAX_TIMELOCKED_COMMIT_BYTES}",
                commit.len()
            ),
        );
    }
    let waiting = store::commits_of(tx, netuid, hotkey)?
        .into_iter()
        .filter(|c| c.version == 4)
        .count();
    if waiting >= MAX_UNREVEALED_COMMITS {
        return reject(
            "TooManyUnrevealedCommits",
            format!("hotkey {hotkey} has {waiting} timelocked commits waiting on subnet {netuid}"),
        );
    }
    store::insert_commit(
        tx,
        &store::WeightCommit {
            id: 0,
            netuid,
            hotkey: hotkey.to_string(),
            version: 4,
            commit_block: block,
            commit_epoch: subnet.epochs,
            hash: None,
            reveal_round,
            ciphertext: Some(commit.to_vec()),
        },
    )?;
    Ok(receipt(block))
}

/// The chain's automatic reveal of timelocked commits whose round its beacon (one round
/// per block) has reached by `block`: each is decrypted with the round's
/// signature, must carry the committer's hotkey, and its weights are checked and set.
/// A commit that fails is dropped with a warning, as subtensor drops it.
pub(super) fn reveal_timelocked(tx: &Transaction<'_>, block: u64) -> Result<(), ChainError> {
    let due = store::timelocked_due(tx, block)?;
    if due.is_empty() {
        return Ok(());
    }
    let key = beacon_key(tx)?;
    for c in due {
        store::delete_commit(tx, c.id)?;
        let result = open_timelocked(&c, &key).and_then(|payload| {
            apply_weights(
                tx,
                block,
                &c.hotkey,
                c.netuid,
                &payload.uids,
                &payload.values,
                payload.version_key,
            )
        });
        match result {
            Ok(_) => tracing::info!(
                netuid = c.netuid,
                hotkey = c.hotkey,
                round = c.reveal_round,
                "timelocked weights revealed"
            ),
            Err(e) => tracing::warn!(
                netuid = c.netuid,
                hotkey = c.hotkey,
                round = c.reveal_round,
                "timelocked weights dropped: {e}"
            ),
        }
    }
    Ok(())
}

/// The chain's beacon key (made with the chain file's first use of it).
pub(super) fn beacon_key(tx: &Transaction<'_>) -> Result<BeaconKey, ChainError> {
    BeaconKey::from_bytes(&store::beacon_secret(tx)?)
        .map_err(|e| ChainError::Storage(format!("beacon key: {e}")))
}

fn open_timelocked(c: &store::WeightCommit, key: &BeaconKey) -> Result<WeightsPayload, ChainError> {
    let invalid = |reason: String| ChainError::from_dispatch("InvalidTimelockedCommit", reason);
    let ciphertext = c.ciphertext.as_deref().unwrap_or_default();
    let plain = timelock::decrypt(ciphertext, &key.sign_round(c.reveal_round))
        .map_err(|e| invalid(e.to_string()))?;
    let payload =
        WeightsPayload::decode(&mut &plain[..]).map_err(|e| invalid(format!("payload: {e}")))?;
    let account = crate::chain::subtensor::parse_account(&c.hotkey)?;
    if payload.hotkey != account {
        return Err(invalid("the payload names another hotkey".into()));
    }
    Ok(payload)
}
