//! Dequantises a llama-architecture GGUF into a Hugging Face model directory
//! (`config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`), the
//! form [`super::safetensors`] loads: for running a GGUF-only model unquantised on a GPU,
//! and for testing that loader on real weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use super::LlmError;
use super::engine::{md_str, md_u32};
use super::gguf::{md_f32, md_usize};
use super::gguf_header::open_gguf;

/// Element type of the exported weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportDType {
    /// bfloat16 (what GPUs run; half the size of f32).
    Bf16,
    /// float16.
    F16,
    /// float32 (exactly the dequantised values).
    F32,
}

impl From<ExportDType> for DType {
    fn from(d: ExportDType) -> Self {
        match d {
            ExportDType::Bf16 => DType::BF16,
            ExportDType::F16 => DType::F16,
            ExportDType::F32 => DType::F32,
        }
    }
}

/// GGUF tensor names per layer and their Hugging Face llama names.
const LAYER_TENSORS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// llama.cpp stores q/k projections with each head's rows interleaved for its rotary
/// embedding (`convert_hf_to_gguf.py`'s `permute`); Hugging Face keeps the halves apart.
/// This is the inverse permutation.
fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor, LlmError> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, rows / heads / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// Writes the Hugging Face directory for the GGUF at `gguf` into `out` (created).
pub fn export_safetensors(gguf: &Path, out: &Path, dtype: ExportDType) -> Result<(), LlmError> {
    let (mut file, header) = open_gguf(gguf)?;
    let ct = header.content;
    let write_err = |path: &Path, e: std::io::Error| LlmError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let arch = md_str(&ct, "general.architecture").unwrap_or_default();
    if arch != "llama" {
        return Err(LlmError::UnsupportedArchitecture {
            arch,
            supported: "llama".into(),
        });
    }
    let key = |k: &str| format!("llama.{k}");
    let heads = md_usize(&ct, &key("attention.head_count"))?;
    let kv_heads = md_usize(&ct, &key("attention.head_count_kv")).unwrap_or(heads);
    let layers = md_usize(&ct, &key("block_count"))?;

    let cpu = Device::Cpu;
    let mut tensors = HashMap::new();
    let mut put = |gguf_name: &str, hf_name: String, heads: Option<usize>| {
        let t = ct
            .tensor(&mut file, gguf_name, &cpu)
            .map_err(|e| LlmError::BadModel(format!("tensor `{gguf_name}`: {e}")))?
            .dequantize(&cpu)?;
        let t = match heads {
            Some(h) => unpermute(&t, h)?,
            None => t,
        };
        tensors.insert(hf_name, t.to_dtype(dtype.into())?);
        Ok::<_, LlmError>(())
    };
    put(
        "token_embd.weight",
        "model.embed_tokens.weight".into(),
        None,
    )?;
    put("output_norm.weight", "model.norm.weight".into(), None)?;
    let tied = !ct.tensor_infos.contains_key("output.weight");
    if !tied {
        put("output.weight", "lm_head.weight".into(), None)?;
    }
    for i in 0..layers {
        for (gguf_name, hf_name) in LAYER_TENSORS {
            let permuted = match *gguf_name {
                "attn_q" => Some(heads),
                "attn_k" => Some(kv_heads),
                _ => None,
            };
            let hf = format!("model.layers.{i}.{hf_name}.weight");
            put(&format!("blk.{i}.{gguf_name}.weight"), hf, permuted)?;
        }
    }
    let vocab = tensors["model.embed_tokens.weight"].dim(0)?;

    std::fs::create_dir_all(out).map_err(|e| write_err(out, e))?;
    candle_core::safetensors::save(&tensors, out.join("model.safetensors"))?;
    let tokenizer = super::tokenizer::from_gguf(&ct)?;
    tokenizer
        .save(out.join("tokenizer.json"), false)
        .map_err(|e| LlmError::Tokenizer(e.to_string()))?;
    let token = |k: &str| md_u32(&ct, k).and_then(|id| tokenizer.id_to_token(id));
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": md_usize(&ct, &key("embedding_length"))?,
        "intermediate_size": md_usize(&ct, &key("feed_forward_length"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "num_hidden_layers": layers,
        "rms_norm_eps": md_f32(&ct, &key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        "rope_theta": md_f32(&ct, &key("rope.freq_base")).unwrap_or(10_000.0),
        "max_position_embeddings": md_usize(&ct, &key("context_length")).unwrap_or(4096),
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "bos_token_id": md_u32(&ct, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": md_u32(&ct, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": match dtype {
            ExportDType::Bf16 => "bfloat16",
            ExportDType::F16 => "float16",
            ExportDType::F32 => "float32",
        },
    });
    let tokenizer_config = json!({
        "chat_template": md_str(&ct, "tokenizer.chat_template"),
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
    });
    for (name, value) in [
        ("config.json", config),
        ("tokenizer_config.json", tokenizer_config),
    ] {
        let text = serde_json::to_string_pretty(&value).expect("JSON values serialise");
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| write_err(&path, e))?;
    }
    Ok(())
}
