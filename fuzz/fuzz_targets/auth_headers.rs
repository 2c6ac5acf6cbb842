//! Fuzzes the request-authentication header parsers the axon runs before any signature
//! work (`AuthScheme::of_request`, btauth/1's and Epistula's `precheck`), then their
//! `verify` on what passes. Input: `name: value` header lines, a blank line, the body.

#![no_main]

use hyper::HeaderMap;
use hyper::header::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use neuron::net::AuthScheme;
use neuron::net::auth::btauth::BtAuthVerifier;
use neuron::net::auth::epistula::EpistulaVerifier;

/// //Bob, the receiving axon.
const RECEIVER: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
/// A fixed clock, so that fuzzed timestamps near it pass the freshness checks.
const NOW_MS: i64 = 1_764_000_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut headers = HeaderMap::new();
    for (name, value) in head.lines().filter_map(|l| l.split_once(':')) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    let _ = AuthScheme::of_request(&headers);
    let btauth = BtAuthVerifier::new(RECEIVER);
    if let Ok(claim) = btauth.precheck(&headers, NOW_MS * 1_000_000) {
        let _ = btauth.verify(&claim, "POST", "/PromptingSynapse", body.as_bytes());
    }
    let epistula = EpistulaVerifier::new(RECEIVER);
    if let Ok(claim) = epistula.precheck(&headers, NOW_MS) {
        let _ = epistula.verify(&claim, body.as_bytes());
    }
});
