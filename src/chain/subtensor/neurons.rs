//! `NeuronInfoRuntimeApi_get_neurons_lite` results: the SCALE layout of
//! `NeuronInfoLite<AccountId32>` and its decoding in both forms the chain has used.
//!
//! Today the runtime API returns `Vec<NeuronInfoLite>` directly; in early 2024 (spec
//! 141) it returned a `Vec<u8>` holding those SCALE bytes (double encoded). The runtime
//! metadata tells which form a node speaks: [`NeuronsLiteForm::from_metadata`].

use parity_scale_codec::{Decode, DecodeAll, Encode};
use scale_info::{PortableRegistry, TypeDef, TypeDefPrimitive};
use subxt::metadata::Metadata;

use crate::chain::ChainError;

/// Runtime API trait holding the metagraph calls.
pub const NEURON_INFO_API: &str = "NeuronInfoRuntimeApi";
/// Its method returning every neuron of a subnet.
pub const GET_NEURONS_LITE: &str = "get_neurons_lite";

/// The fields of `NeuronInfoLite`, in SCALE order.
pub const NEURON_INFO_LITE_FIELDS: [&str; 18] = [
    "hotkey",
    "coldkey",
    "uid",
    "netuid",
    "active",
    "axon_info",
    "prometheus_info",
    "stake",
    "rank",
    "emission",
    "incentive",
    "consensus",
    "trust",
    "validator_trust",
    "dividends",
    "last_update",
    "validator_permit",
    "pruning_score",
];

/// An axon as the chain stores it (`AxonInfo`); `ip == 0` means not serving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct ChainAxonInfo {
    /// Block of the last `serve_axon`.
    pub block: u64,
    /// Software version integer.
    pub version: u32,
    /// IPv4 as its plain integer, or IPv6.
    pub ip: u128,
    /// TCP port.
    pub port: u16,
    /// 4 or 6.
    pub ip_type: u8,
    /// Protocol number.
    pub protocol: u8,
    /// Reserved.
    pub placeholder1: u8,
    /// Reserved.
    pub placeholder2: u8,
}

impl ChainAxonInfo {
    /// The served address, or `None` when the axon is not serving (`ip == 0`) or the
    /// address does not fit its `ip_type`.
    pub fn ip_addr(&self) -> Option<std::net::IpAddr> {
        match (self.ip, self.ip_type) {
            (0, _) => None,
            (ip, 4) => u32::try_from(ip)
                .ok()
                .map(|v| std::net::IpAddr::V4(v.into())),
            (ip, 6) => Some(std::net::IpAddr::V6(ip.into())),
            _ => None,
        }
    }
}

/// A Prometheus endpoint as the chain stores it (`PrometheusInfo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct PrometheusInfo {
    /// Block of the last `serve_prometheus`.
    pub block: u64,
    /// Software version integer.
    pub version: u32,
    /// Address integer.
    pub ip: u128,
    /// TCP port.
    pub port: u16,
    /// 4 or 6.
    pub ip_type: u8,
}

/// One `(coldkey, amount)` stake entry (`(AccountId32, Compact<u64>)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct StakeEntry {
    /// The staking coldkey.
    pub coldkey: [u8; 32],
    /// Amount in rao (alpha on the subnet at HEAD).
    #[codec(compact)]
    pub amount: u64,
}

/// One neuron as `get_neurons_lite` returns it. The u16 scores are fixed point
/// (value / 65535); `emission` is in rao.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct NeuronInfoLite {
    /// Hotkey account.
    pub hotkey: [u8; 32],
    /// Coldkey account.
    pub coldkey: [u8; 32],
    /// Uid in the subnet.
    #[codec(compact)]
    pub uid: u16,
    /// Subnet.
    #[codec(compact)]
    pub netuid: u16,
    /// Active in the last activity window.
    pub active: bool,
    /// Served axon.
    pub axon_info: ChainAxonInfo,
    /// Served Prometheus endpoint.
    pub prometheus_info: PrometheusInfo,
    /// Stake entries (a single `(coldkey, alpha)` entry at HEAD).
    pub stake: Vec<StakeEntry>,
    /// Rank (always 0 at HEAD).
    #[codec(compact)]
    pub rank: u16,
    /// Emission per tempo in rao.
    #[codec(compact)]
    pub emission: u64,
    /// Incentive.
    #[codec(compact)]
    pub incentive: u16,
    /// Consensus.
    #[codec(compact)]
    pub consensus: u16,
    /// Trust (always 0 at HEAD).
    #[codec(compact)]
    pub trust: u16,
    /// Validator trust.
    #[codec(compact)]
    pub validator_trust: u16,
    /// Dividends.
    #[codec(compact)]
    pub dividends: u16,
    /// Block of the last weights set.
    #[codec(compact)]
    pub last_update: u64,
    /// Holds a validator permit.
    pub validator_permit: bool,
    /// Pruning score (u16::MAX at HEAD, no longer computed).
    #[codec(compact)]
    pub pruning_score: u16,
}

impl NeuronInfoLite {
    /// Sum of the stake entries in rao.
    pub fn total_stake(&self) -> u64 {
        self.stake
            .iter()
            .fold(0u64, |acc, s| acc.saturating_add(s.amount))
    }
}

