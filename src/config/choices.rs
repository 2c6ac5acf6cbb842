//! The closed choices an operator names in configuration and flags (`--axon.auth`,
//! `--neuron.transport`, `--neuron.commit_reveal`): their names, parsing and display.
//! What each choice does lives with its behaviour (`net::auth`, `net::transport`,
//! `chain::weights`), which re-export these types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An authentication scheme of incoming requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// SDK 7.2–10.x Synapse headers (`bt_header_dendrite_*`), signed per synapse.
    Synapse,
    /// bittensor 11 `btauth/1` (`X-Bittensor-*`).
    Btauth,
    /// Epistula v2 (`Epistula-*`), as SN1 v2 signs.
    Epistula,
}

impl AuthScheme {
    /// Every scheme, the default accepted set.
    pub const ALL: [AuthScheme; 3] = [
        AuthScheme::Synapse,
        AuthScheme::Btauth,
        AuthScheme::Epistula,
    ];

    /// The scheme's name in configuration and flags.
    pub fn name(self) -> &'static str {
        match self {
            AuthScheme::Synapse => "synapse",
            AuthScheme::Btauth => "btauth",
            AuthScheme::Epistula => "epistula",
        }
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AuthScheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthScheme::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown auth scheme {s:?}: use synapse, btauth or epistula"))
    }
}

/// How weights go to the chain: `--neuron.commit_reveal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitRevealMode {
    /// Follow the subnet: v4 when it has commit-reveal on (as the SDK does), else plain.
    #[default]
    Auto,
    /// Plain `set_weights` only (fails on a subnet with commit-reveal on).
    Off,
    /// Commit-reveal v2 (hash commit, reveal by this neuron).
    V2,
    /// Commit-reveal v4 (timelocked commit, revealed by the chain).
    V4,
}

impl CommitRevealMode {
    /// Every accepted spelling, for messages.
    pub const NAMES: [&'static str; 4] = ["auto", "off", "v2", "v4"];
}

impl fmt::Display for CommitRevealMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = *self as usize;
        f.write_str(Self::NAMES[i])
    }
}

impl FromStr for CommitRevealMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            "v2" => Ok(Self::V2),
            "v4" => Ok(Self::V4),
            other => Err(format!(
                "unknown commit-reveal mode {other:?}: use {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// The wire a validator asks miners over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// SDK-10 `PromptingSynapse` (one JSON answer).
    #[default]
    Synapse,
    /// SN1 v1 `StreamPromptingSynapse` (raw text chunks).
    SynapseStream,
    /// `POST /v1/chat/completions`, streamed, signed with btauth/1 (whatever the
    /// dendrite's own scheme).
    BtauthOpenai,
    /// `POST /v1/chat/completions`, streamed, signed with Epistula v2.
    EpistulaOpenai,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 4] = [
        Transport::Synapse,
        Transport::SynapseStream,
        Transport::BtauthOpenai,
        Transport::EpistulaOpenai,
    ];

    /// This transport when it is an OpenAI one, else `btauth-openai`: the wire for a
    /// request a synapse cannot carry (a chat request with seed, sampling parameters
    /// and logprobs: SN1 v2's inference task).
    pub fn openai(self) -> Transport {
        match self {
            Transport::Synapse | Transport::SynapseStream => Transport::BtauthOpenai,
            openai => openai,
        }
    }

    /// Whether this transport speaks OpenAI chat completions (rather than a synapse).
    pub fn is_openai(self) -> bool {
        self.openai() == self
    }

    /// Its name in configuration and flags.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Synapse => "synapse",
            Transport::SynapseStream => "synapse-stream",
            Transport::BtauthOpenai => "btauth-openai",
            Transport::EpistulaOpenai => "epistula-openai",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Transport::ALL.iter().map(|t| t.name()).collect();
                format!("unknown transport {s:?}: use {}", names.join(", "))
            })
    }
}
