//! `SubtensorChain` against a **simulated** subtensor node (`tests/it/support/subtensor_sim.rs`): a
//! WebSocket JSON-RPC server on loopback serving the finney runtime metadata from the
//! fixture, a recorded `get_neurons_lite` response and storage values encoded against
//! that metadata.
//!
//! This is not a live-chain test (no node is reachable here). It checks our side of the
//! protocol: connect and metadata fetch, metagraph, hyperparameter and commitment reads,
//! submission of extrinsics that decode against the metadata and carry a valid sr25519
//! signature by the right key over the payload a node verifies, typed dispatch errors,
//! commit-reveal detection, timeouts, reconnection after the node restarts or drops the
//! socket in the middle of a call. What a
//! real runtime would decide (fees, rate limits, state transitions) is scripted.

use std::time::Duration;

use crate::support::subtensor_sim::{
    ALICE, BOB, CHARLIE, Outcome, START_BLOCK, SimNode, dev, storage_item,
};
use neuron::chain::subtensor::{
    SubtensorChain, SubtensorOptions, WaitFor, WeightsReveal, weights_commit_hash,
};
use neuron::chain::{AxonServe, Chain, ChainError, Signer};
use subxt::dynamic::Value;

fn options() -> SubtensorOptions {
    SubtensorOptions {
        wait_for: WaitFor::Finalization,
        tx_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
    }
}

async fn connect(node: &SimNode) -> SubtensorChain {
    SubtensorChain::connect("sim", Some(&node.url()), options())
        .await
        .expect("connect to the simulated node")
}

