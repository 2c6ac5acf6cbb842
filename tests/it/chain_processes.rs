//! Several real `neuron` processes sharing one local chain file, and crash safety:
//! processes killed with SIGKILL in the middle of transactions leave a consistent file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::bin::neuron_command;
use crate::support::{succeeded as ok, wait_for_block};
use neuron::chain::sim::SimChain;
use neuron::chain::{Chain, Hyperparameters, RAO_PER_TAO};
use neuron::wallet::Keypair;

/// `neuron chain --subtensor.db_path FILE ARGS`.
fn neuron(file: &Path, args: &[&str]) -> Command {
    let mut cmd = neuron_command(["chain", "--subtensor.db_path"]);
    cmd.arg(file).args(args);
    cmd
}

#[tokio::test]
async fn processes_share_one_chain_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chain.sqlite");
    ok(neuron(
        &file,
        &[
            "init",
            "--block-time",
            "0.1",
            "--tempo",
            "10000",
            "--min-allowed-weights",
            "1",
        ],
    )
    .output()
    .unwrap());

    // Four processes fund and register four hotkeys at the same time.
    let children: Vec<_> = (0..4)
        .map(|i| {
            let (cold, hot) = (format!("//Cold{i}"), format!("//Hot{i}"));
            let funded = neuron(&file, &["faucet", "--amount", "5", "--coldkey-uri", &cold])
                .output()
                .unwrap();
            ok(funded);
            neuron(
                &file,
                &["register", "--coldkey-uri", &cold, "--hotkey-uri", &hot],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in children {
        ok(child.wait_with_output().unwrap());
    }

    // This process sees what the others wrote, with distinct uids 0..4.
    let chain = SimChain::open(&file).unwrap();
    let mg = chain.metagraph(1).await.unwrap();
    let mut uids: Vec<u16> = (0..4)
        .map(|i| {
            let hot = Keypair::from_uri(&format!("//Hot{i}")).unwrap().ss58();
            mg.uid_of(&hot).expect("registered by another process")
        })
        .collect();
    uids.sort();
    assert_eq!(uids, vec![0, 1, 2, 3]);

    // A write from this process is visible to another.
    let hot0 = Keypair::from_uri("//Hot0").unwrap();
    chain.set_commitment(&hot0, 1, b"shared").await.unwrap();
    let listed = ok(neuron(&file, &["commit"]).output().unwrap());
    assert!(listed.contains("shared"), "{listed}");
    let table = ok(neuron(&file, &["metagraph"]).output().unwrap());
    assert_eq!(
        table.matches("none").count(),
        4,
        "four rows, no axons:\n{table}"
    );
    let status = chain.status().await.unwrap();
    assert_eq!(status.issuance, status.accounted);
    assert_eq!(status.issuance, 4 * 4 * RAO_PER_TAO, "20 TAO in, 4 burned");
}

/// Kills `neuron chain epoch --now` processes (one large transaction each: 1024 uids,
/// 64 validators) at moments from 40 ms to 5 s, then checks that the bookkeeping and
/// SQLite's integrity hold.
#[tokio::test]
async fn killed_processes_leave_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chain.sqlite");
    ok(neuron(
        &file,
        &[
            "init",
            "--block-time",
            "0.01",
            "--tempo",
            "60000",
            "--max-uids",
            "1024",
        ],
    )
    .output()
    .unwrap());
    let chain = SimChain::open(&file).unwrap();
    chain
        .set_hyperparameters(
            1,
            Hyperparameters {
                tempo: 60_000,
                max_allowed_uids: 1024,
                min_allowed_weights: 1,
                weights_rate_limit: 0,
                ..Hyperparameters::default()
            },
        )
        .await
        .unwrap();
    let cold = Keypair::from_uri("//Cold").unwrap();
    chain
        .faucet(&cold.ss58(), 2000 * RAO_PER_TAO)
        .await
        .unwrap();
    let hotkeys: Vec<Keypair> = (0..1024)
        .map(|i| Keypair::from_uri(&format!("//Hot{i}")).unwrap())
        .collect();
    for hot in &hotkeys {
        chain.burned_register(&cold, 1, &hot.ss58()).await.unwrap();
    }
    for hot in &hotkeys[..64] {
        chain
            .add_stake(&cold, &hot.ss58(), 1, RAO_PER_TAO)
            .await
            .unwrap();
    }
    let created = chain.epoch_status(1).await.unwrap().last_epoch_block;
    wait_for_block(&chain, created + 1).await;
    chain.run_epoch_now(1).await.unwrap(); // validator permits
    let miners: Vec<u16> = (64..1024).collect();
    let weights: Vec<u16> = (0..960).map(|i| (i % 1000 + 1) as u16).collect();
    for hot in &hotkeys[..64] {
        chain
            .set_weights(hot, 1, &miners, &weights, 0)
            .await
            .unwrap();
    }
    let before = chain.epoch_status(1).await.unwrap().epochs;
    drop(chain);

    // The first is killed as soon as it is spawned, so at least one dies before its
    // commit however fast the machine (an epoch here can take under 40 ms); the others
    // from 40 ms to 2.56 s.
    for round in 0..8u64 {
        let mut child = neuron(&file, &["epoch", "--now"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if round > 0 {
            std::thread::sleep(Duration::from_millis(40 << (round - 1)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // A last one that completes.
    ok(neuron(&file, &["epoch", "--now"]).output().unwrap());

    let chain = SimChain::open(&file).unwrap();
    let status = chain.status().await.unwrap();
    assert_eq!(
        status.issuance, status.accounted,
        "no value created or lost"
    );
    let after = chain.epoch_status(1).await.unwrap().epochs;
    // Kill times from 0 to 2.56 s bracket the commit: the first processes die before it
    // (mid-transaction or earlier), the last ones after; plus the final completed run.
    assert!(
        after >= before + 2 && after <= before + 8,
        "{before} → {after}"
    );
    let mg = chain.metagraph(1).await.unwrap();
    assert_eq!(mg.neurons.len(), 1024);
    assert!(mg.neurons[64..].iter().any(|n| n.incentive > 0));
    let integrity: String = rusqlite::Connection::open(&file)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}
