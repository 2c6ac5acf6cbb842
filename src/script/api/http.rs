//! `http`: GET to allowlisted hosts (see [`crate::services::HttpClient`]), each request
//! bounded by the time left to the calling hook.

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, ImmutableString, Map, Module};

use super::{fail, to_dynamic};
use crate::script::sandbox::remaining;
use crate::script::services::Services;

fn pairs(params: &Map) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    let s = services.clone();
    def!(&mut m, "get_json", move |url: ImmutableString| -> Result<
        Dynamic,
        Box<EvalAltResult>,
    > {
        to_dynamic(s.http.get_json(&url, &[], remaining()).map_err(fail)?)
    });
    let s = services.clone();
    def!(&mut m, "get_json", move |url: ImmutableString,
                                   params: Map|
          -> Result<
        Dynamic,
        Box<EvalAltResult>,
    > {
        to_dynamic(
            s.http
                .get_json(&url, &pairs(&params), remaining())
                .map_err(fail)?,
        )
    },);
    let s = services.clone();
    def!(&mut m, "get_text", move |url: ImmutableString| -> Result<
        String,
        Box<EvalAltResult>,
    > {
        Ok(s.http
            .get_text(&url, &[], remaining())
            .map_err(fail)?
            .to_string())
    });
    let s = services;
    def!(&mut m, "get_text", move |url: ImmutableString,
                                   params: Map|
          -> Result<
        String,
        Box<EvalAltResult>,
    > {
        Ok(s.http
            .get_text(&url, &pairs(&params), remaining())
            .map_err(fail)?
            .to_string())
    },);
    m
}
