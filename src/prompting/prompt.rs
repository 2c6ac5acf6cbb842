//! `neuron prompt` (the SDK's `bt.prompt`): sends one prompt to miners through the
//! dendrite over a transport (`net::Transport`: Synapse, streamed Synapse, or OpenAI
//! chat signed with btauth/1 or Epistula), signed with the caller's hotkey, and collects
//! their answers. The miners asked are uids of a subnet (by default the top ones by
//! incentive) or axons given by address; the best answer is the successful one of the
//! miner with the highest incentive (the network's own judgement of who answers best).

use std::time::Duration;

use crate::chain::{Metagraph, proportion};
use crate::net::{AskOptions, AxonInfo, Dendrite, MinerAnswer, PromptingSynapse};

/// Errors choosing miners.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A requested uid is not in the subnet.
    #[error("uid {uid} is not on netuid {netuid} ({size} uids)")]
    UnknownUid {
        /// The uid asked for.
        uid: u16,
        /// The subnet.
        netuid: u16,
        /// Number of uids in the subnet.
        size: usize,
    },
    /// No neuron other than the caller serves an axon.
    #[error("no miner serves an axon on netuid {0}")]
    NoMiners(u16),
}

/// Which miners to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// These uids, in this order (duplicates dropped).
    Uids(Vec<u16>),
    /// The `k` serving miners with the highest incentive (lowest uid first on ties),
    /// never the caller itself.
    Top(usize),
}

/// A miner to ask.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Its axon.
    pub axon: AxonInfo,
    /// Its uid, when picked from a metagraph.
    pub uid: Option<u16>,
    /// Its incentive (0..1) in that metagraph (0 for an axon given by address).
    pub incentive: f64,
}

impl Target {
    /// An axon given by address.
    pub fn axon(axon: AxonInfo) -> Self {
        Self {
            axon,
            uid: None,
            incentive: 0.0,
        }
    }

    /// Uid `uid` of `metagraph` (which must hold it).
    pub fn uid(metagraph: &Metagraph, uid: u16) -> Self {
        let neuron = &metagraph.neurons[usize::from(uid)];
        Self {
            axon: AxonInfo::of_neuron(neuron),
            uid: Some(uid),
            incentive: proportion(neuron.incentive),
        }
    }
}

impl std::fmt::Display for Target {
    /// `uid N`, or `IP:PORT` for an axon given by address.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.uid {
            Some(uid) => write!(f, "uid {uid}"),
            None => write!(f, "{}:{}", self.axon.ip, self.axon.port),
        }
    }
}

/// One miner's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The miner asked.
    pub target: Target,
    /// Final status code (200 success; 408 timeout; 503 unreachable; ...).
    pub status_code: u16,
    /// Status message.
    pub status_message: String,
    /// Time from sending to the full answer.
    pub latency: Duration,
    /// The completion (empty unless the status is 200).
    pub completion: String,
}

impl Answer {
    /// Whether the miner answered 200 with a non-empty completion.
    pub fn is_success(&self) -> bool {
        self.status_code == 200 && !self.completion.is_empty()
    }
}

/// The uids to ask, from `metagraph`; `caller` (the prompting hotkey) is never picked
/// by [`Targets::Top`].
pub fn select(
    metagraph: &Metagraph,
    targets: &Targets,
    caller: &str,
) -> Result<Vec<u16>, PromptError> {
    match targets {
        Targets::Uids(uids) => {
            let mut out: Vec<u16> = Vec::with_capacity(uids.len());
            for &uid in uids {
                if usize::from(uid) >= metagraph.neurons.len() {
                    return Err(PromptError::UnknownUid {
                        uid,
                        netuid: metagraph.netuid,
                        size: metagraph.neurons.len(),
                    });
                }
                if !out.contains(&uid) {
                    out.push(uid);
                }
            }
            Ok(out)
        }
        Targets::Top(k) => {
            let mut serving: Vec<_> = metagraph
                .neurons
                .iter()
                .filter(|n| n.axon.is_some() && n.hotkey != caller)
                .collect();
            if serving.is_empty() {
                return Err(PromptError::NoMiners(metagraph.netuid));
            }
            serving.sort_by(|a, b| b.incentive.cmp(&a.incentive).then(a.uid.cmp(&b.uid)));
            Ok(serving.iter().take(*k).map(|n| n.uid).collect())
        }
    }
}

/// The question `prompt` as one user message.
fn question(prompt: &str) -> PromptingSynapse {
    PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec![prompt.to_string()],
        completion: String::new(),
    }
}