/// Which encoding a runtime uses for the result of `get_neurons_lite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeuronsLiteForm {
    /// `Vec<NeuronInfoLite>` (current runtimes).
    Typed,
    /// `Vec<u8>` wrapping the SCALE bytes of `Vec<NeuronInfoLite>` (early 2024).
    Wrapped,
}

impl NeuronsLiteForm {
    /// Reads the form from the runtime API's declared output type, checking that a typed
    /// result still has the field layout this module decodes.
    pub fn from_metadata(metadata: &Metadata) -> Result<Self, ChainError> {
        let method = metadata
            .runtime_api_trait_by_name(NEURON_INFO_API)
            .and_then(|api| api.method_by_name(GET_NEURONS_LITE))
            .ok_or_else(|| {
                ChainError::Decode(format!(
                    "runtime API {NEURON_INFO_API}_{GET_NEURONS_LITE} is not in the metadata"
                ))
            })?;
        Self::from_output_type(method.output_ty(), metadata.types())
    }

    fn from_output_type(id: u32, types: &PortableRegistry) -> Result<Self, ChainError> {
        let layout_err =
            |reason: String| ChainError::Decode(format!("get_neurons_lite output type: {reason}"));
        let ty = types
            .resolve(id)
            .ok_or_else(|| layout_err(format!("type {id} not in the registry")))?;
        let TypeDef::Sequence(seq) = &ty.type_def else {
            return Err(layout_err("not a sequence".into()));
        };
        let elem = types
            .resolve(seq.type_param.id)
            .ok_or_else(|| layout_err("element type not in the registry".into()))?;
        match &elem.type_def {
            TypeDef::Primitive(TypeDefPrimitive::U8) => Ok(Self::Wrapped),
            TypeDef::Composite(c) => {
                let names: Vec<&str> = c.fields.iter().filter_map(|f| f.name.as_deref()).collect();
                if names == NEURON_INFO_LITE_FIELDS {
                    Ok(Self::Typed)
                } else {
                    Err(layout_err(format!(
                        "NeuronInfoLite fields are {names:?}, expected {NEURON_INFO_LITE_FIELDS:?}"
                    )))
                }
            }
            _ => Err(layout_err("element is neither u8 nor a struct".into())),
        }
    }
}

/// Decodes the raw result bytes of `get_neurons_lite` in the given form. All bytes must
/// be consumed.
pub fn decode_neurons_lite(
    bytes: &[u8],
    form: NeuronsLiteForm,
) -> Result<Vec<NeuronInfoLite>, ChainError> {
    let decode_err =
        |e: parity_scale_codec::Error| ChainError::Decode(format!("get_neurons_lite result: {e}"));
    match form {
        NeuronsLiteForm::Typed => {
            Vec::<NeuronInfoLite>::decode_all(&mut &bytes[..]).map_err(decode_err)
        }
        NeuronsLiteForm::Wrapped => {
            let inner = Vec::<u8>::decode_all(&mut &bytes[..]).map_err(decode_err)?;
            Vec::<NeuronInfoLite>::decode_all(&mut &inner[..]).map_err(decode_err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scale_info::{MetaType, Registry, TypeInfo};

    fn portable<T: TypeInfo + 'static>() -> (u32, PortableRegistry) {
        let mut registry = Registry::new();
        let id = registry.register_type(&MetaType::new::<T>()).id;
        (id, registry.into())
    }

    #[test]
    fn vec_u8_output_is_the_wrapped_2024_form() {
        let (id, types) = portable::<Vec<u8>>();
        assert_eq!(
            NeuronsLiteForm::from_output_type(id, &types).unwrap(),
            NeuronsLiteForm::Wrapped
        );
    }

    #[test]
    fn unknown_layouts_are_clear_errors() {
        #[derive(TypeInfo)]
        #[allow(dead_code)]
        struct Renamed {
            hotkey: [u8; 32],
            stake_weight: u16,
        }
        let (id, types) = portable::<Vec<Renamed>>();
        let err = NeuronsLiteForm::from_output_type(id, &types).unwrap_err();
        assert!(err.to_string().contains("stake_weight"), "{err}");
        let (id, types) = portable::<u32>();
        let err = NeuronsLiteForm::from_output_type(id, &types).unwrap_err();
        assert!(err.to_string().contains("not a sequence"), "{err}");
        let (id, types) = portable::<Vec<u64>>();
        assert!(NeuronsLiteForm::from_output_type(id, &types).is_err());
    }

    #[test]
    fn axon_addresses_follow_ip_type() {
        let mut axon = ChainAxonInfo {
            ip: u128::from(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 1))),
            ip_type: 4,
            ..ChainAxonInfo::default()
        };
        assert_eq!(axon.ip_addr(), Some("10.0.0.1".parse().unwrap()));
        axon.ip_type = 6;
        assert_eq!(axon.ip_addr(), Some("::10.0.0.1".parse().unwrap()));
        axon.ip_type = 5;
        assert_eq!(axon.ip_addr(), None, "unknown ip_type");
        axon.ip = 1 << 40;
        axon.ip_type = 4;
        assert_eq!(axon.ip_addr(), None, "too large for IPv4");
        assert_eq!(
            ChainAxonInfo::default().ip_addr(),
            None,
            "ip 0: not serving"
        );
    }
}
