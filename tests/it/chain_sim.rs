//! The simulated chain (`local-sim`, `chain::sim`) through the `Chain` trait: every
//! `set_weights` check in subtensor's order, registration and pruning, serving, stake,
//! transfers, commitments and epochs, on a real SQLite file with real sr25519 keys.

use std::time::Duration;

use neuron::chain::sim::{SimChain, SimConfig};
use neuron::chain::{AxonServe, Chain, ChainError, Hyperparameters, RAO_PER_TAO};
use neuron::wallet::Keypair;

use crate::support::wait_for_block;

fn key(uri: &str) -> Keypair {
    Keypair::from_uri(uri).expect("dev key")
}

/// A fresh chain with 100 ms blocks in a temp dir.
fn chain(dir: &tempfile::TempDir) -> SimChain {
    SimChain::create(
        &dir.path().join("chain.sqlite"),
        SimConfig {
            block_time: Duration::from_millis(100),
        },
    )
    .expect("create chain")
}

fn params() -> Hyperparameters {
    Hyperparameters {
        tempo: 10_000,
        min_allowed_weights: 1,
        weights_rate_limit: 0,
        serving_rate_limit: 0,
        ..Hyperparameters::default()
    }
}

/// Funds `coldkey` and registers `hotkey` with it; returns the uid.
async fn register(chain: &SimChain, netuid: u16, coldkey: &Keypair, hotkey: &Keypair) -> u16 {
    chain
        .faucet(&coldkey.ss58(), 10 * RAO_PER_TAO)
        .await
        .unwrap();
    chain
        .burned_register(coldkey, netuid, &hotkey.ss58())
        .await
        .unwrap()
}

fn error_name(result: Result<impl std::fmt::Debug, ChainError>) -> String {
    let err = result.expect_err("the chain should refuse this");
    err.chain_error()
        .unwrap_or_else(|| panic!("not a chain refusal: {err}"))
        .to_string()
}

/// Subnet of a validator (uid 0, staked, permitted) and two miners.
async fn subnet_with_validator(chain: &SimChain) -> (u16, Keypair, Keypair, Keypair) {
    let owner = key("//Owner");
    let netuid = chain.create_subnet(&owner.ss58(), params()).await.unwrap();
    let (v, m1, m2) = (key("//Val"), key("//Miner1"), key("//Miner2"));
    for k in [&v, &m1, &m2] {
        register(chain, netuid, k, k).await;
    }
    chain
        .add_stake(&v, &v.ss58(), netuid, 5 * RAO_PER_TAO)
        .await
        .unwrap();
    let created = chain.epoch_status(netuid).await.unwrap().last_epoch_block;
    wait_for_block(chain, created + 1).await;
    chain.run_epoch_now(netuid).await.unwrap();

    let mg = chain.metagraph(netuid).await.unwrap();
    assert!(mg.neurons[0].validator_permit, "staked uid 0 gets a permit");
    assert!(!mg.neurons[1].validator_permit);
    (netuid, v, m1, m2)
}

