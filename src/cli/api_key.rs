//! `neuron api-key`: the keys of the validator's OpenAI-compatible API (`add`, `list`,
//! `revoke`), in the store `--api.keys_db` names.

use clap::{Args, Subcommand};
use comfy_table::Table;
use neuron::api::KeyStore;
use neuron::api::keys::{DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_TOKENS_PER_MINUTE};

use super::flags::ConfigArgs;

/// Options of `neuron api-key`.
#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    command: ApiKeyCommand,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Make a key; its secret is printed once and only its hash is kept.
    Add {
        /// The key's name.
        name: String,
        /// Requests per minute.
        #[arg(long, default_value_t = DEFAULT_REQUESTS_PER_MINUTE)]
        rpm: u32,
        /// Tokens (prompt and completion, estimated) per minute.
        #[arg(long, default_value_t = DEFAULT_TOKENS_PER_MINUTE)]
        tpm: u64,
    },
    /// List the keys (never their secrets).
    List,
    /// Revoke a key: a running API refuses it from its next request on.
    Revoke {
        /// The key's name.
        name: String,
    },
}

/// Runs `neuron api-key`.
pub fn run(args: &ApiKeyArgs, config_args: &ConfigArgs) -> anyhow::Result<()> {
    let config = config_args.load()?;
    let store = KeyStore::open(&config.api.keys_path())?;
    match &args.command {
        ApiKeyCommand::Add { name, rpm, tpm } => {
            let secret = store.add(name, *rpm, *tpm)?;
            eprintln!(
                "API key `{name}` ({rpm} requests, {tpm} tokens per minute); its secret, shown only now:"
            );
            println!("{secret}");
        }
        ApiKeyCommand::List => {
            let mut table = Table::new();
            table.set_header(["name", "requests/min", "tokens/min", "created", "status"]);
            for key in store.list()? {
                table.add_row([
                    key.name,
                    key.requests_per_minute.to_string(),
                    key.tokens_per_minute.to_string(),
                    key.created.to_string(),
                    if key.revoked { "revoked" } else { "live" }.to_string(),
                ]);
            }
            println!("{table}");
        }
        ApiKeyCommand::Revoke { name } => {
            store.revoke(name)?;
            println!("API key `{name}` revoked");
        }
    }
    Ok(())
}
