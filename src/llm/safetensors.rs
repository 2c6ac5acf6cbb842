//! Unquantised Hugging Face checkpoints (llama, mistral, qwen2 in safetensors) through
//! candle-transformers' own model code, for GPU users. A model directory holds
//! `config.json`, `tokenizer.json`, `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`) and usually `tokenizer_config.json` with the template.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, mistral, qwen2};
use serde_json::Value;

use super::LlmError;

/// Architectures loadable from safetensors (`model_type` in config.json).
const SAFETENSORS_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2"];

enum Arch {
    Llama(llama::Llama, llama::Cache),
    Mistral(mistral::Model),
    Qwen2(qwen2::ModelForCausalLM),
}

/// Loaded weights; sessions clone them (cheap: tensors are reference counted) because
/// mistral and qwen2 keep their KV cache inside the model.
pub struct SafeModel {
    arch: Arch,
    device: Device,
}

/// One request's state: its own model handle (and cache) plus the position reached.
pub struct SafeSession {
    arch: Arch,
    pos: usize,
    device: Device,
}

/// What loading found besides the weights.
pub struct LoadedSafe {
    pub model: SafeModel,
    pub arch: String,
    pub context: usize,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub eos_ids: Vec<u32>,
    /// Bytes of key/value cache per position (keys and values of every layer).
    pub kv_bytes_per_position: usize,
}

/// Keys and values of every layer for one position, from `config.json`'s shape.
fn kv_bytes_per_position(config: &Value, dtype: DType) -> usize {
    let get = |key: &str| config[key].as_u64().map(|v| v as usize);
    let heads = get("num_attention_heads").unwrap_or(1).max(1);
    let kv_heads = get("num_key_value_heads").unwrap_or(heads);
    let head_dim = get("head_dim").unwrap_or(get("hidden_size").unwrap_or(0) / heads);
    let layers = get("num_hidden_layers").unwrap_or(0);
    layers * 2 * kv_heads * head_dim * dtype.size_in_bytes()
}

fn read_json(path: &Path) -> Result<Value, LlmError> {
    let text = std::fs::read_to_string(path).map_err(|e| LlmError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| LlmError::BadModel(format!("{}: {e}", path.display())))
}

/// `"<s>"` or `{"content": "<s>", ...}` as tokenizer_config.json writes special tokens.
fn token_string(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_string)
        .or_else(|| v.get("content").and_then(Value::as_str).map(str::to_string))
}

fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LlmError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(LlmError::BadModel(format!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        )));
    }
    let map = read_json(&index)?;
    let mut files: Vec<String> = map["weight_map"]
        .as_object()
        .ok_or_else(|| LlmError::BadModel(format!("{}: no weight_map", index.display())))?
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

