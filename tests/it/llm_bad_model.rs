//! Broken or unsupported model files give clear errors, never panics.

use std::io::{Read, Write};

use candle_core::quantized::gguf_file::{self, Value};
use neuron::llm::{LlmError, LlmService, LoadOptions, MAX_CONTEXT};
use neuron::models::Resolver;

fn load(path: &std::path::Path) -> LlmError {
    LlmService::load(path, LoadOptions::default()).expect_err("loading should fail")
}

#[test]
fn missing_file() {
    let err = load(std::path::Path::new("/nonexistent/model.gguf"));
    assert!(matches!(err, LlmError::Open { .. }), "{err}");
}

#[test]
fn not_a_gguf_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b"this is not a model").unwrap();
    let err = load(&path);
    assert!(
        err.to_string().contains("not a readable GGUF file"),
        "{err}"
    );
}

#[test]
fn truncated_gguf() {
    let real = Resolver::default()
        .resolve("smollm2-135m-instruct")
        .unwrap();
    let len = std::fs::metadata(&real).unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    // Cut inside the tensor data (header intact) and inside the header.
    for (name, keep) in [("tail.gguf", len - 4096), ("head.gguf", 64 * 1024)] {
        let path = dir.path().join(name);
        let mut src = std::fs::File::open(&real).unwrap().take(keep);
        let mut dst = std::fs::File::create(&path).unwrap();
        std::io::copy(&mut src, &mut dst).unwrap();
        dst.flush().unwrap();
        let err = load(&path);
        assert!(matches!(err, LlmError::BadModel(_)), "{name}: {err}");
        if name == "tail.gguf" {
            assert!(err.to_string().contains("truncated GGUF"), "{err}");
        }
    }
}

#[test]
fn unknown_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    let arch = Value::String("mamba".into());
    let mut file = std::fs::File::create(&path).unwrap();
    gguf_file::write(&mut file, &[("general.architecture", &arch)], &[]).unwrap();
    drop(file);
    let err = load(&path);
    assert!(
        matches!(&err, LlmError::UnsupportedArchitecture { arch, .. } if arch == "mamba"),
        "{err}"
    );
    assert!(err.to_string().contains("llama"), "{err}");
}

#[test]
fn safetensors_directory_without_weights() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "qwen2"}"#).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let err = load(dir.path());
    assert!(
        err.to_string().contains("neither model.safetensors"),
        "{err}"
    );
}

/// A copy of the default model in `dir` with the `u32` metadata value `key` set to
/// `value` (the key is found by its length-prefixed name in the header).
fn with_u32(dir: &std::path::Path, key: &str, value: u32) -> std::path::PathBuf {
    let real = Resolver::default()
        .resolve("smollm2-135m-instruct")
        .unwrap();
    let mut bytes = std::fs::read(real).unwrap();
    let mut entry = (key.len() as u64).to_le_bytes().to_vec();
    entry.extend_from_slice(key.as_bytes());
    let at = bytes
        .windows(entry.len())
        .position(|w| w == entry.as_slice())
        .unwrap_or_else(|| panic!("{key} in the header"))
        + entry.len();
    assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes(), "{key} is a u32");
    bytes[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
    let path = dir.join(format!("{key}-{value}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn hostile_hyper_parameters_are_errors_not_panics_or_huge_allocations() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value, reason) in [
        // The width was divided by it.
        ("llama.attention.head_count", 0, "attention heads"),
        ("llama.attention.head_count", 15, "not split"),
        // A vector of that many layers was reserved before any tensor was read.
        ("llama.block_count", u32::MAX, "layers for"),
        ("llama.context_length", 0, "context length 0"),
    ] {
        let err = load(&with_u32(dir.path(), key, value));
        assert!(matches!(err, LlmError::BadModel(_)), "{key}={value}: {err}");
        assert!(err.to_string().contains(reason), "{key}={value}: {err}");
    }
    // Rotary tables were allocated for the whole claimed window (2^32 positions).
    let path = with_u32(dir.path(), "llama.context_length", u32::MAX);
    let service = LlmService::load(&path, LoadOptions::default()).unwrap();
    assert_eq!(service.info().context, MAX_CONTEXT);
}
