//! Fuzzes the synapse header and body parsers the axon runs on every request
//! (`Synapse::from_headers`, `Synapse::from_json`) and the body hash of what they accept.
//! Input: `name: value` header lines, a blank line, then the body.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use neuron::net::{PromptingSynapse, Synapse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let schema = Arc::new(PromptingSynapse::schema());
    let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    if let Ok(synapse) = Synapse::from_headers(Arc::clone(&schema), pairs) {
        let _ = synapse.body_hash();
        let _ = synapse.to_headers();
    }
    if let Ok(synapse) = Synapse::from_json(schema, body.as_bytes()) {
        let _ = synapse.body_hash();
    }
});
