//! `rng`: independent seeded streams (`rng::new(seed)`); the step's own stream is
//! `ctx.rng`, and its methods (`int`, `float`, `choice`, …) live on the `Rng` type.

use rhai::{INT, Module};

use crate::script::ctx::Rng;

pub(super) fn module() -> Module {
    let mut m = Module::new();
    def!(&mut m, "new", |seed: INT| Rng::new(seed as u64));
    m
}