#[tokio::test]
async fn set_weights_checks_in_chain_order() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(&dir);
    let (netuid, v, m1, _m2) = subnet_with_validator(&chain).await;
    let stranger = key("//Stranger");

    // Commit-reveal subnets refuse plain set_weights.
    let cr = chain
        .create_subnet(
            &v.ss58(),
            Hyperparameters {
                commit_reveal_weights_enabled: true,
                ..params()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        error_name(chain.set_weights(&v, cr, &[0], &[1], 0).await),
        "CommitRevealEnabled"
    );
    assert!(matches!(
        chain.set_weights(&v, cr, &[0], &[1], 0).await,
        Err(ChainError::CommitRevealEnabled { .. })
    ));

    let sw = |k: &Keypair, uids: &[u16], w: &[u16], version: u64| {
        let (chain, k, uids, w) = (chain.clone(), k.clone(), uids.to_vec(), w.to_vec());
        async move { chain.set_weights(&k, netuid, &uids, &w, version).await }
    };
    assert_eq!(
        error_name(sw(&v, &[1, 2], &[1], 0).await),
        "WeightVecNotEqualSize"
    );
    assert_eq!(
        error_name(sw(&v, &[0, 1, 2, 3], &[1, 1, 1, 1], 0).await),
        "UidsLengthExceedUidsInSubNet"
    );
    assert!(matches!(
        sw(&stranger, &[1], &[1], 0).await,
        Err(ChainError::NotRegistered { .. })
    ));
    // An unregistered hotkey with duplicate uids: the earlier check wins.
    assert_eq!(
        error_name(sw(&stranger, &[1, 1], &[1, 1], 0).await),
        "HotKeyNotRegisteredInSubNet"
    );

    // Weights at a block after genesis, so the rate limit has a last update to count from.
    wait_for_block(&chain, 1).await;
    sw(&v, &[1, 2], &[1, 1], 0).await.expect("first weights");
    chain
        .set_hyperparameters(
            netuid,
            Hyperparameters {
                weights_version_key: 5,
                weights_rate_limit: 1000,
                ..params()
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        sw(&v, &[1], &[1], 4).await,
        Err(ChainError::BadVersionKey { .. })
    ));
    let err = sw(&v, &[1], &[1], 5).await.unwrap_err();
    assert!(matches!(err, ChainError::RateLimited { .. }), "{err}");
    assert!(
        err.to_string().contains("rate limit is 1000 blocks"),
        "{err}"
    );

    chain
        .set_hyperparameters(
            netuid,
            Hyperparameters {
                min_allowed_weights: 2,
                max_weight_limit: 40_000,
                ..params()
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        sw(&m1, &[0, 2], &[1, 1], 0).await,
        Err(ChainError::NoValidatorPermit { .. })
    ));
    // A single self-weight needs no permit, nor the minimum length or weight limit.
    sw(&m1, &[1], &[7], 0).await.expect("self-weight");
    assert_eq!(
        error_name(sw(&v, &[1, 1], &[1, 1], 0).await),
        "DuplicateUids"
    );
    assert_eq!(
        error_name(sw(&v, &[1, 7], &[1, 1], 0).await),
        "UidVecContainInvalidOne"
    );
    assert_eq!(
        error_name(sw(&v, &[1], &[1], 0).await),
        "WeightVecLengthIsLow"
    );
    assert_eq!(
        error_name(sw(&v, &[1, 2], &[65535, 1], 0).await),
        "MaxWeightExceeded"
    );
    let receipt = sw(&v, &[1, 2], &[3, 3], 0).await.expect("valid weights");

    let mg = chain.metagraph(netuid).await.unwrap();
    assert_eq!(mg.neurons[0].last_update, receipt.block);
}

#[tokio::test]
async fn epoch_rewards_weighted_miner_and_conserves_value() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(&dir);
    let (netuid, v, _m1, _m2) = subnet_with_validator(&chain).await;
    let reg_block = chain.metagraph(netuid).await.unwrap().neurons[2].block_at_registration;
    // Weights must be newer than the miners' registration to count.
    wait_for_block(&chain, reg_block + 1).await;
    chain
        .set_weights(&v, netuid, &[1], &[65535], 0)
        .await
        .unwrap();
    wait_for_block(&chain, chain.current_block().await.unwrap() + 1).await;
    chain.run_epoch_now(netuid).await.unwrap();

    let mg = chain.metagraph(netuid).await.unwrap();
    assert_eq!(mg.neurons[1].incentive, 65535, "all incentive to uid 1");
    assert_eq!(mg.neurons[1].consensus, 65535);
    assert_eq!(mg.neurons[2].incentive, 0);
    assert_eq!(
        mg.neurons[0].dividends, 65535,
        "all dividends to the validator"
    );
    assert!(mg.neurons[1].emission > 0 && mg.neurons[0].emission > 0);
    assert_eq!(mg.neurons[2].emission, 0);
    assert!(
        mg.neurons[1].stake > 0,
        "miner emission is staked to its hotkey"
    );
    let status = chain.status().await.unwrap();
    assert_eq!(status.issuance, status.accounted);
}

#[tokio::test]
async fn registration_prunes_lowest_emission_non_immune_uid() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(&dir);
    let (netuid, v, m1, m2) = subnet_with_validator(&chain).await;
    chain
        .set_hyperparameters(
            netuid,
            Hyperparameters {
                max_allowed_uids: 3,
                immunity_period: 0,
                ..params()
            },
        )
        .await
        .unwrap();
    let reg_block = chain.metagraph(netuid).await.unwrap().neurons[2].block_at_registration;
    wait_for_block(&chain, reg_block + 1).await;
    chain
        .set_weights(&v, netuid, &[1], &[65535], 0)
        .await
        .unwrap();
    chain
        .set_commitment(&m2, netuid, b"m2 model")
        .await
        .unwrap();
    wait_for_block(&chain, chain.current_block().await.unwrap() + 1).await;
    chain.run_epoch_now(netuid).await.unwrap();

    let newcomer = key("//Newcomer");
    let uid = register(&chain, netuid, &newcomer, &newcomer).await;
    assert_eq!(uid, 2, "uid 2 earned no emission, so it is pruned");
    let mg = chain.metagraph(netuid).await.unwrap();
    assert_eq!(mg.neurons.len(), 3);
    assert_eq!(mg.neurons[2].hotkey, newcomer.ss58());
    assert_eq!(mg.neurons[2].emission, 0);
    assert!(!mg.neurons[2].validator_permit);
    assert_eq!(mg.uid_of(&m1.ss58()), Some(1));
    assert_eq!(mg.uid_of(&m2.ss58()), None);
    assert!(chain.commitments(netuid).await.unwrap().is_empty());

    // When every uid is immune the lowest-emission immune one goes.
    chain
        .set_hyperparameters(
            netuid,
            Hyperparameters {
                max_allowed_uids: 3,
                immunity_period: u16::MAX,
                ..params()
            },
        )
        .await
        .unwrap();
    let late = key("//Late");
    assert_eq!(register(&chain, netuid, &late, &late).await, 2);
}

