//! Finetuning-subnet evaluation end to end on real models and the local chain: models
//! committed by different uids at different blocks, evaluated on the same batches; the
//! better model gets the larger weight, an identical later copy loses on ε, and models
//! that cannot be retrieved or loaded score zero without stopping the round.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use candle_core::quantized::{QTensor, gguf_file};
use neuron::chain::sim::{SimChain, SimConfig};
use neuron::chain::{Chain, Hyperparameters};
use neuron::finetune::{
    Evaluator, FinetuneConfig, FinetuneValidator, ModelId, ModelStore, ScriptPolicy, StoreConfig,
    hash_directory, load_pairs,
};
use neuron::llm::LoadOptions;
use neuron::models::Resolver;
use neuron::wallet::Keypair;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/finetune")
        .join(name)
}

/// Copies `src` to `dst` with every feed-forward down projection negated (re-quantised
/// to the original type): a deliberately worse model, the same on every run. (Random
/// noise of σ 0.05 there, as before, now and then made a batch's loss lower.)
fn write_degraded(src: &Path, dst: &Path) {
    let mut file = std::fs::File::open(src).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    let mut tensors = Vec::new();
    for name in &names {
        let qt = content.tensor(&mut file, name, &Device::Cpu).unwrap();
        let qt = if name.contains("ffn_down") {
            let w = qt.dequantize(&Device::Cpu).unwrap();
            QTensor::quantize(&w.neg().unwrap(), qt.dtype()).unwrap()
        } else {
            qt
        };
        tensors.push((name.clone(), qt));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::fs::File::create(dst).unwrap();
    gguf_file::write(&mut out, &metadata, &tensor_refs).unwrap();
}

fn model_dir(root: &Path, namespace: &str) -> PathBuf {
    let dir = root.join(namespace).join("smol");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn commit(chain: &SimChain, key: &Keypair, netuid: u16, namespace: &str, dir: &Path) {
    let id = ModelId {
        namespace: namespace.into(),
        name: "smol".into(),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        hash: Some(hash_directory(dir).unwrap()),
        competition_id: Some("m1".into()),
    };
    chain
        .set_commitment(key, netuid, id.to_compressed().unwrap().as_bytes())
        .await
        .unwrap();
    // Next commit lands in a later block.
    tokio::time::sleep(chain.block_time() * 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn better_and_earlier_models_win_and_failures_score_zero() {
    let original = Resolver::default()
        .resolve("smollm2-135m-instruct")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");

    // uid 1: the original; uid 2: degraded; uid 3: identical copy, committed later;
    // uid 4: committed but absent; uid 5: present but not a model.
    let orig_dir = model_dir(&models, "orig");
    std::os::unix::fs::symlink(&original, orig_dir.join("model.gguf")).unwrap();
    let bad_dir = model_dir(&models, "noisy");
    write_degraded(&original, &bad_dir.join("model.gguf"));
    let copy_dir = model_dir(&models, "copy");
    std::fs::copy(&original, copy_dir.join("model.gguf")).unwrap();
    let junk_dir = model_dir(&models, "junk");
    std::fs::write(junk_dir.join("model.gguf"), b"GGUF but not really").unwrap();
    let ghost_dir = tmp.path().join("ghost/smol");
    std::fs::create_dir_all(&ghost_dir).unwrap();
    std::fs::write(ghost_dir.join("model.gguf"), b"never published").unwrap();

    let chain = SimChain::create(
        &tmp.path().join("chain.sqlite"),
        SimConfig {
            block_time: Duration::from_millis(100),
        },
    )
    .unwrap();
    let owner = Keypair::from_uri("//Alice").unwrap();
    let params = Hyperparameters {
        weights_rate_limit: 0,
        min_allowed_weights: 1,
        ..Hyperparameters::default()
    };
    let netuid = chain.create_subnet(&owner.ss58(), params).await.unwrap();
    chain
        .faucet(&owner.ss58(), 1_000_000_000_000)
        .await
        .unwrap();
    let validator = Keypair::from_uri("//Alice//validator").unwrap();
    let miners: Vec<Keypair> = (1..=5)
        .map(|i| Keypair::from_uri(&format!("//Alice//miner{i}")).unwrap())
        .collect();
    for key in std::iter::once(&validator).chain(&miners) {
        chain
            .burned_register(&owner, netuid, &key.ss58())
            .await
            .unwrap();
    }
    chain
        .add_stake(&owner, &validator.ss58(), netuid, 100_000_000_000)
        .await
        .unwrap();
    // An epoch (in a later block than genesis) gives the staked validator its permit.
    tokio::time::sleep(chain.block_time() * 2).await;
    chain.run_epoch_now(netuid).await.unwrap();

    commit(&chain, &miners[0], netuid, "orig", &orig_dir).await;
    commit(&chain, &miners[1], netuid, "noisy", &bad_dir).await;
    commit(&chain, &miners[2], netuid, "copy", &copy_dir).await;
    commit(&chain, &miners[3], netuid, "ghost", &ghost_dir).await;
    commit(&chain, &miners[4], netuid, "junk", &junk_dir).await;

    let policy = Arc::new(
        ScriptPolicy::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/finetune/validator.rhai"),
        )
        .unwrap(),
    );
    let mut store_config = StoreConfig::new(tmp.path());
    store_config.models_dir = Some(models.clone());
    store_config.hub = false;
    let state_path = tmp.path().join("state.json");
    let mut v = FinetuneValidator::new(
        Arc::new(chain.clone()),
        Arc::new(validator.clone()),
        policy,
        ModelStore::new(store_config),
        Evaluator::new(LoadOptions::default()),
        FinetuneConfig {
            netuid,
            state_path: state_path.clone(),
            pairs: load_pairs(&fixture("pairs.jsonl")).unwrap(),
            version_key: 0,
        },
    )
    .unwrap();
    let report = v.round().await.unwrap();

    let score = |uid: u16| report.scores.iter().find(|s| s.uid == uid).unwrap();
    let (orig, noisy, copy, ghost, junk) = (score(1), score(2), score(3), score(4), score(5));
    assert!(orig.losses.iter().all(|l| l.is_finite()), "{orig:?}");
    // The degraded model is worse on every batch; the copy's losses equal the original's.
    for (o, n) in orig.losses.iter().zip(&noisy.losses) {
        assert!(o < n, "original {o} vs degraded {n}");
    }
    assert_eq!(orig.losses, copy.losses);
    // ε: the earlier original wins every batch against its identical later copy.
    assert_eq!(orig.win_rate, 1.0);
    assert!(copy.win_rate < orig.win_rate && copy.win_rate > noisy.win_rate);
    for failed in [ghost, junk] {
        assert!(failed.error.is_some(), "{failed:?}");
        assert!(failed.losses.iter().all(|l| l.is_infinite()));
        assert_eq!(failed.weight, 0.0);
    }
    assert!(
        ghost
            .error
            .as_ref()
            .unwrap()
            .contains("hub downloads are off")
    );
    assert!(
        junk.error.as_ref().unwrap().contains("rejected"),
        "{:?}",
        junk.error
    );

    let w = |uid: u16| report.weights.get(&uid).copied().unwrap_or(0.0);
    assert!(w(1) > w(3) && w(3) > w(2), "{:?}", report.weights);
    assert_eq!(w(4), 0.0);
    assert_eq!(w(5), 0.0);
    assert_eq!(report.weights_error, None);
    assert!(report.weights_set_at.is_some());

    // The weights reached the chain: the validator's last update is that block.
    let graph = chain.metagraph(netuid).await.unwrap();
    assert_eq!(Some(graph.neurons[0].last_update), report.weights_set_at);
    assert!(state_path.exists());
    assert_eq!(v.state().step, 1);
}
