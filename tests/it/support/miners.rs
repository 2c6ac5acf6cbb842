//! A strategy script's miner served as //Bob on 127.0.0.1: every auth scheme accepted
//! and unregistered callers allowed, as the protocol tests need.

use std::sync::Arc;

use neuron::config::BlacklistConfig;
use neuron::net::{AuthScheme, Axon, AxonOptions};
use neuron::prompting::miner::MinerHandler;
use neuron::script::ScriptHost;
use neuron::wallet::Keypair;

/// Serves `strategy` (a script of `host`'s `scripts/miners/`) as //Bob's axon.
pub async fn serve_strategy(host: ScriptHost, strategy: &str) -> Axon {
    let handler = MinerHandler::new(
        host,
        strategy,
        BlacklistConfig {
            allow_non_registered: true,
            ..BlacklistConfig::default()
        },
    );
    let options = AxonOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        auth: AuthScheme::ALL.to_vec(),
        ..AxonOptions::default()
    };
    let bob = Keypair::from_uri("//Bob").unwrap();
    Axon::serve(options, bob, Arc::new(handler)).await.unwrap()
}