impl SafeModel {
    /// Loads the directory onto `device` (bf16 on CUDA, f16 on Metal, f32 on CPU).
    pub fn load(
        dir: &Path,
        device: &Device,
        max_context: Option<usize>,
    ) -> Result<LoadedSafe, LlmError> {
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;
        let model_type = config["model_type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !SAFETENSORS_ARCHITECTURES.contains(&model_type.as_str()) {
            return Err(LlmError::UnsupportedArchitecture {
                arch: model_type,
                supported: SAFETENSORS_ARCHITECTURES.join(", "),
            });
        }
        if !dir.join("tokenizer.json").is_file() {
            return Err(LlmError::BadModel(format!(
                "{} lacks tokenizer.json",
                dir.display()
            )));
        }
        let dtype = if device.is_cuda() {
            DType::BF16
        } else if device.is_metal() {
            DType::F16
        } else {
            DType::F32
        };
        let files = weight_files(dir)?;
        // SAFETY: weights are memory-mapped read-only and must not change while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
        let parse =
            |e: serde_json::Error| LlmError::BadModel(format!("{}: {e}", config_path.display()));
        let trained = config["max_position_embeddings"].as_u64().unwrap_or(4096) as usize;
        let context = max_context.map_or(trained, |m| m.min(trained));
        let arch = match model_type.as_str() {
            "llama" => {
                let cfg: llama::LlamaConfig =
                    serde_json::from_value(config.clone()).map_err(parse)?;
                let cfg = cfg.into_config(false);
                let cache = llama::Cache::new(true, dtype, &cfg, device)?;
                Arch::Llama(llama::Llama::load(vb, &cfg)?, cache)
            }
            "mistral" => {
                let cfg: mistral::Config = serde_json::from_value(config.clone()).map_err(parse)?;
                Arch::Mistral(mistral::Model::new(&cfg, vb)?)
            }
            _ => {
                let cfg: qwen2::Config = serde_json::from_value(config.clone()).map_err(parse)?;
                Arch::Qwen2(qwen2::ModelForCausalLM::new(&cfg, vb)?)
            }
        };
        let tok_config_path = dir.join("tokenizer_config.json");
        let tok_config = if tok_config_path.is_file() {
            read_json(&tok_config_path)?
        } else {
            Value::Null
        };
        let chat_template = match &tok_config["chat_template"] {
            Value::String(s) => Some(s.clone()),
            // A list of named templates: use the default one.
            Value::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            _ => None,
        };
        let eos_ids = match &config["eos_token_id"] {
            Value::Number(n) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_u64().map(|n| n as u32))
                .collect(),
            _ => Vec::new(),
        };
        Ok(LoadedSafe {
            model: SafeModel {
                arch,
                device: device.clone(),
            },
            arch: model_type,
            context,
            chat_template,
            bos_token: token_string(&tok_config["bos_token"]),
            eos_token: token_string(&tok_config["eos_token"]),
            eos_ids,
            kv_bytes_per_position: kv_bytes_per_position(&config, dtype),
        })
    }

    /// A fresh session with an empty KV cache.
    pub fn new_session(&self) -> SafeSession {
        let arch = match &self.arch {
            Arch::Llama(m, cache) => Arch::Llama(m.clone(), cache.clone()),
            Arch::Mistral(m) => {
                let mut m = m.clone();
                m.clear_kv_cache();
                Arch::Mistral(m)
            }
            Arch::Qwen2(m) => {
                let mut m = m.clone();
                m.clear_kv_cache();
                Arch::Qwen2(m)
            }
        };
        SafeSession {
            arch,
            pos: 0,
            device: self.device.clone(),
        }
    }
}

impl SafeSession {
    /// Feeds `tokens` and returns the last position's logits, shape `(vocab,)`.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor, LlmError> {
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = match &mut self.arch {
            Arch::Llama(m, cache) => m.forward(&input, self.pos, cache)?,
            Arch::Mistral(m) => m.forward(&input, self.pos)?,
            Arch::Qwen2(m) => m.forward(&input, self.pos)?,
        };
        self.pos += tokens.len();
        Ok(logits.flatten_all()?.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_architecture_and_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = SafeModel::load(dir.path(), &Device::Cpu, None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("config.json"), "{err}");

        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "gpt_neox"}"#,
        )
        .unwrap();
        let err = SafeModel::load(dir.path(), &Device::Cpu, None)
            .err()
            .unwrap();
        assert!(
            matches!(&err, LlmError::UnsupportedArchitecture { arch, .. } if arch == "gpt_neox"),
            "{err}"
        );

        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
        let err = SafeModel::load(dir.path(), &Device::Cpu, None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("lacks tokenizer.json"), "{err}");

        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let err = SafeModel::load(dir.path(), &Device::Cpu, None)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("neither model.safetensors"),
            "{err}"
        );
    }

    #[test]
    fn special_tokens_in_both_spellings() {
        assert_eq!(
            token_string(&serde_json::json!("<s>")).as_deref(),
            Some("<s>")
        );
        assert_eq!(
            token_string(&serde_json::json!({"content": "</s>", "lstrip": false})).as_deref(),
            Some("</s>")
        );
        assert_eq!(token_string(&Value::Null), None);
    }
}
