//! Sentence embeddings with BERT-family models (all-MiniLM-L6-v2 by default) on candle.
//!
//! Matches sentence-transformers: truncation at the model's `max_seq_length` (256 for
//! MiniLM), mean pooling over real tokens (or CLS pooling when the pooling config asks
//! for it), then L2 normalisation. Unlike it, sentences are not padded to a common
//! length but packed end to end (see [`bert`]).

mod bert;
mod dense;
mod gelu;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;
use tokenizers::{Tokenizer, TruncationParams};

use bert::{Packed, PackedBert};
pub use dense::{Kernels, KernelsInUse};

/// Tokens embedded per forward pass: bounds the memory of the intermediate activations
/// (about 30 KB per token for MiniLM) whatever the number and length of the texts.
const TOKENS_PER_PASS: usize = 4096;
/// Truncation length when the model directory does not say.
const DEFAULT_MAX_LEN: usize = 256;

/// Errors from loading or running an embedding model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A required file is missing from the model directory.
    #[error("embedding model directory {dir} lacks {file}")]
    MissingFile {
        /// The model directory.
        dir: String,
        /// The missing file name.
        file: &'static str,
    },
    /// A JSON config could not be read or parsed.
    #[error("bad {file}: {reason}")]
    Config {
        /// The file.
        file: String,
        /// The parse or read error.
        reason: String,
    },
    /// The pooling config asks for a mode this crate does not implement.
    #[error("unsupported pooling in {0}: only mean and CLS pooling are implemented")]
    Pooling(String),
    /// Tokenizer failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Tensor/model failure.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
}

/// A loaded sentence-embedding model. `Send + Sync`; share it behind an `Arc`.
pub struct Embedder {
    model: PackedBert,
    tokenizer: Tokenizer,
    pooling: Pooling,
    dim: usize,
    kernels: KernelsInUse,
}

fn read_json(path: &Path) -> Result<serde_json::Value, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|e| EmbedError::Config {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| EmbedError::Config {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Embedder {
    /// Loads a sentence-transformers style directory (`config.json`, `tokenizer.json`,
    /// `model.safetensors`, optional `sentence_bert_config.json` and
    /// `1_Pooling/config.json`) onto `device`, on the fastest kernels there
    /// ([`Kernels::Auto`]).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, EmbedError> {
        Self::load_with(dir, device, Kernels::Auto)
    }

    /// Like [`Embedder::load`], with the linear layers' kernels chosen by `kernels`.
    pub fn load_with(dir: &Path, device: &Device, kernels: Kernels) -> Result<Self, EmbedError> {
        let need = |file: &'static str| {
            let path = dir.join(file);
            if path.is_file() {
                Ok(path)
            } else {
                Err(EmbedError::MissingFile {
                    dir: dir.display().to_string(),
                    file,
                })
            }
        };
        let config_path = need("config.json")?;
        let config: Config =
            serde_json::from_value(read_json(&config_path)?).map_err(|e| EmbedError::Config {
                file: config_path.display().to_string(),
                reason: e.to_string(),
            })?;
        let weights = need("model.safetensors")?;
        let tokenizer_path = need("tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| EmbedError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;

        let st_config = dir.join("sentence_bert_config.json");
        let max_len = if st_config.is_file() {
            read_json(&st_config)?["max_seq_length"]
                .as_u64()
                .map_or(DEFAULT_MAX_LEN, |n| n as usize)
        } else {
            DEFAULT_MAX_LEN
        }
        .min(config.max_position_embeddings);
        // Packed sentences need no padding (tokenizer.json may ask for it).
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;

        let pooling_path = dir.join("1_Pooling").join("config.json");
        let pooling = if pooling_path.is_file() {
            let p = read_json(&pooling_path)?;
            if p["pooling_mode_mean_tokens"].as_bool() == Some(true) {
                Pooling::Mean
            } else if p["pooling_mode_cls_token"].as_bool() == Some(true) {
                Pooling::Cls
            } else {
                return Err(EmbedError::Pooling(pooling_path.display().to_string()));
            }
        } else {
            Pooling::Mean
        };

        // SAFETY: the weights file is memory-mapped read-only; it must not be modified
        // while the model is loaded (it lives in the artifact cache, written once).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device)? };
        let kernels = kernels.resolve(device);
        let model = PackedBert::load(vb, &config, kernels)?;
        Ok(Self {
            model,
            tokenizer,
            pooling,
            dim: config.hidden_size,
            kernels,
        })
    }

    /// The embedding width (384 for MiniLM-L6).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The kernels the linear layers run on.
    pub fn kernels(&self) -> KernelsInUse {
        self.kernels
    }

    /// Embeds `texts`, returning one L2-normalised vector per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let mut out = Vec::with_capacity(texts.len());
        let mut pass = Packed::default();
        for encoding in &encodings {
            let ids = encoding.get_ids();
            if !pass.ids.is_empty() && pass.ids.len() + ids.len() > TOKENS_PER_PASS {
                out.extend(self.embed_packed(&std::mem::take(&mut pass))?);
            }
            pass.push(ids);
        }
        if !pass.ids.is_empty() {
            out.extend(self.embed_packed(&pass)?);
        }
        Ok(out)
    }

    fn embed_packed(&self, packed: &Packed) -> Result<Vec<Vec<f32>>, EmbedError> {
        let hidden = self.model.forward(packed)?;
        Ok(bert::pool(
            &hidden,
            &packed.lengths,
            self.pooling == Pooling::Mean,
        )?)
    }
}

/// Cosine similarity of two vectors (0 when either is all zeros or lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Embedder::load(dir.path(), &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("lacks config.json"), "{err}");
    }
}
