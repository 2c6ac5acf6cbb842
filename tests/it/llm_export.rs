//! `neuron models export`: the default GGUF dequantised into a Hugging Face directory,
//! then loaded through the safetensors path (candle-transformers' llama) on real weights.

use neuron::llm::{
    ChatMessage, ExportDType, LlmError, LlmService, SamplingParams, export_safetensors,
};
use neuron::models::Resolver;

use crate::support::llm_options;

#[test]
fn exported_gguf_runs_through_the_safetensors_path() {
    let gguf = Resolver::default()
        .resolve("smollm2-135m-instruct")
        .expect("fetch model");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2-hf");
    export_safetensors(&gguf, &out, ExportDType::Bf16).unwrap();

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["num_hidden_layers"], 30);
    assert_eq!(config["num_key_value_heads"], 3);
    assert_eq!(config["tie_word_embeddings"], true);
    let tokenizer_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tokenizer_config["eos_token"], "<|im_end|>");
    assert!(
        tokenizer_config["chat_template"]
            .as_str()
            .unwrap()
            .contains("im_start")
    );

    let service = LlmService::load(&out, llm_options()).unwrap();
    assert_eq!(service.info().format, "safetensors");
    let messages = vec![
        ChatMessage::new("system", "You are a helpful assistant."),
        ChatMessage::new("user", "What is the capital of France?"),
    ];
    let params = SamplingParams {
        max_tokens: 32,
        ..SamplingParams::default()
    };
    let g = service.chat_blocking(messages, params).unwrap();
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

#[test]
fn exporting_something_that_is_not_a_gguf_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("model.gguf");
    std::fs::write(&bogus, b"not a gguf file at all").unwrap();
    let err = export_safetensors(&bogus, &dir.path().join("out"), ExportDType::F32).unwrap_err();
    assert!(matches!(err, LlmError::BadModel(_)), "{err}");
    assert!(err.to_string().contains("model.gguf"), "{err}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn an_unwritable_destination_is_named_in_the_error() {
    let gguf = Resolver::default()
        .resolve("smollm2-135m-instruct")
        .expect("fetch model");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let out = file.join("smollm2-hf");
    let err = export_safetensors(&gguf, &out, ExportDType::F16).unwrap_err();
    assert!(matches!(err, LlmError::Write { .. }), "{err}");
    assert!(err.to_string().contains("a-file"), "{err}");
}