#[tokio::test]
async fn connect_and_read_metagraph_hyperparameters_commitments() {
    let node = SimNode::start().await;
    let chain = connect(&node).await;
    assert_eq!(chain.network(), "sim");
    assert_eq!(chain.spec_version().await.unwrap(), 365);
    assert_eq!(chain.current_block().await.unwrap(), u64::from(START_BLOCK));

    let mg = chain.metagraph(1).await.unwrap();
    assert_eq!(mg.block, u64::from(START_BLOCK));
    assert_eq!(mg.neurons.len(), 3);
    let hotkeys: Vec<&str> = mg.neurons.iter().map(|n| n.hotkey.as_str()).collect();
    assert_eq!(hotkeys, [ALICE, BOB, CHARLIE]);
    let alice = &mg.neurons[0];
    assert_eq!((alice.uid, alice.coldkey.as_str()), (0, BOB));
    assert_eq!(alice.stake, 1_234_567_890_123);
    assert!(alice.validator_permit && alice.active);
    assert_eq!(alice.validator_trust, 65535);
    assert_eq!(alice.block_at_registration, 3_900_000);
    assert_eq!(
        alice.axon,
        Some(AxonServe {
            version: 10_005_000,
            ip: "203.0.113.9".parse().unwrap(),
            port: 8091,
            protocol: 4
        })
    );
    assert_eq!(alice.axon_block, 4_000_123);
    assert_eq!(mg.neurons[1].axon, None, "ip 0 means not serving");
    assert_eq!(mg.neurons[2].block_at_registration, 4_000_000);
    assert_eq!(mg.uid_of(CHARLIE), Some(2));

    let hp = chain.hyperparameters(1).await.unwrap();
    assert_eq!(hp.tempo, 99);
    assert_eq!(hp.min_allowed_weights, 8);
    assert_eq!(hp.weights_rate_limit, 100);
    assert_eq!(hp.bonds_moving_average, 975_000);
    assert_eq!(hp.weights_version_key, 2013);
    assert_eq!(hp.burn, 1_000_000_000);
    assert_eq!(hp.serving_rate_limit, 50);
    assert!(!hp.commit_reveal_weights_enabled);
    assert!(chain.commit_reveal_enabled(2).await.unwrap());

    let commits = chain.commitments(1).await.unwrap();
    let got: Vec<(u16, &str, &[u8], u64)> = commits
        .iter()
        .map(|c| (c.uid, c.hotkey.as_str(), c.data.as_slice(), c.block))
        .collect();
    assert_eq!(
        got,
        [
            (0, ALICE, &b"hf:alice/model@1"[..], 4_100_000),
            (2, CHARLIE, &b"x"[..], 4_100_007)
        ]
    );

    for result in [
        chain.metagraph(9).await.map(|_| ()),
        chain.hyperparameters(9).await.map(|_| ()),
        chain.commitments(9).await.map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(ChainError::SubnetNotFound { .. })),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn extrinsics_are_signed_by_the_right_key() {
    let node = SimNode::start().await;
    let chain = connect(&node).await;
    let (hotkey, coldkey) = (dev("Alice"), dev("Bob"));

    let receipt = chain
        .set_weights(&hotkey, 1, &[0, 2], &[65535, 100], 2013)
        .await
        .unwrap();
    assert_eq!(receipt.block, u64::from(START_BLOCK) + 1);
    assert!(receipt.hash.as_deref().is_some_and(|h| h.len() == 66));

    let axon = AxonServe {
        version: 1,
        ip: "198.51.100.4".parse().unwrap(),
        port: 8091,
        protocol: 4,
    };
    chain.serve_axon(&hotkey, 1, &axon).await.unwrap();
    chain
        .set_commitment(&hotkey, 1, b"hf:org/model")
        .await
        .unwrap();

    let new_hotkey = dev("Dave");
    let (k, v) = storage_item(
        "SubtensorModule",
        "Uids",
        vec![Value::u128(1), Value::from_bytes(new_hotkey.public())],
        Value::u128(3),
    );
    node.push_outcome(Outcome::Success { then: vec![(k, v)] });
    let uid = chain
        .burned_register(&coldkey, 1, &new_hotkey.ss58())
        .await
        .unwrap();
    assert_eq!(uid, 3);
    chain
        .add_stake(&coldkey, &hotkey.ss58(), 1, 5_000_000_000)
        .await
        .unwrap();
    chain
        .remove_stake(&coldkey, &hotkey.ss58(), 1, 1_000)
        .await
        .unwrap();
    chain.transfer(&coldkey, CHARLIE, 42).await.unwrap();

    let received = node.received();
    let summary: Vec<(&str, &str, [u8; 32])> = received
        .iter()
        .map(|r| (r.pallet.as_str(), r.call.as_str(), r.signer))
        .collect();
    let (hk, ck) = (hotkey.public(), coldkey.public());
    assert_eq!(
        summary,
        [
            ("SubtensorModule", "set_weights", hk),
            ("SubtensorModule", "serve_axon", hk),
            ("Commitments", "set_commitment", hk),
            ("SubtensorModule", "burned_register", ck),
            ("SubtensorModule", "add_stake", ck),
            ("SubtensorModule", "remove_stake", ck),
            ("Balances", "transfer_keep_alive", ck),
        ]
    );
    assert!(
        received.iter().all(|r| r.signature_valid),
        "every signature verifies"
    );
    assert_eq!(
        received[0].args.to_string(),
        "{ netuid: 1, dests: (0, 2), weights: (65535, 100), version_key: 2013 }"
    );
    assert_eq!(node.head(), START_BLOCK + 7);
    // Nonces advanced per account, so consecutive transactions were distinct.
    let nonces = node.state.lock().unwrap().nonces.clone();
    assert_eq!((nonces[&hk], nonces[&ck]), (3, 4));

    // Bad input never reaches the node.
    let too_long = chain.set_commitment(&hotkey, 1, &[b'a'; 129]).await;
    assert!(
        matches!(too_long, Err(ChainError::InvalidInput(_))),
        "{too_long:?}"
    );
    let bad_dest = chain.transfer(&coldkey, "nope", 1).await;
    assert!(
        matches!(bad_dest, Err(ChainError::InvalidInput(_))),
        "{bad_dest:?}"
    );
    let lengths = chain.set_weights(&hotkey, 1, &[0, 1], &[1], 0).await;
    assert!(
        matches!(lengths, Err(ChainError::InvalidInput(_))),
        "{lengths:?}"
    );
    assert_eq!(node.received().len(), 7);
}

#[tokio::test]
async fn dispatch_errors_come_back_typed() {
    let node = SimNode::start().await;
    let chain = connect(&node).await;
    let hotkey = dev("Alice");
    type IsExpected = fn(&ChainError) -> bool;
    let cases: [(&str, IsExpected); 4] = [
        ("SettingWeightsTooFast", |e| {
            matches!(e, ChainError::RateLimited { .. })
        }),
        ("IncorrectWeightVersionKey", |e| {
            matches!(e, ChainError::BadVersionKey { .. })
        }),
        ("NeuronNoValidatorPermit", |e| {
            matches!(e, ChainError::NoValidatorPermit { .. })
        }),
        ("HotKeyNotRegisteredInSubNet", |e| {
            matches!(e, ChainError::NotRegistered { .. })
        }),
    ];
    for (name, is_expected) in cases {
        node.push_outcome(Outcome::Fail(name));
        let err = chain
            .set_weights(&hotkey, 1, &[0], &[65535], 1)
            .await
            .unwrap_err();
        assert!(is_expected(&err), "{name} gave {err:?}");
        assert_eq!(err.chain_error(), Some(name));
        assert!(
            err.to_string().contains("SubtensorModule."),
            "reason names the pallet: {err}"
        );
    }

    node.push_outcome(Outcome::Refuse("Invalid Transaction: Custom error: 6"));
    let err = chain
        .set_weights(&hotkey, 1, &[0], &[65535], 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("Custom error: 6"), "{err}");
}

#[tokio::test]
async fn commit_reveal_is_detected_and_v2_commits_hash_the_payload() {
    let node = SimNode::start().await;
    let chain = connect(&node).await;
    let hotkey = dev("Alice");

    let err = chain
        .set_weights(&hotkey, 2, &[0], &[65535], 0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::CommitRevealEnabled { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("commit"), "{err}");
    assert!(node.received().is_empty(), "nothing submitted");

    let reveal = WeightsReveal {
        netuid: 2,
        mechid: 0,
        uids: vec![0, 1],
        values: vec![65535, 3],
        salt: vec![9, 8, 7, 6, 5, 4, 3, 2],
        version_key: 0,
    };
    let hash = reveal.commit_hash(hotkey.public());
    chain.commit_weights(&hotkey, 2, 0, hash).await.unwrap();
    chain.reveal_weights(&hotkey, &reveal).await.unwrap();
    let received = node.received();
    assert_eq!(received[0].call, "commit_weights");
    let expected = weights_commit_hash(hotkey.public(), 2, &[0, 1], &[65535, 3], &reveal.salt, 0);
    let hash_hex = received[0].args.to_string();
    let expected_tuple = expected
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        hash_hex.contains(&expected_tuple),
        "{hash_hex} lacks the commit hash"
    );
    assert_eq!(received[1].call, "reveal_weights");
    assert!(
        received
            .iter()
            .all(|r| r.signature_valid && r.signer == hotkey.public())
    );
}

#[tokio::test]
async fn waits_time_out_and_inclusion_mode_returns_at_best_block() {
    let node = SimNode::start().await;
    let chain = SubtensorChain::connect(
        "sim",
        Some(&node.url()),
        SubtensorOptions {
            tx_timeout: Duration::from_secs(3),
            wait_for: WaitFor::Inclusion,
            ..options()
        },
    )
    .await
    .unwrap();
    let hotkey = dev("Alice");
    node.push_outcome(Outcome::Stall);
    let err = chain
        .set_weights(&hotkey, 1, &[0], &[1], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("included"), "{err}");
    let receipt = chain.set_weights(&hotkey, 1, &[0], &[1], 0).await.unwrap();
    assert_eq!(receipt.block, u64::from(START_BLOCK) + 1);
}

#[tokio::test]
async fn reconnects_with_backoff_after_the_node_restarts() {
    let mut node = SimNode::start().await;
    let backoff = Duration::from_millis(800);
    let chain = SubtensorChain::connect(
        "sim",
        Some(&node.url()),
        SubtensorOptions {
            backoff_initial: backoff,
            backoff_max: backoff,
            ..options()
        },
    )
    .await
    .unwrap();
    assert_eq!(chain.metagraph(1).await.unwrap().neurons.len(), 3);

    // Node restarts between two calls: the read notices the closed socket, reconnects
    // and succeeds.
    node.stop().await;
    node.restart().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(chain.current_block().await.unwrap(), u64::from(START_BLOCK));

    // Node down: calls fail fast with a connection error and back off.
    node.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = chain.current_block().await.unwrap_err();
    assert!(matches!(first, ChainError::Connection(_)), "{first:?}");
    let during_backoff = chain.current_block().await.unwrap_err();
    assert!(
        during_backoff.to_string().contains("next attempt in"),
        "second call waits for the backoff: {during_backoff}"
    );
    let write = chain
        .set_weights(&dev("Alice"), 1, &[0], &[1], 0)
        .await
        .unwrap_err();
    assert!(matches!(write, ChainError::Connection(_)), "{write:?}");

    // Node back: once the backoff has passed, reads and writes work again.
    node.restart().await;
    tokio::time::sleep(backoff + Duration::from_millis(100)).await;
    assert_eq!(chain.metagraph(1).await.unwrap().neurons.len(), 3);
    chain
        .set_weights(&dev("Alice"), 1, &[0], &[1], 0)
        .await
        .unwrap();
    assert_eq!(node.received().len(), 1);
}

#[tokio::test]
async fn a_socket_dropped_in_the_middle_of_a_call_reconnects() {
    let node = SimNode::start().await;
    let chain = connect(&node).await;
    assert_eq!(node.connections(), 1);

    // A read: the node closes the socket instead of answering get_neurons_lite; the
    // read reconnects and retries once (reads are idempotent), so the caller sees data.
    node.drop_connection_on("NeuronInfoRuntimeApi_get_neurons_lite");
    assert_eq!(chain.metagraph(1).await.unwrap().neurons.len(), 3);
    assert_eq!(node.connections(), 2, "one reconnection");
    assert!(
        node.state.lock().unwrap().drop_on.is_none(),
        "the drop happened"
    );

    // A write: the node closes the socket on submission. Not retried (the transaction
    // may already be in a pool): a connection error, and the next call reconnects.
    node.drop_connection_on("author_submitAndWatchExtrinsic");
    let alice = dev("Alice");
    let err = chain
        .set_weights(&alice, 1, &[0], &[65535], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::Connection(_)), "{err:?}");
    assert!(err.to_string().contains("set_weights"), "{err}");
    assert!(node.received().is_empty());
    let receipt = chain
        .set_weights(&alice, 1, &[0], &[65535], 0)
        .await
        .unwrap();
    assert_eq!(receipt.block, u64::from(START_BLOCK) + 1);
    assert_eq!(node.connections(), 3);
    assert_eq!(node.received().len(), 1);
}

#[tokio::test]
async fn unreachable_or_unknown_endpoints_fail_clearly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = SubtensorChain::connect("local", Some(&format!("ws://127.0.0.1:{port}")), options())
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::Connection(_)), "{err:?}");
    let err = SubtensorChain::connect("mainnet", None, options())
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::InvalidInput(_)), "{err:?}");
}
