//! `time`: wall-clock reads (seconds since the Unix epoch). Steps that must be
//! reproducible should not branch on these.

use std::time::{SystemTime, UNIX_EPOCH};

use rhai::{INT, Module};

fn since_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(super) fn module() -> Module {
    let mut m = Module::new();
    def!(&mut m, "now", since_epoch);
    def!(&mut m, "unix", || since_epoch() as INT);
    def!(&mut m, "millis", || (since_epoch() * 1000.0) as INT);
    m
}
