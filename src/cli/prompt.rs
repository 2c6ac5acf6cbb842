//! `neuron prompt` (the SDK's `bt.prompt`): ask the miners of a subnet, or any axons by
//! address, one question over a transport and print the best answer, every answer, or
//! one answer's tokens as they arrive.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::Table;
use neuron::chain::subtensor::SignerRole;
use neuron::net::{AskOptions, AxonInfo, Dendrite, DendriteOptions, Transport};
use neuron::prompting::prompt::{self, Answer, Target, Targets};

use super::flags::{self, ConfigArgs, open_chain};

/// Options of `neuron prompt`.
#[derive(Debug, Args)]
pub struct PromptArgs {
    /// The prompt, sent as one user message.
    prompt: String,
    /// Ask these uids (comma-separated) instead of the top miners.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["top", "axon"])]
    uids: Vec<u16>,
    /// Ask the K serving miners with the highest incentive.
    #[arg(long, value_name = "K", default_value_t = 5, conflicts_with = "axon")]
    top: usize,
    /// Ask this axon directly, without reading a metagraph (repeatable).
    #[arg(long, value_name = "IP:PORT:HOTKEY", value_parser = parse_axon)]
    axon: Vec<AxonInfo>,
    /// The wire: synapse, synapse-stream, btauth-openai or epistula-openai (default:
    /// `--neuron.transport`).
    #[arg(long)]
    transport: Option<Transport>,
    /// Print the answer's text as it arrives (one miner: one --axon, or one uid).
    #[arg(long, conflicts_with = "all")]
    stream: bool,
    /// Print every answer with its uid, status and latency, not just the best.
    #[arg(long)]
    all: bool,
    /// Seconds each miner has to answer, in all (default: `--neuron.timeout`).
    #[arg(long, value_name = "S")]
    timeout: Option<f64>,
}

/// Reads `IP:PORT:HOTKEY`.
fn parse_axon(text: &str) -> Result<AxonInfo, String> {
    let mut parts = text.rsplitn(3, ':');
    let (Some(hotkey), Some(port), Some(ip)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{text:?} is not IP:PORT:HOTKEY"));
    };
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port"))?;
    if hotkey.is_empty() {
        return Err(format!("{text:?} names no hotkey"));
    }
    Ok(AxonInfo::new(ip.to_string(), port, hotkey))
}

/// Runs `neuron prompt`.
pub fn run(args: &PromptArgs, config_args: &ConfigArgs) -> anyhow::Result<()> {
    let config = config_args.load()?;
    let timeout = args.timeout.unwrap_or(config.neuron.timeout);
    if !(timeout.is_finite() && timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds, got {timeout}");
    }
    let options = AskOptions {
        transport: args.transport.unwrap_or(config.neuron.transport),
        timeout: Duration::from_secs_f64(timeout),
        quorum: 0,
    };
    let keypair = flags::signer(&config.wallet, SignerRole::Hotkey, None)?;
    let caller = keypair.ss58();
    let runtime = tokio::runtime::Runtime::new()?;
    let targets: Vec<Target> = if args.axon.is_empty() {
        let chosen = if args.uids.is_empty() {
            Targets::Top(args.top)
        } else {
            Targets::Uids(args.uids.clone())
        };
        runtime.block_on(async {
            let chain = open_chain(&config).await?;
            let metagraph = chain
                .metagraph(config.netuid)
                .await
                .with_context(|| format!("reading the metagraph of netuid {}", config.netuid))?;
            let uids = prompt::select(&metagraph, &chosen, &caller)?;
            anyhow::Ok(uids.iter().map(|&u| Target::uid(&metagraph, u)).collect())
        })?
    } else {
        args.axon.iter().cloned().map(Target::axon).collect()
    };
    let dendrite = Dendrite::new(keypair)
        .context("dendrite")?
        .with_options(DendriteOptions::from(&config.dendrite));
    if args.stream {
        let [target] = targets.as_slice() else {
            bail!(
                "--stream prints one miner's answer: name one --axon or one uid ({} asked)",
                targets.len()
            );
        };
        let mut stdout = std::io::stdout();
        let answer = runtime.block_on(prompt::ask_streaming(
            &dendrite,
            target,
            &args.prompt,
            &options,
            |text| {
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            },
        ));
        if answer.status_code != 200 {
            bail!("{target}: {} {}", answer.status_code, answer.status_message);
        }
        println!();
        eprintln!("{target} answered in {:.3} s", answer.latency.as_secs_f64());
        return Ok(());
    }
    let answers = runtime.block_on(prompt::ask(&dendrite, &targets, &args.prompt, &options));
    if args.all {
        println!("{}", table(&answers));
    }
    match prompt::best(&answers) {
        Some(best) if !args.all => {
            let incentive = match best.target.uid {
                Some(_) => format!(" (incentive {:.4})", best.target.incentive),
                None => String::new(),
            };
            eprintln!(
                "{}{incentive} answered in {:.3} s",
                best.target,
                best.latency.as_secs_f64()
            );
            println!("{}", best.completion);
            Ok(())
        }
        Some(_) => Ok(()),
        None => {
            let failures: Vec<String> = answers
                .iter()
                .map(|a| format!("{}: {} {}", a.target, a.status_code, a.status_message))
                .collect();
            bail!("no miner answered:\n  {}", failures.join("\n  "))
        }
    }
}

fn table(answers: &[Answer]) -> Table {
    let mut table = Table::new();
    table.set_header(["uid", "incentive", "status", "latency (s)", "completion"]);
    for a in answers {
        let status = if a.status_code == 200 {
            "200".to_string()
        } else {
            format!("{} {}", a.status_code, a.status_message)
        };
        let miner = match a.target.uid {
            Some(uid) => uid.to_string(),
            None => format!("{}:{}", a.target.axon.ip, a.target.axon.port),
        };
        table.add_row([
            miner,
            format!("{:.4}", a.target.incentive),
            status,
            format!("{:.3}", a.latency.as_secs_f64()),
            a.completion.clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axons_are_ip_port_hotkey() {
        let a = parse_axon("127.0.0.1:8091:5Hotkey").unwrap();
        assert_eq!(
            (a.ip.as_str(), a.port, a.hotkey.as_str()),
            ("127.0.0.1", 8091, "5Hotkey")
        );
        assert!(parse_axon("127.0.0.1:8091").is_err());
        assert!(
            parse_axon("localhost:8091:5H")
                .unwrap_err()
                .contains("IP address")
        );
        assert!(
            parse_axon("127.0.0.1:99999:5H")
                .unwrap_err()
                .contains("port")
        );
    }
}
