//! Tokenizers: `tokenizer.json` next to the model when present, else a byte-level BPE
//! rebuilt from the GGUF `tokenizer.ggml.*` metadata.
//!
//! candle's own `Tokenizer::from_gguf` does not know SmolLM2's `smollm` pre-tokenizer and
//! falls back to GPT-2 behaviour (wrong ids, no exact round-trip). Here the pre-tokenizer
//! follows the model's `tokenizer.ggml.pre` the way llama.cpp does.

use std::path::Path;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::LlmError;

const REGEX_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn tok_err(e: impl std::fmt::Display) -> LlmError {
    LlmError::Tokenizer(e.to_string())
}

/// Loads `tokenizer.json` from `path`.
pub fn from_file(path: &Path) -> Result<Tokenizer, LlmError> {
    Tokenizer::from_file(path).map_err(|e| LlmError::Tokenizer(format!("{}: {e}", path.display())))
}

fn strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>, LlmError> {
    let value = ct
        .metadata
        .get(key)
        .ok_or_else(|| LlmError::Tokenizer(format!("GGUF metadata lacks `{key}`")))?;
    value
        .to_vec()
        .map_err(tok_err)?
        .iter()
        .map(|v| v.to_string().cloned().map_err(tok_err))
        .collect()
}

fn split_regex(regex: &str) -> Result<PreTokenizerWrapper, LlmError> {
    Ok(Split::new(
        SplitPattern::Regex(regex.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(tok_err)?
    .into())
}

/// Builds the tokenizer of a GGUF file whose `tokenizer.ggml.model` is `gpt2`
/// (byte-level BPE: SmolLM, Llama 3, Qwen2, …).
pub fn from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer, LlmError> {
    let model = ct
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if model != "gpt2" {
        return Err(LlmError::Tokenizer(format!(
            "GGUF tokenizer model `{model}` cannot be rebuilt from metadata (only byte-level \
             BPE, `gpt2`, can); put the model's tokenizer.json next to the GGUF file"
        )));
    }
    let tokens = strings(ct, "tokenizer.ggml.tokens")?;
    let merges = strings(ct, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| LlmError::Tokenizer(format!("bad GGUF merge `{m}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(tok_err)?;
    let mut tokenizer = Tokenizer::new(bpe);

    let pre = ct
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map_or("gpt2", |s| s.as_str());
    let byte_level = ByteLevel::new(false, true, true);
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        // SmolLM's tokenizer.json: digits one by one, then GPT-2 byte-level splitting.
        "smollm" | "starcoder" | "refact" => {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        }
        "llama3" | "llama-bpe" | "smaug-bpe" | "falcon3" | "pixtral" => Sequence::new(vec![
            split_regex(REGEX_LLAMA3)?,
            ByteLevel::new(false, true, false).into(),
        ])
        .into(),
        "qwen2" | "deepseek-r1-qwen" => Sequence::new(vec![
            split_regex(REGEX_QWEN2)?,
            ByteLevel::new(false, true, false).into(),
        ])
        .into(),
        _ => byte_level.into(),
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    // Control (3) and user-defined (4) tokens are matched whole in text, like llama.cpp.
    if let Some(types) = ct.metadata.get("tokenizer.ggml.token_type") {
        let specials: Vec<AddedToken> = types
            .to_vec()
            .map_err(tok_err)?
            .iter()
            .zip(&tokens)
            .filter(|(ty, _)| matches!(ty.to_i32(), Ok(3 | 4)))
            .map(|(_, t)| AddedToken::from(t.clone(), true))
            .collect();
        tokenizer.add_special_tokens(specials).map_err(tok_err)?;
    }
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};
    use std::collections::HashMap;

    fn content(model: &str) -> Content {
        let mut metadata = HashMap::new();
        metadata.insert("tokenizer.ggml.model".into(), Value::String(model.into()));
        let tokens = ["a", "b", "ab", "Ġ", "<|end|>", "1", "2"];
        metadata.insert(
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| Value::String((*t).into())).collect()),
        );
        metadata.insert(
            "tokenizer.ggml.merges".into(),
            Value::Array(vec![Value::String("a b".into())]),
        );
        metadata.insert(
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                [1, 1, 1, 1, 3, 1, 1]
                    .iter()
                    .map(|t| Value::I32(*t))
                    .collect(),
            ),
        );
        metadata.insert("tokenizer.ggml.pre".into(), Value::String("smollm".into()));
        Content {
            magic: VersionedMagic::GgufV3,
            metadata,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    #[test]
    fn builds_byte_level_bpe_with_specials_and_digit_split() {
        let tok = from_gguf(&content("gpt2")).unwrap();
        let ids = tok.encode("ab<|end|>12", false).unwrap().get_ids().to_vec();
        assert_eq!(ids, vec![2, 4, 5, 6]);
        assert_eq!(tok.decode(&ids, false).unwrap(), "ab<|end|>12");
    }

    #[test]
    fn sentencepiece_models_need_tokenizer_json() {
        let err = from_gguf(&content("llama")).unwrap_err();
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
    }
}
