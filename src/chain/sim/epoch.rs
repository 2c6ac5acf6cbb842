//! Epochs of the simulated chain: catching up on the epochs whose boundary has passed
//! before each transaction, running one Yuma Consensus epoch ([`crate::chain::yuma`])
//! on a subnet's rows, and paying its emission out as stake.

use rusqlite::Transaction;

use super::store::{self, Subnet};
use crate::chain::ChainError;
use crate::chain::yuma::{self, EpochInput};

/// Emission per block per subnet (rao), distributed at each epoch.
pub const BLOCK_EMISSION: u64 = crate::chain::RAO_PER_TAO;

/// Most epochs one catch-up runs per subnet; older pending epochs are skipped (logged).
const MAX_CATCH_UP_EPOCHS: u64 = 1000;

/// Runs every epoch whose boundary is at or before `block`, oldest first.
pub(super) fn catch_up(tx: &Transaction<'_>, block: u64) -> Result<(), ChainError> {
    for netuid in store::netuids(tx)? {
        let mut subnet = store::load_subnet(tx, netuid)?;
        let tempo = u64::from(subnet.params.tempo);
        let pending = block.saturating_sub(subnet.last_epoch_block) / tempo;
        if pending > MAX_CATCH_UP_EPOCHS {
            let skipped = pending - MAX_CATCH_UP_EPOCHS;
            tracing::warn!(netuid, skipped, "chain was idle long; skipping old epochs");
            subnet.last_epoch_block += skipped * tempo;
        }
        while subnet.last_epoch_block + tempo <= block {
            let at = subnet.last_epoch_block + tempo;
            run_epoch(tx, netuid, &subnet, at)?;
            subnet = store::load_subnet(tx, netuid)?;
        }
    }
    Ok(())
}

/// Runs an epoch of `netuid` at `block`, off schedule (an owner's epoch trigger); refused
/// when the subnet already ran one at this block.
pub(super) fn run_now(tx: &Transaction<'_>, netuid: u16, block: u64) -> Result<u64, ChainError> {
    let subnet = store::load_subnet(tx, netuid)?;
    if subnet.last_epoch_block >= block {
        return Err(ChainError::InvalidInput(format!(
            "subnet {netuid} already ran an epoch at block {block}; wait for the next block"
        )));
    }
    run_epoch(tx, netuid, &subnet, block)?;
    Ok(block)
}

/// Runs one Yuma epoch of `netuid` at block `at` and persists its outputs.
fn run_epoch(
    tx: &Transaction<'_>,
    netuid: u16,
    subnet: &Subnet,
    at: u64,
) -> Result<(), ChainError> {
    let rows = store::load_rows(tx, netuid)?;
    let p = &subnet.params;
    let emission = at
        .saturating_sub(subnet.last_epoch_block)
        .saturating_mul(BLOCK_EMISSION);
    let input = EpochInput {
        block: at,
        tempo: u64::from(p.tempo),
        last_epoch_block: subnet.last_epoch_block,
        activity_cutoff: u64::from(p.activity_cutoff),
        last_update: rows.iter().map(|r| r.info.last_update).collect(),
        block_at_registration: rows.iter().map(|r| r.info.block_at_registration).collect(),
        stake: rows.iter().map(|r| r.info.stake).collect(),
        stake_threshold: 0,
        validator_permit: rows.iter().map(|r| r.info.validator_permit).collect(),
        max_allowed_validators: p.max_allowed_validators,
        owner_uid: None,
        weights: rows.iter().map(|r| r.weights.clone()).collect(),
        bonds: rows.iter().map(|r| r.bonds.clone()).collect(),
        kappa: p.kappa,
        bonds_penalty: p.bonds_penalty,
        bonds_moving_average: p.bonds_moving_average,
        emission,
    };
    let out = yuma::epoch(&input);
    store::write_epoch_outputs(tx, netuid, &rows, &out)?;
    let mut emitted = 0u64;
    for (i, row) in rows.iter().enumerate() {
        let reward = out.server_emission[i].saturating_add(out.validator_emission[i]);
        if reward > 0 && !row.info.coldkey.is_empty() {
            store::change_stake(
                tx,
                &row.info.hotkey,
                &row.info.coldkey,
                netuid,
                i128::from(reward),
            )?;
            emitted = emitted.saturating_add(reward);
        }
    }
    store::add_issuance(tx, emitted, true)?;
    store::mark_epoch(tx, netuid, at)?;
    tracing::debug!(netuid, block = at, emitted, "epoch");
    Ok(())
}
