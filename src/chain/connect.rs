//! Opening the chain a configuration names (`subtensor.network`,
//! `subtensor.chain_endpoint`, `subtensor.db_path`): the one place every command and
//! neuron chooses between the embedded chain file and a subtensor node.

use std::path::PathBuf;
use std::sync::Arc;

use super::sim::SimChain;
use super::subtensor::{SubtensorChain, SubtensorOptions};
use super::{Chain, ChainError, Network};
use crate::config::SubtensorConfig;

/// The network `config` selects, see [`Network::select`].
pub fn network(config: &SubtensorConfig) -> Result<Network, ChainError> {
    Network::select(&config.network, config.chain_endpoint.as_deref())
}

/// The embedded chain's file: `subtensor.db_path`, else [`SimChain::default_path`].
pub fn db_path(config: &SubtensorConfig) -> PathBuf {
    config
        .db_path
        .clone()
        .unwrap_or_else(SimChain::default_path)
}

/// Connects to the subtensor node `name` at `endpoint` (from [`Network::Subtensor`]).
pub async fn subtensor(name: &str, endpoint: &str) -> Result<SubtensorChain, ChainError> {
    SubtensorChain::connect(name, Some(endpoint), SubtensorOptions::default()).await
}

/// Opens the chain `config` names: the embedded chain file ([`db_path`]) for
/// `local-sim`, else a subtensor node (finney, test, local, or a URL; `chain_endpoint`
/// overrides the network's URL).
pub async fn open(config: &SubtensorConfig) -> Result<Arc<dyn Chain>, ChainError> {
    Ok(match network(config)? {
        Network::LocalSim => Arc::new(SimChain::open(&db_path(config))?),
        Network::Subtensor { name, endpoint } => Arc::new(subtensor(&name, &endpoint).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_path_defaults_to_the_home_chain_file() {
        let mut config = SubtensorConfig::default();
        assert_eq!(db_path(&config), SimChain::default_path());
        config.db_path = Some(PathBuf::from("/tmp/x.sqlite"));
        assert_eq!(db_path(&config), PathBuf::from("/tmp/x.sqlite"));
    }

    #[tokio::test]
    async fn a_missing_chain_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = SubtensorConfig {
            db_path: Some(dir.path().join("none.sqlite")),
            ..SubtensorConfig::default()
        };
        let err = open(&config)
            .await
            .err()
            .expect("no chain file")
            .to_string();
        assert!(err.contains("none.sqlite"), "{err}");
        assert!(err.contains("neuron chain init"), "{err}");
    }
}
