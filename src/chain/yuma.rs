//! Yuma Consensus, as subtensor's `epoch_mechanism` computes it (classic path:
//! `Yuma3On = false`, liquid alpha off), in the chain's own fixed-point arithmetic
//! (`I32F32`, `I64F64` for stake, `I96F32` for emission) so results are bit-exact.
//!
//! The math helpers follow `pallets/subtensor/src/epoch/math.rs` operation for
//! operation (same order of saturating adds, multiplies and divisions); [`epoch`] follows
//! `run_epoch.rs`. Steps: activity mask, stake (threshold, normalise), validator permits
//! (top-k non-zero stake), active stake, weight masking (permits, diagonal, outdated)
//! and row normalisation, stake-weighted median consensus with kappa, clipping,
//! incentive, bonds EMA, dividends and the emission split.

use fixed::types::{I32F32, I64F64, I96F32};

/// A sparse matrix row: `(column, value)` pairs in column order.
pub type SparseRow = Vec<(u16, I32F32)>;

/// Everything one epoch reads from chain state, per uid `0..n`.
#[derive(Debug, Clone)]
pub struct EpochInput {
    /// Block the epoch runs at.
    pub block: u64,
    /// Subnet tempo (blocks).
    pub tempo: u64,
    /// Block of the previous epoch of this subnet (0 if none).
    pub last_epoch_block: u64,
    /// Activity cutoff (blocks).
    pub activity_cutoff: u64,
    /// Block of each uid's last weights update.
    pub last_update: Vec<u64>,
    /// Block each uid registered at.
    pub block_at_registration: Vec<u64>,
    /// Raw stake of each uid (rao).
    pub stake: Vec<u64>,
    /// Stakes below this count as zero (subtensor `StakeThreshold`).
    pub stake_threshold: u64,
    /// Validator permits from the previous epoch.
    pub validator_permit: Vec<bool>,
    /// Validator permits to hand out (top-k by stake).
    pub max_allowed_validators: u16,
    /// The subnet owner's uid (keeps its permit and its self-weight).
    pub owner_uid: Option<u16>,
    /// Stored weights rows (u16, as `set_weights` stored them).
    pub weights: Vec<Vec<(u16, u16)>>,
    /// Stored bonds rows (u16, column max-upscaled).
    pub bonds: Vec<Vec<(u16, u16)>>,
    /// Consensus majority as u16.
    pub kappa: u16,
    /// Bonds penalty as u16.
    pub bonds_penalty: u16,
    /// Bonds moving average in millionths.
    pub bonds_moving_average: u64,
    /// Emission to distribute this epoch (rao).
    pub emission: u64,
}

/// What one epoch writes back, per uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochOutput {
    /// Active mask.
    pub active: Vec<bool>,
    /// Normalised stake as u16.
    pub stake_weight: Vec<u16>,
    /// Consensus as u16.
    pub consensus: Vec<u16>,
    /// Incentive as u16.
    pub incentive: Vec<u16>,
    /// Dividends as u16.
    pub dividends: Vec<u16>,
    /// Validator trust as u16.
    pub validator_trust: Vec<u16>,
    /// New validator permits.
    pub validator_permit: Vec<bool>,
    /// Miner share of the emission (rao).
    pub server_emission: Vec<u64>,
    /// Validator share of the emission (rao).
    pub validator_emission: Vec<u64>,
    /// Combined emission as stored in `Emission` (rao).
    pub emission: Vec<u64>,
    /// New bonds rows to store (empty for uids without a new permit).
    pub bonds: Vec<Vec<(u16, u16)>>,
}

