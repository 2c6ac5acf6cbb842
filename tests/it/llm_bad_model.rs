//! Broken or unsupported model files give clear errors, never panics.

use std::io::{Read, Write};

use candle_core::quantized::gguf_file::{self, Value};
use neuron::llm::{LlmError, LlmService, LoadOptions};
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
