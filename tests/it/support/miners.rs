//! A strategy script's miner served on 127.0.0.1: every auth scheme accepted and
//! unregistered callers allowed, as the protocol tests need.

use std::sync::Arc;

use neuron::config::BlacklistConfig;
use neuron::net::{AuthScheme, Axon, AxonOptions};
use neuron::prompting::miner::MinerHandler;
use neuron::script::ScriptHost;
use neuron::wallet::Keypair;

/// A handler running `strategy` (a script of `host`'s `scripts/miners/`) that lets
/// unregistered callers in.
pub fn strategy_handler(host: ScriptHost, strategy: &str) -> MinerHandler {
    MinerHandler::new(
        host,
        strategy,
        BlacklistConfig {
            allow_non_registered: true,
            ..BlacklistConfig::default()
        },
    )
}

/// Serves `handler` as the axon of the key at `uri` (e.g. `//Bob`).
pub async fn serve_handler(handler: MinerHandler, uri: &str) -> Axon {
    let options = AxonOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        auth: AuthScheme::ALL.to_vec(),
        ..AxonOptions::default()
    };
    let key = Keypair::from_uri(uri).unwrap();
    Axon::serve(options, key, Arc::new(handler)).await.unwrap()
}

/// Serves `strategy` of `host` as //Bob's axon.
pub async fn serve_strategy(host: ScriptHost, strategy: &str) -> Axon {
    serve_handler(strategy_handler(host, strategy), "//Bob").await
}
