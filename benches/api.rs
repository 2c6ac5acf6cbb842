//! The validator API's overhead and its hold on many streaming clients, over a subnet
//! on the embedded chain with one echo miner (the shipped `echo` strategy on a real
//! axon, so every token is ready at once): time to first token through
//! `POST /v1/chat/completions` (streamed, the miner named in `uids`) against asking the
//! same miner directly with the dendrite over the same transport (`btauth-openai`) —
//! the difference is the API's share; then 100 concurrent streaming clients, ten
//! requests each, with the process RSS before and after. Organic scoring is off (it
//! would load the models).
//!
//! Run: `cargo bench --bench api` (`API_BENCH_REQUESTS` changes the sequential count,
//! default 500).

mod common;

use common::{percentile, rss_kib};

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use neuron::api::KeyStore;
use neuron::chain::{Chain, RAO_PER_TAO};
use neuron::config::{BlacklistConfig, Config};
use neuron::net::{AxonInfo, Dendrite, PromptingSynapse, Transport};
use neuron::prompting::local::{LocalSubnet, demo_hyperparameters, validator_stake};
use neuron::prompting::validator::Validator;
use neuron::wallet::Keypair;

/// One streamed API request: time to the first content chunk, and whether it ended
/// with `[DONE]`.
async fn api_stream(client: &reqwest::Client, url: &str, key: &str, uid: u16) -> (Duration, bool) {
    let start = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(key)
        .json(&serde_json::json!({
            "messages": [{"role": "user", "content": "hello"}],
            "stream": true,
            "uids": [uid],
        }))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let (mut seen, mut first) = (Vec::new(), None);
    while let Some(chunk) = body.next().await {
        seen.extend_from_slice(&chunk.unwrap());
        if first.is_none() && String::from_utf8_lossy(&seen).contains("\"content\":\"hello") {
            first = Some(start.elapsed());
        }
    }
    let done = String::from_utf8_lossy(&seen).contains("data: [DONE]");
    (first.unwrap_or(Duration::MAX), done)
}

fn main() {
    let n: usize = std::env::var("API_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let key = |role: &str| Keypair::from_uri(&format!("//api-bench//{role}")).unwrap();
        let mut config = Config::default();
        config.neuron.transport = Transport::BtauthOpenai;
        config.neuron.full_path = Some(dir.path().join("validator"));
        config.api.port = Some(0);
        config.api.keys_db = Some(dir.path().join("keys.sqlite"));
        config.api.organic_scoring = false;
        let scripts = neuron::prompting::script_host(&config).unwrap();
        let mut subnet = LocalSubnet::open(
            &dir.path().join("chain"),
            Duration::from_millis(200),
            key("owner"),
            demo_hyperparameters(),
            1_000_000 * RAO_PER_TAO,
        )
        .await
        .unwrap();
        let hotkey = key("validator");
        subnet.add_validator(&hotkey, validator_stake(0, 1)).await.unwrap();
        let miner = subnet
            .serve_miner(&key("echo"), "echo", &scripts, &BlacklistConfig::default())
            .await
            .unwrap();
        config.netuid = subnet.netuid();
        let chain: Arc<dyn Chain> = Arc::new(subnet.chain().clone());
        let mut validator = Validator::new(config, chain, hotkey.clone(), scripts).unwrap();
        let api = validator.serve_api().await.unwrap().unwrap();
        let secret = KeyStore::open(&dir.path().join("keys.sqlite"))
            .unwrap()
            .add("bench", u32::MAX, u64::MAX / 2)
            .unwrap();
        let url = format!("http://{}/v1/chat/completions", api.local_addr());
        let client = reqwest::Client::new();

        // Direct: the validator's own dendrite asking the miner.
        let axon = AxonInfo::new("127.0.0.1", miner.addr.port(), miner.hotkey.clone());
        let dendrite = Dendrite::new(hotkey).unwrap();
        let question = PromptingSynapse {
            roles: vec!["user".into()],
            messages: vec!["hello".into()],
            completion: String::new(),
        };
        let mut direct = Vec::with_capacity(n);
        let mut through = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            let mut first = None;
            dendrite
                .ask_one(&axon, &question, Transport::BtauthOpenai, Duration::from_secs(10), |_| {
                    first.get_or_insert_with(|| start.elapsed());
                })
                .await;
            direct.push(first.unwrap_or(Duration::MAX));
            through.push(api_stream(&client, &url, &secret, miner.uid).await.0);
        }
        direct.sort();
        through.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "ttft direct   requests={n} p50={:8.3}ms p99={:8.3}ms",
            ms(percentile(&direct, 0.5)),
            ms(percentile(&direct, 0.99))
        );
        println!(
            "ttft via API  requests={n} p50={:8.3}ms p99={:8.3}ms (overhead p50 {:.3} ms)",
            ms(percentile(&through, 0.5)),
            ms(percentile(&through, 0.99)),
            ms(percentile(&through, 0.5)) - ms(percentile(&direct, 0.5))
        );

        // 100 concurrent streaming clients, ten requests each.
        let before = rss_kib();
        let started = Instant::now();
        let clients: Vec<_> = (0..100)
            .map(|_| {
                let (client, url, secret) = (reqwest::Client::new(), url.clone(), secret.clone());
                let uid = miner.uid;
                tokio::spawn(async move {
                    let mut ok = 0;
                    for _ in 0..10 {
                        ok += usize::from(api_stream(&client, &url, &secret, uid).await.1);
                    }
                    ok
                })
            })
            .collect();
        let mut ok = 0;
        for c in clients {
            ok += c.await.unwrap();
        }
        let after = rss_kib();
        println!(
            "100 concurrent streaming clients x 10: ok={ok}/1000 in {:.2}s rss_before={before} KiB rss_after={after} KiB (delta {} KiB, clients, API and miner in one process)",
            started.elapsed().as_secs_f64(),
            after.saturating_sub(before)
        );
        api.shutdown().await;
        subnet.shutdown().await;
    });
}