fn answer(target: Target, reply: MinerAnswer) -> Answer {
    Answer {
        target,
        status_code: reply.status_code,
        status_message: reply.status_message,
        latency: reply.latency,
        completion: reply.completion,
    }
}

/// Sends `prompt` as a user message to `targets` in parallel, as `options` say; one
/// answer per target, in order.
pub async fn ask(
    dendrite: &Dendrite,
    targets: &[Target],
    prompt: &str,
    options: &AskOptions,
) -> Vec<Answer> {
    let axons: Vec<AxonInfo> = targets.iter().map(|t| t.axon.clone()).collect();
    let replies = dendrite.ask(&axons, &question(prompt), options).await;
    targets
        .iter()
        .cloned()
        .zip(replies)
        .map(|(t, r)| answer(t, r))
        .collect()
}

/// Sends `prompt` to one target, passing the answer's text to `on_text` as it arrives
/// (`options.quorum` plays no part).
pub async fn ask_streaming(
    dendrite: &Dendrite,
    target: &Target,
    prompt: &str,
    options: &AskOptions,
    on_text: impl FnMut(&str) + Send,
) -> Answer {
    let reply = dendrite
        .ask_one(
            &target.axon,
            &question(prompt),
            options.transport,
            options.timeout,
            on_text,
        )
        .await;
    answer(target.clone(), reply)
}

/// The best answer: the successful one with the highest incentive (the first asked on
/// ties), or `None` when no miner answered.
pub fn best(answers: &[Answer]) -> Option<&Answer> {
    answers
        .iter()
        .filter(|a| a.is_success())
        .fold(None, |best: Option<&Answer>, a| match best {
            Some(b) if b.target.incentive >= a.target.incentive => Some(b),
            _ => Some(a),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{AxonServe, NeuronInfo};

    fn neuron(uid: u16, incentive: u16, serving: bool) -> NeuronInfo {
        NeuronInfo {
            uid,
            hotkey: format!("hotkey{uid}"),
            coldkey: "cold".into(),
            incentive,
            active: true,
            axon: serving.then(|| AxonServe {
                version: 1,
                ip: "127.0.0.1".parse().unwrap(),
                port: 9000 + uid,
                protocol: 4,
            }),
            ..NeuronInfo::default()
        }
    }

    fn metagraph() -> Metagraph {
        Metagraph {
            netuid: 1,
            block: 10,
            neurons: vec![
                neuron(0, 0, false),
                neuron(1, 100, true),
                neuron(2, 900, true),
                neuron(3, 100, true),
                neuron(4, 65535, false),
            ],
        }
    }

    #[test]
    fn top_k_is_serving_miners_by_incentive_without_the_caller() {
        let mg = metagraph();
        assert_eq!(select(&mg, &Targets::Top(2), "x").unwrap(), vec![2, 1]);
        assert_eq!(
            select(&mg, &Targets::Top(10), "hotkey2").unwrap(),
            vec![1, 3]
        );
        let lonely = Metagraph {
            neurons: vec![neuron(0, 0, true)],
            ..mg
        };
        assert!(matches!(
            select(&lonely, &Targets::Top(3), "hotkey0"),
            Err(PromptError::NoMiners(1))
        ));
    }

    #[test]
    fn explicit_uids_are_checked_and_deduplicated() {
        let mg = metagraph();
        assert_eq!(
            select(&mg, &Targets::Uids(vec![3, 0, 3]), "x").unwrap(),
            vec![3, 0]
        );
        let err = select(&mg, &Targets::Uids(vec![1, 7]), "x").unwrap_err();
        assert_eq!(err.to_string(), "uid 7 is not on netuid 1 (5 uids)");
    }

    #[test]
    fn best_is_the_highest_incentive_success() {
        let answer = |uid, incentive, status_code, completion: &str| Answer {
            target: Target {
                axon: AxonInfo::new("127.0.0.1", 1, ""),
                uid: Some(uid),
                incentive,
            },
            status_code,
            status_message: String::new(),
            latency: Duration::ZERO,
            completion: completion.into(),
        };
        let answers = [
            answer(1, 0.9, 408, ""),
            answer(2, 0.5, 200, "b"),
            answer(3, 0.5, 200, "c"),
            answer(4, 0.7, 200, ""),
        ];
        assert_eq!(best(&answers).unwrap().target.uid, Some(2));
        assert!(best(&answers[..1]).is_none());
    }
}
