//! `neuron prompt` end to end: the real binary reads the metagraph of an embedded chain,
//! signs `PromptingSynapse` requests with a wallet hotkey and queries real miner axons
//! on 127.0.0.1 (the echo and phrase strategies). The phrase miner holds the higher
//! incentive after a Yuma epoch, so its answer is the best one even though echo
//! answers too. `--axon IP:PORT:HOTKEY` asks the same axons by address, over each
//! `--transport`, and `--stream` prints one answer as it arrives.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::bin::{neuron_command, run_async};
use crate::support::{failed, succeeded, wait_for_block};
use neuron::chain::{Chain, Hyperparameters, RAO_PER_TAO};
use neuron::config::BlacklistConfig;
use neuron::prompting::contract::PromptingContracts;
use neuron::prompting::local::{LocalSubnet, demo_hyperparameters};
use neuron::script::{HostConfig, ScriptHost, Services};
use neuron::wallet::{Keypair, Wallet};

const PROMPT: &str = "Heraclitus was a";
const PHRASE: &str = "Can you please repeat that?";

/// `neuron prompt ARGS` as the caller, on the chain file in `dir`.
async fn neuron(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = neuron_command(["prompt"]);
    cmd.args(args)
        .arg("--subtensor.db_path")
        .arg(dir.join("chain.sqlite"))
        .arg("--wallet.path")
        .arg(dir.join("wallets"))
        .args(["--wallet.name", "caller", "--wallet.hotkey", "default"]);
    run_async(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_asks_miners_and_prints_the_best_answer_by_incentive() {
    let dir = tempfile::tempdir().unwrap();
    let mut subnet = LocalSubnet::open(
        dir.path(),
        Duration::from_millis(100),
        Keypair::from_uri("//PromptOwner").unwrap(),
        Hyperparameters {
            tempo: 60_000,
            weights_rate_limit: 0,
            ..demo_hyperparameters()
        },
        100_000 * RAO_PER_TAO,
    )
    .await
    .unwrap();
    let (chain, netuid) = (subnet.chain().clone(), subnet.netuid());

    // The caller: a wallet hotkey, registered and staked (it sets the weights too).
    let caller = Keypair::from_uri("//PromptCaller").unwrap();
    Wallet::new(dir.path().join("wallets"), "caller", "default")
        .set_hotkey(&caller, None, false)
        .unwrap();
    let caller_uid = subnet
        .add_validator(&caller, 1_000 * RAO_PER_TAO)
        .await
        .unwrap();

    let scripts = ScriptHost::new(
        HostConfig::new(env!("CARGO_MANIFEST_DIR")),
        Services::standard(),
        PromptingContracts,
    )
    .unwrap();
    let mut miners = Vec::new();
    for strategy in ["echo", "phrase"] {
        let hotkey = Keypair::from_uri(&format!("//PromptMiner-{strategy}")).unwrap();
        miners.push(
            subnet
                .serve_miner(&hotkey, strategy, &scripts, &BlacklistConfig::default())
                .await
                .unwrap(),
        );
    }
    let (echo, phrase) = (miners[0].uid, miners[1].uid);

    // A permit for the caller, its weights (phrase above echo), and an epoch.
    wait_for_block(&chain, chain.current_block().await.unwrap() + 1).await;
    chain.run_epoch_now(netuid).await.unwrap();
    chain
        .set_weights(&caller, netuid, &[echo, phrase], &[1, 3], 0)
        .await
        .unwrap();
    wait_for_block(&chain, chain.current_block().await.unwrap() + 1).await;
    chain.run_epoch_now(netuid).await.unwrap();
    let metagraph = chain.metagraph(netuid).await.unwrap();
    let incentive = |uid: u16| metagraph.neurons[usize::from(uid)].incentive;
    assert!(
        incentive(phrase) > incentive(echo) && incentive(echo) > 0,
        "phrase {} echo {}",
        incentive(phrase),
        incentive(echo)
    );

    // Default: the top miners by incentive; the best answer is phrase's.
    let out = neuron(dir.path(), &[PROMPT, "--netuid", "1", "--timeout", "10"]).await;
    assert_eq!(succeeded(out.clone()).trim_end(), PHRASE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("uid {phrase} ")), "{stderr}");

    // --all: every answer with uid, status and latency.
    let all = succeeded(neuron(dir.path(), &[PROMPT, "--all"]).await);
    for (uid, completion) in [(echo, PROMPT), (phrase, PHRASE)] {
        let row = all
            .lines()
            .find(|l| l.starts_with(&format!("| {uid} ")))
            .unwrap_or_else(|| panic!("no row for uid {uid}:\n{all}"));
        assert!(row.contains("| 200 ") && row.contains(completion), "{row}");
    }
    assert!(all.contains("latency (s)"), "{all}");
    assert!(
        !all.contains(&format!("| {caller_uid} ")),
        "never asks itself:\n{all}"
    );

    // --uids picks the miners; --top 1 only the highest incentive.
    let uid = echo.to_string();
    let only_echo = succeeded(neuron(dir.path(), &[PROMPT, "--uids", &uid]).await);
    assert_eq!(only_echo.trim_end(), PROMPT);
    let top = succeeded(neuron(dir.path(), &[PROMPT, "--top", "1", "--all"]).await);
    assert!(
        top.contains(PHRASE) && !top.contains(&format!("| {echo} ")),
        "{top}"
    );

    // --axon asks axons by address (no metagraph read); --stream prints one answer's
    // text as it arrives, over each transport.
    let address = |m: &neuron::prompting::local::LocalMiner| {
        format!("{}:{}:{}", m.addr.ip(), m.addr.port(), m.hotkey)
    };
    let (echo_axon, phrase_axon) = (address(&miners[0]), address(&miners[1]));
    for transport in [
        "synapse",
        "synapse-stream",
        "btauth-openai",
        "epistula-openai",
    ] {
        let args = [
            PROMPT,
            "--axon",
            &echo_axon,
            "--transport",
            transport,
            "--stream",
        ];
        let out = succeeded(neuron(dir.path(), &args).await);
        assert_eq!(out.trim_end(), PROMPT, "{transport}");
    }
    let args = [
        PROMPT,
        "--axon",
        &echo_axon,
        "--axon",
        &phrase_axon,
        "--all",
    ];
    let all = succeeded(neuron(dir.path(), &args).await);
    for (m, completion) in [(&miners[0], PROMPT), (&miners[1], PHRASE)] {
        let row = all
            .lines()
            .find(|l| l.starts_with(&format!("| {} ", m.addr)))
            .unwrap_or_else(|| panic!("no row for {}:\n{all}", m.addr));
        assert!(row.contains("| 200 ") && row.contains(completion), "{row}");
    }
    let args = [
        PROMPT,
        "--axon",
        &echo_axon,
        "--axon",
        &phrase_axon,
        "--stream",
    ];
    let stderr = failed(neuron(dir.path(), &args).await);
    assert!(
        stderr.contains("--stream prints one miner's answer"),
        "{stderr}"
    );

    // Failures: an unknown uid, a uid without an axon, a bad timeout.
    let out = neuron(dir.path(), &[PROMPT, "--uids", "99"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("uid 99 is not on netuid 1"), "{stderr}");
    let caller_arg = caller_uid.to_string();
    let out = neuron(
        dir.path(),
        &[PROMPT, "--uids", &caller_arg, "--timeout", "2"],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no miner answered") && stderr.contains(&format!("uid {caller_uid}: 503")),
        "{stderr}"
    );
    let out = neuron(dir.path(), &[PROMPT, "--timeout", "0"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--timeout must be a positive"), "{stderr}");

    subnet.shutdown().await;
}
