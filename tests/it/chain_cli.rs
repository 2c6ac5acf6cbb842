//! The real `neuron chain` and `neuron finetune commit` binaries with bittensor wallets
//! (created by `neuron wallet` in a temp `--wallet.path`), on the embedded local chain and
//! on subtensor, and every failure path of the chain command line.
//!
//! "Subtensor" here is the simulated node of `tests/it/support/subtensor_sim.rs`: a loopback test
//! double of a node serving the finney runtime metadata and recorded responses, which
//! decodes each submitted extrinsic and verifies its signature. It is not a live chain.

use std::path::PathBuf;
use std::process::Output;

use crate::support::bin::{neuron_command, run_async};
use crate::support::subtensor_sim::{ALICE, CHARLIE, SimNode, subnet_item};
use crate::support::{failed as fails, succeeded as ok, wait_for_block};
use neuron::chain::Chain;
use neuron::chain::sim::SimChain;
use neuron::chain::subtensor::{reveal_window, weights_commit_hash};
use neuron::wallet::{Keypair, encode_env_password, password_env_var};
use subxt::dynamic::Value;

const COLDKEY_PASSWORD: &str = "correct horse battery";

/// A temp `$NEURON_HOME` and wallets directory; runs `neuron` with them.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn wallets(&self) -> PathBuf {
        self.dir.path().join("wallets")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `BT_PW_...` for wallet `name`'s coldkey, set to `password`.
    fn password_env(&self, name: &str, password: &str) -> (String, String) {
        let var = password_env_var(&self.wallets().join(name).join("coldkey"));
        let value = encode_env_password(&var, password);
        (var, value)
    }

    async fn run(&self, args: &[&str], env: &[(String, String)]) -> Output {
        let mut cmd = neuron_command(args);
        cmd.env("NEURON_HOME", self.home())
            .envs(env.iter().cloned())
            .stdin(std::process::Stdio::null());
        run_async(cmd).await
    }

    /// `neuron chain --wallet.path WALLETS --wallet.name vali ARGS` on `endpoint` (the
    /// local chain when `None`).
    async fn run_chain(
        &self,
        endpoint: Option<&str>,
        args: &[&str],
        env: &[(String, String)],
    ) -> Output {
        let wallets = self.wallets();
        let mut all = vec!["chain", "--wallet.path", wallets.to_str().unwrap()];
        all.extend(["--wallet.name", "vali"]);
        if let Some(url) = endpoint {
            all.extend(["--subtensor.chain_endpoint", url]);
        }
        all.extend(args);
        self.run(&all, env).await
    }

    /// [`Env::run_chain`] that must succeed; returns stdout.
    async fn chain(
        &self,
        endpoint: Option<&str>,
        args: &[&str],
        env: &[(String, String)],
    ) -> String {
        ok(self.run_chain(endpoint, args, env).await)
    }

    /// [`Env::run_chain`] that must fail; returns stderr.
    async fn chain_fails(
        &self,
        endpoint: Option<&str>,
        args: &[&str],
        env: &[(String, String)],
    ) -> String {
        fails(self.run_chain(endpoint, args, env).await)
    }

    /// `neuron wallet regen-coldkey|regen-hotkey --uri URI` for wallet `vali`, the key
    /// encrypted with [`COLDKEY_PASSWORD`] (given by its `BT_PW_...` variable) when
    /// `encrypted` (slow: the SDK's key derivation takes seconds).
    async fn regen(&self, key: &str, uri: &str, encrypted: bool) {
        let wallets = self.wallets();
        let command = format!("regen-{key}");
        let mut args = vec![
            "wallet",
            "--wallet.path",
            wallets.to_str().unwrap(),
            "--wallet.name",
            "vali",
            &command,
            "--uri",
            uri,
        ];
        // Coldkeys are encrypted unless --no-password, hotkeys only with --use-password.
        match (key, encrypted) {
            ("coldkey", false) => args.push("--no-password"),
            ("hotkey", true) => args.push("--use-password"),
            _ => {}
        }
        let password = self.password_env("vali", COLDKEY_PASSWORD);
        ok(self.run(&args, &[password]).await);
    }

    /// Wallet `vali`: coldkey //Bob, hotkey `default` = //Alice (uid 0 and its coldkey
    /// in the recorded metagraph), both unencrypted.
    async fn create_wallet(&self) {
        self.regen("coldkey", "//Bob", false).await;
        self.regen("hotkey", "//Alice", false).await;
    }
}

fn public(uri: &str) -> [u8; 32] {
    Keypair::from_uri(uri).unwrap().public()
}

