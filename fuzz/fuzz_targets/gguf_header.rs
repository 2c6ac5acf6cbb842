//! Fuzzes the GGUF header and tensor-table reader every model load goes through
//! (`neuron::llm::read_gguf_header`): it must return, never panic, and allocate in
//! proportion to its input.

#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

static DEFAULT_PANIC_HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys aborts on every panic, even one the library catches; the reader
    // catches candle's division by a zero `general.alignment` and reports a bad file,
    // so that case runs as in production. A panic that escapes still aborts the run.
    DEFAULT_PANIC_HOOK.call_once(|| drop(std::panic::take_hook()));
    let _ = neuron::llm::read_gguf_header(&mut std::io::Cursor::new(data));
});