#[tokio::test]
async fn registration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(&dir);
    let owner = key("//Owner");
    let netuid = chain.create_subnet(&owner.ss58(), params()).await.unwrap();
    let (cold, hot) = (key("//Cold"), key("//Hot"));
    assert!(matches!(
        chain.burned_register(&cold, netuid, &hot.ss58()).await,
        Err(ChainError::InsufficientFunds { .. })
    ));
    assert!(matches!(
        chain.burned_register(&cold, 99, &hot.ss58()).await,
        Err(ChainError::SubnetNotFound { .. })
    ));
    register(&chain, netuid, &cold, &hot).await;
    assert!(matches!(
        chain.burned_register(&cold, netuid, &hot.ss58()).await,
        Err(ChainError::AlreadyRegistered { .. })
    ));
    let other = key("//OtherCold");
    let netuid2 = chain.create_subnet(&owner.ss58(), params()).await.unwrap();
    chain.faucet(&other.ss58(), 10 * RAO_PER_TAO).await.unwrap();
    assert_eq!(
        error_name(chain.burned_register(&other, netuid2, &hot.ss58()).await),
        "NonAssociatedColdKey"
    );
    assert!(matches!(
        chain.burned_register(&cold, netuid, "").await,
        Err(ChainError::InvalidInput(_))
    ));
    // The burn left the coldkey.
    assert_eq!(chain.balance(&cold.ss58()).await.unwrap(), 9 * RAO_PER_TAO);
}

#[tokio::test]
async fn serving_stake_transfer_and_commitments() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(&dir);
    let owner = key("//Owner");
    let netuid = chain
        .create_subnet(
            &owner.ss58(),
            Hyperparameters {
                serving_rate_limit: 1000,
                ..params()
            },
        )
        .await
        .unwrap();
    let (cold, hot, stranger) = (key("//Cold"), key("//Hot"), key("//Stranger"));
    let axon = AxonServe {
        version: 10_005_000,
        ip: "127.0.0.1".parse().unwrap(),
        port: 8091,
        protocol: 4,
    };
    assert!(matches!(
        chain.serve_axon(&hot, netuid, &axon).await,
        Err(ChainError::NotRegistered { .. })
    ));
    let uid = register(&chain, netuid, &cold, &hot).await;
    // Serve after genesis so the serving rate limit has a block to count from.
    wait_for_block(&chain, 1).await;
    let zero_port = AxonServe {
        port: 0,
        ..axon.clone()
    };
    assert_eq!(
        error_name(chain.serve_axon(&hot, netuid, &zero_port).await),
        "InvalidPort"
    );
    let unspecified = AxonServe {
        ip: "0.0.0.0".parse().unwrap(),
        ..axon.clone()
    };
    assert_eq!(
        error_name(chain.serve_axon(&hot, netuid, &unspecified).await),
        "InvalidIpAddress"
    );
    let r = chain.serve_axon(&hot, netuid, &axon).await.unwrap();
    assert!(matches!(
        chain.serve_axon(&hot, netuid, &axon).await,
        Err(ChainError::RateLimited { .. })
    ));
    let mg = chain.metagraph(netuid).await.unwrap();
    assert_eq!(mg.neurons[uid as usize].axon.as_ref(), Some(&axon));
    assert_eq!(mg.neurons[uid as usize].axon_block, r.block);
    assert_eq!(mg.neurons[uid as usize].coldkey, cold.ss58());

    // Stake: 9 TAO left after the 1 TAO burn.
    assert!(matches!(
        chain
            .add_stake(&cold, &hot.ss58(), netuid, 10 * RAO_PER_TAO)
            .await,
        Err(ChainError::InsufficientFunds { .. })
    ));
    assert!(matches!(
        chain
            .add_stake(&cold, &stranger.ss58(), netuid, RAO_PER_TAO)
            .await,
        Err(ChainError::NotRegistered { .. })
    ));
    assert_eq!(
        error_name(chain.add_stake(&cold, &hot.ss58(), netuid, 0).await),
        "AmountTooLow"
    );
    chain
        .add_stake(&cold, &hot.ss58(), netuid, 4 * RAO_PER_TAO)
        .await
        .unwrap();
    assert!(matches!(
        chain
            .remove_stake(&cold, &hot.ss58(), netuid, 5 * RAO_PER_TAO)
            .await,
        Err(ChainError::InsufficientFunds { .. })
    ));
    chain
        .remove_stake(&cold, &hot.ss58(), netuid, RAO_PER_TAO)
        .await
        .unwrap();
    let mg = chain.metagraph(netuid).await.unwrap();
    assert_eq!(mg.neurons[uid as usize].stake, 3 * RAO_PER_TAO);
    assert_eq!(chain.balance(&cold.ss58()).await.unwrap(), 6 * RAO_PER_TAO);

    // Transfers.
    assert!(matches!(
        chain
            .transfer(&cold, &stranger.ss58(), 7 * RAO_PER_TAO)
            .await,
        Err(ChainError::InsufficientFunds { .. })
    ));
    chain
        .transfer(&cold, &stranger.ss58(), 2 * RAO_PER_TAO)
        .await
        .unwrap();
    assert_eq!(
        chain.balance(&stranger.ss58()).await.unwrap(),
        2 * RAO_PER_TAO
    );

    // Commitments.
    assert!(matches!(
        chain.set_commitment(&hot, netuid, &[b'x'; 129]).await,
        Err(ChainError::InvalidInput(_))
    ));
    assert!(
        chain
            .set_commitment(&stranger, netuid, b"no")
            .await
            .is_err()
    );
    chain
        .set_commitment(&hot, netuid, b"model-a")
        .await
        .unwrap();
    let r = chain
        .set_commitment(&hot, netuid, b"model-b")
        .await
        .unwrap();
    let commitments = chain.commitments(netuid).await.unwrap();
    assert_eq!(commitments.len(), 1);
    assert_eq!(
        (
            commitments[0].uid,
            commitments[0].data.as_slice(),
            commitments[0].block
        ),
        (uid, b"model-b".as_slice(), r.block)
    );

    let status = chain.status().await.unwrap();
    assert_eq!(status.issuance, status.accounted);
}