/// A loopback port nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("ws://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtensor_reads_and_wallet_signed_writes() {
    let env = Env::new();
    // The coldkey is encrypted: coldkey commands read its BT_PW_ variable.
    env.regen("coldkey", "//Bob", true).await;
    env.regen("hotkey", "//Alice", false).await;
    let node = SimNode::start().await;
    let url = node.url();
    let at = Some(url.as_str());
    let pw = [env.password_env("vali", COLDKEY_PASSWORD)];

    let status = env.chain(at, &["status"], &[]).await;
    assert!(status.contains(&format!("endpoint   {url}")), "{status}");
    assert!(status.contains("block      4200000"), "{status}");
    assert!(status.contains("spec version 365"), "{status}");

    let table = env.chain(at, &["metagraph", "--netuid", "1"], &[]).await;
    assert_eq!(table.matches("203.0.113.9:8091").count(), 2, "{table}");
    assert_eq!(table.matches("none").count(), 1, "{table}");
    assert!(
        table.contains(&ALICE[..10]) && table.contains(&CHARLIE[..10]),
        "{table}"
    );
    let params = env.chain(at, &["hyperparameters"], &[]).await;
    assert!(params.contains("weights_version_key: 2013"), "{params}");
    assert!(
        params.contains("commit_reveal_weights_enabled: false"),
        "{params}"
    );

    // Hotkey-signed writes need no password (the hotkey is unencrypted). The weights
    // pass the SDK's checks: two of them on a subnet that asks for at least two.
    node.set_storage(subnet_item("MinAllowedWeights", 1, Value::u128(2)));
    let weights = env
        .chain(
            at,
            &[
                "weights",
                "--uids",
                "0,2",
                "--weights",
                "1,0.5",
                "--version-key",
                "2013",
            ],
            &[],
        )
        .await;
    assert!(
        weights.contains("weights set at block 4200001"),
        "{weights}"
    );
    env.chain(
        at,
        &["serve", "--ip", "198.51.100.4", "--port", "8091"],
        &[],
    )
    .await;
    env.chain(at, &["commit", "--data", "hf:vali/model"], &[])
        .await;
    // Coldkey-signed writes unlock the encrypted coldkey with its BT_PW_ variable (or use
    // an explicit development key, the same //Bob here).
    let registered = env.chain(at, &["register"], &pw).await;
    assert!(
        registered.contains(&format!("registered {ALICE} on subnet 1 as uid 0")),
        "{registered}"
    );
    let bob = ["--coldkey-uri", "//Bob"];
    env.chain(
        at,
        &[&["stake", "add", "--amount", "2"], &bob[..]].concat(),
        &[],
    )
    .await;
    env.chain(
        at,
        &[
            &["transfer", "--dest", CHARLIE, "--amount", "0.5"],
            &bob[..],
        ]
        .concat(),
        &[],
    )
    .await;

    let received = node.received();
    let summary: Vec<(&str, [u8; 32])> = received
        .iter()
        .map(|r| (r.call.as_str(), r.signer))
        .collect();
    let (hot, cold) = (public("//Alice"), public("//Bob"));
    assert_eq!(
        summary,
        [
            ("set_weights", hot),
            ("serve_axon", hot),
            ("set_commitment", hot),
            ("burned_register", cold),
            ("add_stake", cold),
            ("transfer_keep_alive", cold),
        ]
    );
    assert!(received.iter().all(|r| r.signature_valid));
    assert_eq!(
        received[0].args.to_string(),
        "{ netuid: 1, dests: (0, 2), weights: (65535, 32768), version_key: 2013 }"
    );
    assert!(
        received[4]
            .args
            .to_string()
            .contains("amount_staked: 2000000000"),
        "{}",
        received[4].args
    );

    let listed = env.chain(at, &["commit"], &[]).await;
    assert!(listed.contains("hf:alice/model@1"), "{listed}");
}