/// Runs one Yuma Consensus epoch over `input` (subnet of `n = input.stake.len()` uids).
pub fn epoch(input: &EpochInput) -> EpochOutput {
    let n = input.stake.len();
    let columns = n as u16;
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    let last_update: Vec<u64> = (0..n).map(|i| at(&input.last_update, i)).collect();
    let block_at_registration: Vec<u64> = (0..n)
        .map(|i| at(&input.block_at_registration, i))
        .collect();

    // Active & updated.
    let inactive: Vec<bool> = last_update
        .iter()
        .map(|u| u.saturating_add(input.activity_cutoff) < input.block)
        .collect();
    let active: Vec<bool> = inactive.iter().map(|b| !b).collect();

    // Stake.
    let total_stake: Vec<I64F64> = input
        .stake
        .iter()
        .map(|&s| I64F64::saturating_from_num(s))
        .collect();
    let mut filtered_stake: Vec<I64F64> = total_stake
        .iter()
        .enumerate()
        .map(|(uid, &s)| {
            if input.owner_uid != Some(uid as u16)
                && s.saturating_to_num::<u64>() < input.stake_threshold
            {
                I64F64::ZERO
            } else {
                s
            }
        })
        .collect();
    inplace_normalize_64(&mut filtered_stake);
    let stake: Vec<I32F32> = filtered_stake
        .into_iter()
        .map(I32F32::saturating_from_num)
        .collect();

    // Validator permits.
    let mut validator_permits: Vec<bool> = (0..n)
        .map(|i| input.validator_permit.get(i).copied().unwrap_or(false))
        .collect();
    let mut new_validator_permits = is_topk_nonzero(&stake, input.max_allowed_validators as usize);
    if let Some(owner) = input.owner_uid.map(usize::from) {
        if let Some(p) = validator_permits.get_mut(owner) {
            *p = true;
        }
        if let Some(p) = new_validator_permits.get_mut(owner) {
            *p = true;
        }
    }
    let validator_forbids: Vec<bool> = validator_permits.iter().map(|b| !b).collect();

    // Active stake.
    let mut active_stake = stake.clone();
    inplace_mask_vector(&inactive, &mut active_stake);
    inplace_mask_vector(&validator_forbids, &mut active_stake);
    inplace_normalize(&mut active_stake);

    // Weights.
    let mut weights: Vec<SparseRow> = vec![Vec::new(); n];
    for (i, row) in input.weights.iter().enumerate().take(n) {
        weights[i] = row
            .iter()
            .filter(|(j, _)| (*j as usize) < n)
            .map(|&(j, w)| (j, I32F32::from_num(w)))
            .collect();
    }
    weights = mask_rows_sparse(&validator_forbids, &weights);
    weights = match input.owner_uid {
        Some(owner) => mask_diag_sparse_except_index(&weights, owner),
        None => mask_diag_sparse(&weights),
    };
    weights = vec_mask_sparse_matrix(&weights, &last_update, &block_at_registration, |u, r| {
        u <= r
    });
    inplace_row_normalize_sparse(&mut weights);

    // Consensus, validator trust.
    let kappa = u16_proportion(input.kappa);
    let consensus = weighted_median_col_sparse(&active_stake, &weights, columns, kappa);
    let clipped_weights = col_clip_sparse(&weights, &consensus);
    let validator_trust = row_sum_sparse(&clipped_weights);

    // Incentive.
    let mut ranks = matmul_sparse(&clipped_weights, &active_stake, columns);
    inplace_normalize(&mut ranks);
    let incentive = ranks;

    // Bonds and dividends (classic Yuma).
    let bonds_penalty = u16_proportion(input.bonds_penalty);
    let weights_for_bonds = interpolate_sparse(&weights, &clipped_weights, columns, bonds_penalty);
    let mut bonds: Vec<SparseRow> = vec![Vec::new(); n];
    for (i, row) in input.bonds.iter().enumerate().take(n) {
        bonds[i] = row.iter().map(|&(j, b)| (j, I32F32::from_num(b))).collect();
    }
    let last_tempo = if input.last_epoch_block == 0 {
        input.block.saturating_sub(input.tempo)
    } else {
        input.last_epoch_block.saturating_add(1)
    };
    bonds =
        scalar_vec_mask_sparse_matrix(&bonds, last_tempo, &block_at_registration, |t, r| t <= r);
    inplace_col_normalize_sparse(&mut bonds, columns);
    let mut bonds_delta = row_hadamard_sparse(&weights_for_bonds, &active_stake);
    inplace_col_normalize_sparse(&mut bonds_delta, columns);
    let moving_average = I64F64::saturating_from_num(input.bonds_moving_average)
        .checked_div(I64F64::from_num(1_000_000))
        .unwrap_or_default();
    let alpha = I32F32::from_num(1).saturating_sub(I32F32::saturating_from_num(moving_average));
    let mut ema_bonds = mat_ema_sparse(&bonds_delta, &bonds, alpha);
    inplace_col_normalize_sparse(&mut ema_bonds, columns);
    let mut dividends = matmul_transpose_sparse(&ema_bonds, &incentive);
    inplace_normalize(&mut dividends);
    inplace_col_max_upscale_sparse(&mut ema_bonds, columns);

    // Emission.
    let combined: Vec<I32F32> = incentive
        .iter()
        .zip(&dividends)
        .map(|(i, d)| i.saturating_add(*d))
        .collect();
    let emission_sum: I32F32 = combined.iter().fold(I32F32::ZERO, |a, b| a + *b);
    let mut normalized_server = incentive.clone();
    let mut normalized_validator = dividends.clone();
    let mut normalized_combined = combined;
    inplace_normalize_using_sum(&mut normalized_server, emission_sum);
    inplace_normalize_using_sum(&mut normalized_validator, emission_sum);
    inplace_normalize(&mut normalized_combined);
    if emission_sum == I32F32::ZERO {
        let fallback = if is_zero(&active_stake) {
            &stake
        } else {
            &active_stake
        };
        normalized_validator.clone_from(fallback);
        normalized_combined.clone_from(fallback);
    }
    let rao = I96F32::saturating_from_num(input.emission);
    let to_rao = |v: &[I32F32]| -> Vec<u64> {
        v.iter()
            .map(|x| {
                I96F32::saturating_from_num(*x)
                    .saturating_mul(rao)
                    .saturating_to_num::<u64>()
            })
            .collect()
    };

    let to_u16 =
        |v: &[I32F32]| -> Vec<u16> { v.iter().map(|x| fixed_proportion_to_u16(*x)).collect() };
    let bonds_out = (0..n)
        .map(|i| {
            if new_validator_permits[i] {
                ema_bonds[i]
                    .iter()
                    .map(|&(j, v)| (j, fixed_proportion_to_u16(v)))
                    .collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    EpochOutput {
        active,
        stake_weight: to_u16(&stake),
        consensus: to_u16(&consensus),
        incentive: to_u16(&incentive),
        dividends: to_u16(&dividends),
        validator_trust: to_u16(&validator_trust),
        validator_permit: new_validator_permits,
        server_emission: to_rao(&normalized_server),
        validator_emission: to_rao(&normalized_validator),
        emission: to_rao(&normalized_combined),
        bonds: bonds_out,
    }
}

/// `x / 65535` as `I32F32` (kappa, bonds penalty).
fn u16_proportion(x: u16) -> I32F32 {
    I32F32::from_num(x)
        .checked_div(I32F32::from_num(u16::MAX))
        .unwrap_or_default()
}

/// Division returning 0 on division by zero or overflow (subtensor `safe_div`).
fn safe_div(x: I32F32, y: I32F32) -> I32F32 {
    x.checked_div(y).unwrap_or_default()
}

/// `floor(x * 65535)` saturated to u16.
pub fn fixed_proportion_to_u16(x: I32F32) -> u16 {
    x.saturating_mul(I32F32::from_num(u16::MAX))
        .saturating_to_num::<u16>()
}

/// Max-upscales a non-negative vector to u16 so its maximum becomes 65535 (rounded).
pub fn vec_max_upscale_to_u16(vec: &[I32F32]) -> Vec<u16> {
    let u16_max = I32F32::from_num(u16::MAX);
    let threshold = I32F32::from_num(32768);
    match vec.iter().max() {
        Some(&max) if max == I32F32::ZERO => vec
            .iter()
            .map(|e| e.saturating_mul(u16_max).saturating_to_num::<u16>())
            .collect(),
        Some(&max) if max > threshold => vec
            .iter()
            .map(|e| {
                e.saturating_mul(safe_div(u16_max, max))
                    .round()
                    .saturating_to_num::<u16>()
            })
            .collect(),
        Some(&max) => vec
            .iter()
            .map(|e| {
                safe_div(e.saturating_mul(u16_max), max)
                    .round()
                    .saturating_to_num::<u16>()
            })
            .collect(),
        None => Vec::new(),
    }
}

/// Max-upscales u16 weights so the largest becomes 65535, as the chain stores them.
pub fn vec_u16_max_upscale_to_u16(vec: &[u16]) -> Vec<u16> {
    let fixed: Vec<I32F32> = vec.iter().map(|&e| I32F32::from_num(e)).collect();
    vec_max_upscale_to_u16(&fixed)
}

/// Whether the largest normalised value of `vec` is at most `max_limit / 65535`.
pub fn check_vec_max_limited(vec: &[u16], max_limit: u16) -> bool {
    let limit = u16_proportion(max_limit);
    let mut fixed: Vec<I32F32> = vec.iter().map(|&e| I32F32::from_num(e)).collect();
    inplace_normalize(&mut fixed);
    fixed.iter().max().is_none_or(|m| *m <= limit)
}

fn is_zero(v: &[I32F32]) -> bool {
    v.iter().fold(I32F32::ZERO, |a, b| a + *b) == I32F32::ZERO
}

/// True for the k largest non-zero entries (ties broken by a stable ascending sort).
pub fn is_topk_nonzero(vector: &[I32F32], k: usize) -> Vec<bool> {
    let n = vector.len();
    let mut result: Vec<bool> = vector.iter().map(|&e| e != I32F32::ZERO).collect();
    if n < k {
        return result;
    }
    let mut idxs: Vec<usize> = (0..n).collect();
    idxs.sort_by_key(|&i| vector[i]);
    for &i in idxs.iter().take(n - k) {
        result[i] = false;
    }
    result
}

/// Normalises to sum 1 in place (unchanged when the sum is 0).
pub fn inplace_normalize(x: &mut [I32F32]) {
    let sum = x.iter().fold(I32F32::ZERO, |a, b| a + *b);
    inplace_normalize_using_sum(x, sum);
}

fn inplace_normalize_using_sum(x: &mut [I32F32], sum: I32F32) {
    if sum == I32F32::ZERO {
        return;
    }
    x.iter_mut().for_each(|v| *v = safe_div(*v, sum));
}

fn inplace_normalize_64(x: &mut [I64F64]) {
    let sum = x.iter().fold(I64F64::ZERO, |a, b| a.saturating_add(*b));
    if sum == I64F64::ZERO {
        return;
    }
    x.iter_mut()
        .for_each(|v| *v = v.checked_div(sum).unwrap_or_default());
}

fn inplace_mask_vector(mask: &[bool], vector: &mut [I32F32]) {
    for (v, &m) in vector.iter_mut().zip(mask) {
        if m {
            *v = I32F32::ZERO;
        }
    }
}

fn mask_rows_sparse(mask: &[bool], m: &[SparseRow]) -> Vec<SparseRow> {
    m.iter()
        .enumerate()
        .map(|(i, row)| {
            if mask.get(i).copied().unwrap_or(true) {
                Vec::new()
            } else {
                row.clone()
            }
        })
        .collect()
}

fn mask_diag_sparse(m: &[SparseRow]) -> Vec<SparseRow> {
    m.iter()
        .enumerate()
        .map(|(i, row)| {
            row.iter()
                .filter(|(j, _)| i != *j as usize)
                .copied()
                .collect()
        })
        .collect()
}

fn mask_diag_sparse_except_index(m: &[SparseRow], except: u16) -> Vec<SparseRow> {
    m.iter()
        .enumerate()
        .map(|(i, row)| {
            row.iter()
                .filter(|(j, _)| i != *j as usize || (i == except as usize && *j == except))
                .copied()
                .collect()
        })
        .collect()
}

fn vec_mask_sparse_matrix(
    m: &[SparseRow],
    first: &[u64],
    second: &[u64],
    mask_fn: impl Fn(u64, u64) -> bool,
) -> Vec<SparseRow> {
    m.iter()
        .enumerate()
        .map(|(i, row)| {
            let fv = first.get(i).copied().unwrap_or(0);
            row.iter()
                .filter(|(j, _)| !mask_fn(fv, second.get(*j as usize).copied().unwrap_or(0)))
                .copied()
                .collect()
        })
        .collect()
}

fn scalar_vec_mask_sparse_matrix(
    m: &[SparseRow],
    scalar: u64,
    vector: &[u64],
    mask_fn: impl Fn(u64, u64) -> bool,
) -> Vec<SparseRow> {
    m.iter()
        .map(|row| {
            row.iter()
                .filter(|(j, _)| !mask_fn(scalar, vector.get(*j as usize).copied().unwrap_or(0)))
                .copied()
                .collect()
        })
        .collect()
}

fn inplace_row_normalize_sparse(m: &mut [SparseRow]) {
    for row in m.iter_mut() {
        let sum = row.iter().fold(I32F32::ZERO, |a, (_, v)| a + *v);
        if sum > I32F32::ZERO {
            row.iter_mut().for_each(|(_, v)| *v = safe_div(*v, sum));
        }
    }
}

fn row_sum_sparse(m: &[SparseRow]) -> Vec<I32F32> {
    m.iter()
        .map(|row| row.iter().fold(I32F32::ZERO, |a, (_, v)| a + *v))
        .collect()
}

fn inplace_col_normalize_sparse(m: &mut [SparseRow], columns: u16) {
    let mut col_sum = vec![I32F32::ZERO; columns as usize];
    for row in m.iter() {
        for &(j, v) in row {
            if let Some(s) = col_sum.get_mut(j as usize) {
                *s = s.saturating_add(v);
            }
        }
    }
    for row in m.iter_mut() {
        for (j, v) in row.iter_mut() {
            let d = col_sum.get(*j as usize).copied().unwrap_or_default();
            if d != I32F32::ZERO {
                *v = safe_div(*v, d);
            }
        }
    }
}

fn inplace_col_max_upscale_sparse(m: &mut [SparseRow], columns: u16) {
    let mut col_max = vec![I32F32::ZERO; columns as usize];
    for row in m.iter() {
        for &(j, v) in row {
            if let Some(c) = col_max.get_mut(j as usize)
                && *c < v
            {
                *c = v;
            }
        }
    }
    for row in m.iter_mut() {
        for (j, v) in row.iter_mut() {
            let c = col_max.get(*j as usize).copied().unwrap_or_default();
            if c != I32F32::ZERO {
                *v = safe_div(*v, c);
            }
        }
    }
}

fn row_hadamard_sparse(m: &[SparseRow], vector: &[I32F32]) -> Vec<SparseRow> {
    m.iter()
        .zip(vector)
        .map(|(row, &s)| row.iter().map(|&(j, v)| (j, v.saturating_mul(s))).collect())
        .collect()
}

fn matmul_sparse(m: &[SparseRow], vector: &[I32F32], columns: u16) -> Vec<I32F32> {
    let mut result = vec![I32F32::ZERO; columns as usize];
    for (i, row) in m.iter().enumerate() {
        let s = vector.get(i).copied().unwrap_or_default();
        for &(j, v) in row {
            if let Some(r) = result.get_mut(j as usize) {
                *r = r.saturating_add(s.saturating_mul(v));
            }
        }
    }
    result
}

fn matmul_transpose_sparse(m: &[SparseRow], vector: &[I32F32]) -> Vec<I32F32> {
    m.iter()
        .map(|row| {
            row.iter().fold(I32F32::ZERO, |acc, &(j, v)| {
                let x = vector.get(j as usize).copied().unwrap_or_default();
                acc.saturating_add(x.saturating_mul(v))
            })
        })
        .collect()
}

fn col_clip_sparse(m: &[SparseRow], threshold: &[I32F32]) -> Vec<SparseRow> {
    m.iter()
        .map(|row| {
            let mut out = Vec::with_capacity(row.len());
            for &(j, v) in row {
                let th = threshold.get(j as usize).copied().unwrap_or_default();
                if th < v {
                    if th > I32F32::ZERO {
                        out.push((j, th));
                    }
                } else {
                    out.push((j, v));
                }
            }
            out
        })
        .collect()
}

/// Stake-weighted median by mid-pivot binary search (subtensor `weighted_median`).
pub fn weighted_median(
    stake: &[I32F32],
    score: &[I32F32],
    partition_idx: &[usize],
    minority: I32F32,
    mut partition_lo: I32F32,
    mut partition_hi: I32F32,
) -> I32F32 {
    if stake.len() != score.len() {
        return I32F32::ZERO;
    }
    let get = |v: &[I32F32], i: usize| v.get(i).copied().unwrap_or_default();
    let mut current: Vec<usize> = partition_idx.to_vec();
    let limit = partition_idx.len();
    let mut lower = Vec::new();
    let mut upper = Vec::new();
    for _ in 0..=limit {
        match current.len() {
            0 => return I32F32::ZERO,
            1 => return get(score, current[0]),
            _ => {}
        }
        let pivot = get(score, current[current.len() / 2]);
        let mut lo_stake = I32F32::ZERO;
        let mut hi_stake = I32F32::ZERO;
        for &idx in &current {
            let s = get(score, idx);
            if s == pivot {
                continue;
            }
            if s < pivot {
                lo_stake = lo_stake.saturating_add(get(stake, idx));
                lower.push(idx);
            } else {
                hi_stake = hi_stake.saturating_add(get(stake, idx));
                upper.push(idx);
            }
        }
        if minority < partition_lo.saturating_add(lo_stake) && !lower.is_empty() {
            partition_hi = partition_lo.saturating_add(lo_stake);
            std::mem::swap(&mut current, &mut lower);
        } else if partition_hi.saturating_sub(hi_stake) <= minority && !upper.is_empty() {
            partition_lo = partition_hi.saturating_sub(hi_stake);
            std::mem::swap(&mut current, &mut upper);
        } else {
            return pivot;
        }
        lower.clear();
        upper.clear();
    }
    I32F32::ZERO
}

/// Column-wise stake-weighted median over the rows with positive stake.
pub fn weighted_median_col_sparse(
    stake: &[I32F32],
    score: &[SparseRow],
    columns: u16,
    majority: I32F32,
) -> Vec<I32F32> {
    let mut use_stake: Vec<I32F32> = stake
        .iter()
        .copied()
        .filter(|&s| s > I32F32::ZERO)
        .collect();
    inplace_normalize(&mut use_stake);
    let stake_sum = use_stake.iter().fold(I32F32::ZERO, |a, b| a + *b);
    let minority = stake_sum.saturating_sub(majority);
    let stake_idx: Vec<usize> = (0..use_stake.len()).collect();
    let mut use_score = vec![vec![I32F32::ZERO; use_stake.len()]; columns as usize];
    let mut k = 0;
    for (&s, row) in stake.iter().zip(score) {
        if s > I32F32::ZERO {
            for &(c, v) in row {
                if let Some(cell) = use_score.get_mut(c as usize).and_then(|col| col.get_mut(k)) {
                    *cell = v;
                }
            }
            k += 1;
        }
    }
    use_score
        .iter()
        .map(|col| {
            weighted_median(
                &use_stake,
                col,
                &stake_idx,
                minority,
                I32F32::ZERO,
                stake_sum,
            )
        })
        .collect()
}

fn interpolate_sparse(
    mat1: &[SparseRow],
    mat2: &[SparseRow],
    columns: u16,
    ratio: I32F32,
) -> Vec<SparseRow> {
    if ratio == I32F32::ZERO {
        return mat1.to_vec();
    }
    if ratio == I32F32::from_num(1) || mat1.len() != mat2.len() {
        return mat2.to_vec();
    }
    let dense = |row: &SparseRow| {
        let mut d = vec![I32F32::ZERO; columns as usize];
        for &(j, v) in row {
            if let Some(e) = d.get_mut(j as usize) {
                *e = v;
            }
        }
        d
    };
    mat1.iter()
        .zip(mat2)
        .map(|(r1, r2)| {
            let (d1, d2) = (dense(r1), dense(r2));
            d1.iter()
                .zip(&d2)
                .enumerate()
                .filter_map(|(j, (v1, v2))| {
                    let x = v1.saturating_add(ratio.saturating_mul(v2.saturating_sub(*v1)));
                    (x > I32F32::ZERO).then_some((j as u16, x))
                })
                .collect()
        })
        .collect()
}

fn mat_ema_sparse(new: &[SparseRow], old: &[SparseRow], alpha: I32F32) -> Vec<SparseRow> {
    let n = new.len();
    let one_minus_alpha = I32F32::from_num(1).saturating_sub(alpha);
    let mut old_it = old.iter();
    new.iter()
        .map(|new_row| {
            let mut acc = vec![I32F32::ZERO; n];
            for &(j, v) in new_row {
                if let Some(c) = acc.get_mut(j as usize) {
                    *c = c.saturating_add(alpha.saturating_mul(v));
                }
            }
            if let Some(old_row) = old_it.next() {
                for &(j, v) in old_row {
                    if let Some(c) = acc.get_mut(j as usize) {
                        *c = c.saturating_add(one_minus_alpha.saturating_mul(v));
                    }
                }
            }
            acc.iter()
                .enumerate()
                .filter(|(_, v)| **v > I32F32::ZERO)
                .map(|(j, v)| (j as u16, *v))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Ported from subtensor `pallets/subtensor/src/tests/math.rs` (exact comparisons).
    use super::*;

    fn fx(v: f32) -> I32F32 {
        I32F32::from_num(v)
    }

    fn fxs(v: &[f32]) -> Vec<I32F32> {
        v.iter().map(|&x| fx(x)).collect()
    }

    /// Row-major dense `f32` values as sparse rows, dropping zeros.
    fn sparse(values: &[f32], rows: usize) -> Vec<SparseRow> {
        let cols = values.len() / rows;
        (0..rows)
            .map(|i| {
                (0..cols)
                    .filter(|&j| values[i * cols + j] != 0.0)
                    .map(|j| (j as u16, fx(values[i * cols + j])))
                    .collect()
            })
            .collect()
    }

    fn median(stake: &[f32], score: &[f32], majority: f32) -> I32F32 {
        let stake = fxs(stake);
        let sum = stake.iter().fold(I32F32::ZERO, |a, b| a + *b);
        let idx: Vec<usize> = (0..stake.len()).collect();
        weighted_median(
            &stake,
            &fxs(score),
            &idx,
            fx(1.0) - fx(majority),
            I32F32::ZERO,
            sum,
        )
    }

    #[test]
    fn weighted_median_matches_subtensor() {
        assert_eq!(median(&[], &[], 0.51), I32F32::ZERO);
        let mut one = fxs(&[0.51]);
        inplace_normalize(&mut one);
        let idx = [0usize];
        assert_eq!(
            weighted_median(
                &one,
                &fxs(&[1.0]),
                &idx,
                fx(1.0) - fx(0.51),
                I32F32::ZERO,
                one[0]
            ),
            fx(1.0)
        );
        assert_eq!(median(&[0.49, 0.51], &[0.5, 1.0], 0.51), fx(1.0));
        assert_eq!(median(&[0.51, 0.49], &[0.5, 1.0], 0.51), fx(0.5));
        assert_eq!(median(&[0.49, 0.0, 0.51], &[0.5, 0.7, 1.0], 0.51), fx(1.0));
        assert_eq!(median(&[0.49, 0.01, 0.5], &[0.5, 0.7, 1.0], 0.51), fx(0.7));
    }

    #[test]
    fn weighted_median_col_sparse_matches_subtensor() {
        assert_eq!(
            weighted_median_col_sparse(&[], &[vec![]], 0, fx(0.5)),
            Vec::<I32F32>::new()
        );
        let w = sparse(&[0., 0., 0., 0.], 2);
        assert_eq!(
            weighted_median_col_sparse(&fxs(&[0., 0.]), &w, 2, fx(0.5)),
            fxs(&[0., 0.])
        );
        let stake = fxs(&[0., 0.75, 0.25, 0.]);
        let w = sparse(&[0., 0.1, 0., 0., 0.2, 0.4, 0., 0.3, 0.1, 0., 0.4, 0.5], 4);
        assert_eq!(
            weighted_median_col_sparse(&stake, &w, 3, fx(0.24)),
            fxs(&[0., 0.3, 0.4])
        );
        assert_eq!(
            weighted_median_col_sparse(&stake, &w, 3, fx(0.26)),
            fxs(&[0., 0.2, 0.4])
        );
        assert_eq!(
            weighted_median_col_sparse(&stake, &w, 3, fx(0.76)),
            fxs(&[0., 0.2, 0.1])
        );
        let stake = fxs(&[0., 0.3, 0.2, 0.5]);
        let w = sparse(&[0., 0.1, 0., 0., 0.2, 0.4, 0., 0.3, 0.1, 0., 0., 0.5], 4);
        assert_eq!(
            weighted_median_col_sparse(&stake, &w, 3, fx(0.51)),
            fxs(&[0., 0., 0.4])
        );
    }

    #[test]
    fn u16_max_upscale_matches_chain_storage() {
        // Values the chain stores for the weights used in subtensor's test_bonds.
        assert_eq!(
            vec_u16_max_upscale_to_u16(&[16383, 32767, 49149, 65535]),
            vec![16383, 32767, 49149, 65535]
        );
        assert_eq!(vec_u16_max_upscale_to_u16(&[127, 127]), vec![65535, 65535]);
        assert_eq!(vec_u16_max_upscale_to_u16(&[1, 2]), vec![32768, 65535]);
        assert_eq!(vec_u16_max_upscale_to_u16(&[0, 0]), vec![0, 0]);
        assert_eq!(vec_u16_max_upscale_to_u16(&[]), Vec::<u16>::new());
    }

    #[test]
    fn max_limit_check() {
        assert!(check_vec_max_limited(&[65535, 65535], 32768));
        assert!(!check_vec_max_limited(&[65535, 0], 32768));
        assert!(check_vec_max_limited(&[], 0));
    }

    #[test]
    fn topk_nonzero_keeps_largest_nonzero() {
        let v = fxs(&[0.0, 0.1, 0.3, 0.2]);
        assert_eq!(is_topk_nonzero(&v, 2), vec![false, false, true, true]);
        assert_eq!(is_topk_nonzero(&v, 8), vec![false, true, true, true]);
    }
}
