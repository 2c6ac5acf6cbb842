//! The inference device a model runs on: [`DeviceSpec`], parsed from `cpu`, `cuda:N` or
//! `metal[:N]` (the `--neuron.device` value and `--device` of the model tools), checked
//! against the GPU features this binary was built with, and opened as a candle device.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::LlmError;

/// Where models run. Parsing fails for a GPU kind this binary was built without, so a
/// configuration naming a GPU never silently runs on the CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    #[default]
    Cpu,
    /// CUDA GPU number N (`cuda` feature).
    Cuda(usize),
    /// Metal GPU number N (`metal` feature).
    Metal(usize),
}

impl DeviceSpec {
    /// Opens the device (for a GPU: fails when no such GPU is present).
    pub fn open(&self) -> Result<candle_core::Device, LlmError> {
        let err = |e: candle_core::Error| LlmError::Device {
            spec: self.to_string(),
            reason: e.to_string(),
        };
        match *self {
            Self::Cpu => Ok(candle_core::Device::Cpu),
            Self::Cuda(index) => candle_core::Device::new_cuda(index).map_err(err),
            Self::Metal(index) => candle_core::Device::new_metal(index).map_err(err),
        }
    }
}

/// Why a GPU kind cannot be used by this binary: the missing feature and how to build
/// with it.
fn missing_feature(feature: &str) -> String {
    format!(
        "this binary was built without the `{feature}` feature; build with `cargo build \
         --release --features {feature}` to run on this device"
    )
}

impl FromStr for DeviceSpec {
    type Err = LlmError;

    fn from_str(spec: &str) -> Result<Self, LlmError> {
        let err = |reason: String| LlmError::Device {
            spec: spec.into(),
            reason,
        };
        let (kind, index) = match spec.split_once(':') {
            Some((k, i)) => (
                k,
                i.parse::<usize>()
                    .map_err(|_| err(format!("`{i}` is not a device index")))?,
            ),
            None => (spec, 0),
        };
        match kind {
            "cpu" if index == 0 => Ok(Self::Cpu),
            "cpu" => Err(err("the CPU has no index; use `cpu`".into())),
            "cuda" if cfg!(feature = "cuda") => Ok(Self::Cuda(index)),
            "cuda" => Err(err(missing_feature("cuda"))),
            "metal" if cfg!(feature = "metal") => Ok(Self::Metal(index)),
            "metal" => Err(err(missing_feature("metal"))),
            other => Err(err(format!(
                "unknown device kind `{other}`; use cpu, cuda:N or metal"
            ))),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
            Self::Metal(index) => write!(f, "metal:{index}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_and_opens() {
        let cpu: DeviceSpec = "cpu".parse().unwrap();
        assert_eq!(cpu, DeviceSpec::Cpu);
        assert!(cpu.open().unwrap().is_cpu());
        assert_eq!(cpu.to_string(), "cpu");
    }

    #[test]
    fn gpu_kinds_need_their_feature() {
        for (spec, feature, enabled) in [
            ("cuda:0", "cuda", cfg!(feature = "cuda")),
            ("cuda", "cuda", cfg!(feature = "cuda")),
            ("metal", "metal", cfg!(feature = "metal")),
        ] {
            match spec.parse::<DeviceSpec>() {
                Ok(parsed) => assert!(enabled, "{spec} parsed as {parsed} without {feature}"),
                Err(e) => {
                    assert!(!enabled, "{spec}: {e}");
                    let text = e.to_string();
                    assert!(text.contains(&format!("`{feature}` feature")), "{text}");
                    assert!(
                        text.contains(&format!("cargo build --release --features {feature}")),
                        "{text}"
                    );
                }
            }
        }
        if cfg!(feature = "cuda") {
            assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
            assert_eq!("cuda".parse::<DeviceSpec>().unwrap().to_string(), "cuda:0");
        }
    }

    #[test]
    fn garbage_is_refused() {
        for spec in ["tpu", "cuda:x", "cpu:1", "", "gpu:0", "cuda:-1"] {
            assert!(
                matches!(spec.parse::<DeviceSpec>(), Err(LlmError::Device { .. })),
                "{spec}"
            );
        }
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let yaml = serde_yaml::to_string(&DeviceSpec::Cpu).unwrap();
        assert_eq!(yaml.trim(), "cpu");
        let back: DeviceSpec = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, DeviceSpec::Cpu);
        assert!(serde_yaml::from_str::<DeviceSpec>("tpu").is_err());
    }
}