/// A simulated subtensor node whose subnet 1 (the one whose neurons it serves) has
/// commit-reveal on and takes at least two weights.
async fn commit_reveal_node() -> SimNode {
    let node = SimNode::start().await;
    node.set_storage(subnet_item(
        "CommitRevealWeightsEnabled",
        1,
        Value::bool(true),
    ));
    node.set_storage(subnet_item("MinAllowedWeights", 1, Value::u128(2)));
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_reveal_subnet_commits_then_reveals_in_the_reveal_epoch() {
    let env = Env::new();
    env.create_wallet().await;
    let node = commit_reveal_node().await;
    let url = node.url();
    let at = Some(url.as_str());
    // A short tempo keeps the reveal epoch near.
    node.set_storage(subnet_item("Tempo", 1, Value::u128(9)));

    let nothing = env.chain_fails(at, &["reveal", "--netuid", "1"], &[]).await;
    assert!(nothing.contains("no pending commits"), "{nothing}");

    let out = env
        .chain(
            at,
            &[
                "weights",
                "--netuid",
                "1",
                "--uids",
                "0,1",
                "--weights",
                "1,0.25",
                "--version-key",
                "2013",
                "--neuron.commit_reveal",
                "v2",
            ],
            &[],
        )
        .await;
    assert!(out.contains("(commit-reveal v2)"), "{out}");
    let commit_block = u64::from(node.head());
    let window = reveal_window(1, 9, 1, commit_block);
    assert!(
        out.contains(&format!(
            "between blocks {} and {}",
            window.start(),
            window.end()
        )),
        "{out}"
    );
    let pending_file = env
        .home()
        .join(format!("chain/reveals/netuid1-{ALICE}.json"));
    let pending: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pending_file).unwrap()).unwrap();
    let salt: Vec<u16> = serde_json::from_value(pending[0]["reveal"]["salt"].clone()).unwrap();
    assert_eq!(salt.len(), 8);
    let committed = &node.received()[0];
    assert_eq!(
        (committed.call.as_str(), committed.signer),
        ("commit_weights", public("//Alice"))
    );
    let hash = weights_commit_hash(public("//Alice"), 1, &[0, 1], &[65535, 16384], &salt, 2013);
    let hash_tuple = hash.map(|b| b.to_string()).join(", ");
    assert!(
        committed.args.to_string().contains(&hash_tuple),
        "{}",
        committed.args
    );

    // Before the reveal epoch: refused locally, nothing submitted.
    let early = env.chain_fails(at, &["reveal", "--netuid", "1"], &[]).await;
    assert!(
        early.contains(&format!("opens at block {}", window.start())),
        "{early}"
    );
    assert_eq!(node.received().len(), 1);

    node.advance(u32::try_from(*window.start() - u64::from(node.head())).unwrap());
    let revealed = env.chain(at, &["reveal", "--netuid", "1"], &[]).await;
    assert!(
        revealed.contains(&format!("committed at block {commit_block}")),
        "{revealed}"
    );
    let reveal = &node.received()[1];
    assert_eq!(
        (reveal.call.as_str(), reveal.signer),
        ("reveal_weights", public("//Alice"))
    );
    let salt_text = salt
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(
        reveal.args.to_string(),
        format!(
            "{{ netuid: 1, uids: (0, 1), values: (65535, 16384), salt: ({salt_text}), version_key: 2013 }}"
        )
    );
    let left: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pending_file).unwrap()).unwrap();
    assert_eq!(
        left,
        serde_json::json!([]),
        "the reveal is no longer pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_chain_signs_with_the_wallet() {
    let env = Env::new();
    env.create_wallet().await;
    env.chain(
        None,
        &[
            "init",
            "--block-time",
            "0.1",
            "--min-allowed-weights",
            "1",
            "--weights-rate-limit",
            "0",
        ],
        &[],
    )
    .await;
    // The faucet credits the wallet's coldkey, read from coldkeypub.txt (no password).
    let funded = env.chain(None, &["faucet", "--amount", "10"], &[]).await;
    let bob = Keypair::from_uri("//Bob").unwrap().ss58();
    assert!(funded.starts_with(&bob), "{funded}");
    env.chain(None, &["register"], &[]).await;
    env.chain(None, &["stake", "add", "--amount", "5"], &[])
        .await;
    env.chain(None, &["weights", "--uids", "0", "--weights", "1"], &[])
        .await;
    let nothing = env.chain_fails(None, &["reveal"], &[]).await;
    assert!(nothing.contains("no pending commits"), "{nothing}");

    let chain = SimChain::open(&env.home().join("chain/local-sim.sqlite")).unwrap();
    let neuron = &chain.metagraph(1).await.unwrap().neurons[0];
    assert_eq!(
        (neuron.hotkey.as_str(), neuron.coldkey.as_str()),
        (ALICE, bob.as_str())
    );
    assert_eq!(neuron.stake, 5_000_000_000);
    // The weights row itself (the metagraph does not carry weights; `last_update` may
    // still be the registration block when both land in the same block).
    let db = rusqlite::Connection::open(env.home().join("chain/local-sim.sqlite")).unwrap();
    let row: Vec<u8> = db
        .query_row(
            "SELECT weights FROM neurons WHERE netuid = 1 AND uid = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!row.is_empty(), "weights set by the wallet's hotkey");
}

/// On subtensor (the simulated node) a commit-reveal subnet gets a timelocked v4 commit
/// by default, as the SDK sends it; `--dry-run` prints its call data and signs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtensor_commit_reveal_defaults_to_a_timelocked_commit() {
    let env = Env::new();
    env.create_wallet().await;
    let node = commit_reveal_node().await;
    let url = node.url();
    let at = Some(url.as_str());
    let args = [
        "weights",
        "--netuid",
        "1",
        "--uids",
        "0,2",
        "--weights",
        "1,0.5",
        "--version-key",
        "2013",
    ];
    let dry = env
        .chain(at, &[&args[..], &["--dry-run"]].concat(), &[])
        .await;
    assert!(dry.contains("mode       v4"), "{dry}");
    assert!(
        dry.contains("SubtensorModule.commit_timelocked_mechanism_weights"),
        "{dry}"
    );
    // Pallet 7 and the call's index lead the call data.
    assert!(dry.contains("call data  0x07"), "{dry}");
    assert!(node.received().is_empty(), "a dry run submits nothing");

    let out = env.chain(at, &args, &[]).await;
    assert!(
        out.contains("commit-reveal v4, timelocked to round"),
        "{out}"
    );
    let received = node.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0].call.as_str(), received[0].signer),
        ("commit_timelocked_mechanism_weights", public("//Alice"))
    );
    let args = received[0].args.to_string();
    assert!(args.contains("commit_reveal_version: 4"), "{args}");
    assert!(args.contains("mecid: 0"), "{args}");
}

