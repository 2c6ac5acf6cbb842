//! `source`: read-only source files under the configured roots (see
//! [`crate::services::SourceTree`]).

use std::path::Path;
use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, Module};

use super::fail;
use crate::script::services::Services;
use crate::services::language;

pub(super) fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    let s = services.clone();
    def!(&mut m, "files", move || -> Array {
        s.source.files().into_iter().map(Dynamic::from).collect()
    });
    let s = services;
    def!(&mut m, "read", move |name: ImmutableString| -> Result<
        String,
        Box<EvalAltResult>,
    > { s.source.read(&name).map_err(fail) });
    def!(&mut m, "language", |name: ImmutableString| -> String {
        language(Path::new(name.as_str())).unwrap_or("").to_string()
    });
    m
}
