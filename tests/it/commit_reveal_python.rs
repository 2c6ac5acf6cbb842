//! Commit-reveal v4 against the SDK's timelock library, `bittensor-drand` 2.0.0 from
//! PyPI (a venv of its own): a ciphertext of ours opens in `decrypt_with_signature`
//! with a real drand quicknet round signature, one of `encrypt_at_round` opens in ours,
//! and our reveal round is the one `get_encrypted_commit_v2` picks for the same epoch
//! state.
//!
//! The round signature is a public test vector: quicknet round 657413 as published in
//! the README of github.com/mcdcam/python-drand-verify (`drv.verify_quicknet(657413,
//! "b713…cd97b")`, randomness `fc1873a1…3587` = sha256 of the signature), checked here
//! with a BLS pairing against quicknet's public key.

use neuron::chain::timelock::{self, Beacon, EpochSchedule, WeightsPayload};
use parity_scale_codec::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::support::{python_venv, run_python};

const ROUND: u64 = 657_413;
const SIGNATURE: &str = "b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b";
const RANDOMNESS: &str = "fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587";

fn drand_python() -> std::path::PathBuf {
    python_venv("bittensor-drand-2.0.0", &["bittensor-drand==2.0.0"])
}

fn payload() -> WeightsPayload {
    WeightsPayload {
        hotkey: (1u8..=32).collect(),
        uids: vec![0, 3, 17],
        values: vec![65535, 1234, 7],
        version_key: 10_005_000,
    }
}

#[test]
fn the_test_vector_is_a_quicknet_signature_of_its_round() {
    let sig = hex::decode(SIGNATURE).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&sig)), RANDOMNESS);
    let quicknet = Beacon::quicknet();
    assert!(quicknet.verify(ROUND, &sig).unwrap());
    assert!(!quicknet.verify(ROUND + 1, &sig).unwrap());
}

#[test]
fn our_timelocked_commit_opens_in_bittensor_drand() {
    let python = drand_python();
    let plain = payload().encode();
    let ciphertext = Beacon::quicknet().encrypt(ROUND, &plain).unwrap();
    // decrypt_with_signature takes bittensor_drand's own wrapping of a commit:
    // SCALE{encrypted_data: Vec<u8>, reveal_round: u64}.
    let wrapped = (ciphertext.clone(), ROUND).encode();
    let opened = run_python(
        &python,
        "import sys, bittensor_drand as b\n\
         print(bytes(b.decrypt_with_signature(bytes.fromhex(sys.argv[1]), sys.argv[2])).hex())",
        &[&hex::encode(&wrapped), SIGNATURE],
    );
    assert_eq!(opened.trim(), hex::encode(&plain));
    // And nothing opens it with another round's key.
    let sig = hex::decode(SIGNATURE).unwrap();
    let other = Beacon::quicknet().encrypt(ROUND + 1, &plain).unwrap();
    assert!(timelock::decrypt(&other, &sig).is_err());
}

#[test]
fn a_bittensor_drand_ciphertext_opens_in_ours() {
    let python = drand_python();
    let plain = payload().encode();
    let out = run_python(
        &python,
        "import sys, bittensor_drand as b\n\
         ct, r = b.encrypt_at_round(bytes.fromhex(sys.argv[1]), int(sys.argv[2]))\n\
         print(r, bytes(ct).hex())",
        &[&hex::encode(&plain), &ROUND.to_string()],
    );
    let (round, user_data) = out.trim().split_once(' ').unwrap();
    assert_eq!(round.parse::<u64>().unwrap(), ROUND);
    // encrypt_at_round returns SCALE{encrypted_data: Vec<u8>, reveal_round: u64}.
    let (ct, reveal_round) =
        <(Vec<u8>, u64)>::decode(&mut &hex::decode(user_data).unwrap()[..]).unwrap();
    assert_eq!(reveal_round, ROUND);
    let sig = hex::decode(SIGNATURE).unwrap();
    let opened = timelock::decrypt(&ct, &sig).unwrap();
    assert_eq!(WeightsPayload::decode(&mut &opened[..]).unwrap(), payload());
}

/// Epoch states of the cases: (last_epoch_block, pending_epoch_at, index, tempo,
/// blocks_since_last_step, current_block, reveal_period).
const STATES: [(u64, u64, u64, u64, u64, u64, u64); 6] = [
    (100, 0, 7, 50, 20, 120, 1),
    (100, 0, 7, 50, 48, 148, 1), // the commit lands in the epoch's own block
    (100, 0, 7, 50, 49, 149, 2), // already past the boundary
    (100, 130, 7, 50, 20, 120, 1), // an owner-triggered epoch comes first
    (9_029_149, 0, 25_016, 360, 48, 9_029_197, 1),
    (0, 0, 0, 1, 0, 10, 3),
];

#[test]
fn our_reveal_round_is_get_encrypted_commit_v2s() {
    let python = drand_python();
    let cases = serde_json::to_string(&STATES).unwrap();
    let out = run_python(
        &python,
        "import sys, json, time, bittensor_drand as b\n\
         out = []\n\
         for (last, pending, index, tempo, since, block, period) in json.loads(sys.argv[1]):\n\
         \x20   before = time.time()\n\
         \x20   ct, r = b.get_encrypted_commit_v2(uids=[1, 2], weights=[65535, 3], \
                version_key=1, last_epoch_block=last, pending_epoch_at=pending, \
                subnet_epoch_index=index, tempo=tempo, blocks_since_last_step=since, \
                current_block=block, subnet_reveal_period_epochs=period, block_time=12.0, \
                hotkey=bytes(range(32)))\n\
         \x20   after = time.time()\n\
         \x20   out.append([r, int(before * 1000), int(after * 1000) + 1, bytes(ct).hex()])\n\
         print(json.dumps(out))",
        &[&cases],
    );
    let results: Vec<(u64, u64, u64, String)> = serde_json::from_str(out.trim()).unwrap();
    let quicknet = Beacon::quicknet();
    let sig = hex::decode(SIGNATURE).unwrap();
    for (state, (theirs, before_ms, after_ms, commit)) in STATES.iter().zip(results) {
        let (last, pending, index, tempo, since, block, period) = *state;
        let schedule = EpochSchedule {
            last_epoch_block: last,
            pending_epoch_at: pending,
            epoch_index: index,
            tempo,
            blocks_since_last_step: since,
            current_block: block,
        };
        let ours =
            |now_ms| timelock::reveal_round(&quicknet, &schedule, period, 12_000, now_ms).unwrap();
        assert!(
            ours(before_ms) <= theirs && theirs <= ours(after_ms),
            "{state:?}: theirs {theirs}, ours {}..={}",
            ours(before_ms),
            ours(after_ms)
        );
        // Their commit is a ciphertext of our layout (it parses; only the round's key,
        // published in the future, opens it) and of our size for the same payload.
        let commit = hex::decode(commit).unwrap();
        let err = timelock::decrypt(&commit, &sig).unwrap_err();
        assert!(matches!(err, timelock::TimelockError::Decrypt(_)), "{err}");
        let mine = quicknet
            .encrypt(
                theirs,
                &WeightsPayload {
                    hotkey: (0u8..32).collect(),
                    uids: vec![1, 2],
                    values: vec![65535, 3],
                    version_key: 1,
                }
                .encode(),
            )
            .unwrap();
        assert_eq!(mine.len(), commit.len(), "{state:?}");
    }
}