/// `chain init --commit-reveal v2|v4` on the local chain, then the validator's steps by
/// hand with development keys: `weights --dry-run` signs nothing, `weights` commits,
/// `metagraph` lists the pending commit until it is revealed (v2 by `reveal`, v4 by the
/// chain's beacon).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_chain_runs_commit_reveal_v2_and_v4() {
    for version in ["v2", "v4"] {
        let env = Env::new();
        let chain_args = |extra: &[&str]| {
            let mut args = vec!["--hotkey-uri", "//Val", "--coldkey-uri", "//Val"];
            args.extend(extra);
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
        };
        let run = |extra: &[&str]| {
            let args = chain_args(extra);
            let env = &env;
            async move {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                env.chain(None, &refs, &[]).await
            }
        };
        run(&[
            "init",
            "--block-time",
            "0.1",
            "--tempo",
            "20",
            "--min-allowed-weights",
            "1",
            "--weights-rate-limit",
            "0",
            "--commit-reveal",
            version,
        ])
        .await;
        let params = run(&["hyperparameters"]).await;
        assert!(
            params.contains("commit_reveal_weights_enabled: true"),
            "{params}"
        );
        run(&["faucet", "--amount", "100"]).await;
        run(&["register"]).await;
        run(&["stake", "add", "--amount", "50"]).await;
        // An epoch on demand runs from the block after the subnet's creation.
        let chain = SimChain::open(&env.home().join("chain/local-sim.sqlite")).unwrap();
        let created = chain.epoch_status(1).await.unwrap().last_epoch_block;
        wait_for_block(&chain, created + 1).await;
        run(&["epoch", "--now"]).await;

        let dry = run(&["weights", "--uids", "0", "--weights", "1", "--dry-run"]).await;
        let call = if version == "v2" {
            "SubtensorModule.commit_weights"
        } else {
            "SubtensorModule.commit_timelocked_mechanism_weights"
        };
        assert!(dry.contains(call), "{dry}");
        assert!(dry.contains("nothing was signed or submitted"), "{dry}");
        assert_eq!(dry.contains("reveal round"), version == "v4", "{dry}");
        let table = run(&["metagraph"]).await;
        assert!(
            !table.contains("pending commits"),
            "the dry run committed: {table}"
        );

        let committed = run(&["weights", "--uids", "0", "--weights", "1"]).await;
        assert!(
            committed.contains(&format!("commit-reveal {version}")),
            "{committed}"
        );
        let table = run(&["metagraph"]).await;
        assert!(
            table.contains(&format!("{version} committed at block")),
            "{table}"
        );

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !chain.pending_commits(1).await.unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{version} never revealed"
            );
            if version == "v2" {
                // Too early is an error; inside the window it reveals.
                let _ = env
                    .run_chain(
                        None,
                        &chain_args(&["reveal"])
                            .iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>(),
                        &[],
                    )
                    .await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let neuron = &chain.metagraph(1).await.unwrap().neurons[0];
        assert!(neuron.last_update > 0);
        let table = run(&["metagraph"]).await;
        assert!(!table.contains("pending commits"), "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finetune_commit_signs_with_the_wallet_hotkey() {
    let env = Env::new();
    env.create_wallet().await;
    let node = SimNode::start().await;
    let model = env.dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("model.gguf"), b"weights").unwrap();
    let wallets = env.wallets();
    let commit = |wallet_name: &'static str| {
        let (url, model, wallets) = (node.url(), model.clone(), wallets.clone());
        let env = &env;
        async move {
            let args = [
                "finetune",
                "commit",
                "--repo",
                "vali/smol",
                "--commit",
                "0123456789abcdef0123456789abcdef01234567",
                "--path",
                model.to_str().unwrap(),
                "--subtensor.chain_endpoint",
                &url,
                "--wallet.path",
                wallets.to_str().unwrap(),
                "--wallet.name",
                wallet_name,
            ];
            env.run(&args, &[]).await
        }
    };
    let out = ok(commit("vali").await);
    assert!(out.starts_with("vali:smol:0123456789abcdef"), "{out}");
    let received = node.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0].call.as_str(), received[0].signer),
        ("set_commitment", public("//Alice"))
    );
    assert!(received[0].signature_valid);

    let missing = fails(commit("nobody").await);
    let hotkey_file = wallets.join("nobody/hotkeys/default");
    assert!(
        missing.contains(&hotkey_file.display().to_string()),
        "{missing}"
    );
    assert!(missing.contains("neuron wallet new-hotkey"), "{missing}");
    assert_eq!(node.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_failures_are_clear() {
    let env = Env::new();
    let node = SimNode::start().await;
    let url = node.url();
    let at = Some(url.as_str());

    // Unknown network name: every accepted value is named.
    let unknown = env
        .chain_fails(None, &["--subtensor.network", "mainnet", "status"], &[])
        .await;
    for word in [
        "unknown network \"mainnet\"",
        "local-sim",
        "finney",
        "test",
        "ws://",
    ] {
        assert!(unknown.contains(word), "{word}: {unknown}");
    }

    // Nothing listening: the endpoint and the flags to check are named.
    let closed = closed_port_url();
    let unreachable = env.chain_fails(Some(&closed), &["metagraph"], &[]).await;
    assert!(
        unreachable.contains(&format!("cannot connect to subtensor at {closed}")),
        "{unreachable}"
    );
    assert!(
        unreachable.contains("--subtensor.chain_endpoint"),
        "{unreachable}"
    );

    // Local-only commands on subtensor are refused before connecting (the endpoint is
    // closed, yet the answer is about the command).
    for args in [&["init"][..], &["faucet", "--amount", "1"], &["epoch"]] {
        let refused = env.chain_fails(Some(&closed), args, &[]).await;
        assert!(
            refused.contains("not available on subtensor network"),
            "{refused}"
        );
        assert!(
            refused.contains("--subtensor.network local-sim"),
            "{refused}"
        );
        assert!(!refused.contains("cannot connect"), "{refused}");
    }
    let finney = env
        .chain_fails(
            None,
            &["--subtensor.network", "finney", "faucet", "--amount", "1"],
            &[],
        )
        .await;
    assert!(finney.contains("network \"finney\""), "{finney}");

    // No wallet: the missing file and how to create one.
    let no_hotkey = env
        .chain_fails(at, &["weights", "--uids", "0", "--weights", "1"], &[])
        .await;
    let hotkey_file = env.wallets().join("vali/hotkeys/default");
    assert!(
        no_hotkey.contains(&hotkey_file.display().to_string()),
        "{no_hotkey}"
    );
    let create = format!(
        "neuron wallet new-hotkey --wallet.name vali --wallet.hotkey default --wallet.path {}",
        env.wallets().display()
    );
    assert!(no_hotkey.contains(&create), "{no_hotkey}");
    assert!(no_hotkey.contains("--hotkey-uri //Alice"), "{no_hotkey}");

    // A hotkey but no coldkey: registration names the coldkey file.
    env.regen("hotkey", "//Alice", false).await;
    let no_coldkey = env.chain_fails(at, &["register"], &[]).await;
    let coldkey_file = env.wallets().join("vali/coldkey");
    assert!(
        no_coldkey.contains(&coldkey_file.display().to_string()),
        "{no_coldkey}"
    );
    assert!(
        no_coldkey.contains("neuron wallet new-coldkey --wallet.name vali"),
        "{no_coldkey}"
    );

    assert!(node.received().is_empty(), "nothing was submitted");

    // A dev key overrides the wallet explicitly.
    env.chain(
        at,
        &[
            "serve",
            "--ip",
            "198.51.100.4",
            "--port",
            "8091",
            "--hotkey-uri",
            "//Eve",
        ],
        &[],
    )
    .await;
    assert_eq!(node.received()[0].signer, public("//Eve"));
}