#[tokio::test]
async fn epochs_run_lazily_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(&dir);
    let owner = key("//Owner");
    let netuid = chain
        .create_subnet(
            &owner.ss58(),
            Hyperparameters {
                tempo: 2,
                ..params()
            },
        )
        .await
        .unwrap();
    let start = chain.epoch_status(netuid).await.unwrap();
    assert_eq!(start.epochs, 0);
    wait_for_block(&chain, start.last_epoch_block + 6 + 1).await;
    let later = chain.epoch_status(netuid).await.unwrap();
    assert!(later.epochs >= 3, "{later:?}");
    assert_eq!(
        later.last_epoch_block,
        start.last_epoch_block + 2 * later.epochs
    );
    assert_eq!(later.next_epoch_block, later.last_epoch_block + 2);
}

#[tokio::test]
async fn bad_files_and_parameters_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sqlite");
    let err = SimChain::open(&missing).err().expect("missing file");
    assert!(err.to_string().contains("neuron chain init"), "{err}");
    let chain = chain(&dir);
    assert!(SimChain::create(chain.path(), SimConfig::default()).is_err());
    let zero = SimConfig {
        block_time: Duration::ZERO,
    };
    assert!(SimChain::create(&dir.path().join("z.sqlite"), zero).is_err());
    for bad in [
        Hyperparameters {
            tempo: 0,
            ..params()
        },
        Hyperparameters {
            max_allowed_uids: 5000,
            ..params()
        },
        Hyperparameters {
            bonds_moving_average: 2_000_000,
            ..params()
        },
    ] {
        assert!(matches!(
            chain.create_subnet("owner", bad).await,
            Err(ChainError::InvalidInput(_))
        ));
    }
    assert!(matches!(
        chain.metagraph(42).await,
        Err(ChainError::SubnetNotFound { .. })
    ));
    // With hour-long blocks the chain stays at block 0: a second epoch in the block the
    // subnet was created (its first epoch boundary) is refused.
    let slow = SimChain::create(
        &dir.path().join("slow.sqlite"),
        SimConfig {
            block_time: Duration::from_secs(3600),
        },
    )
    .unwrap();
    let netuid = slow.create_subnet("owner", params()).await.unwrap();
    let err = slow.run_epoch_now(netuid).await.unwrap_err();
    assert!(err.to_string().contains("wait for the next block"), "{err}");
}
