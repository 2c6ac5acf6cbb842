//! `dendrite` (inside a validator or miner): queries miners with a `PromptingSynapse`,
//! signed with the neuron's hotkey (the key stays in the core).

use std::time::Duration;

use rhai::{Array, Dynamic, EvalAltResult, INT, Map, Module, NativeCallContext};

use super::{fail, neuron_link};
use crate::net::PromptingSynapse;
use crate::script::sandbox;
use crate::script::value::number;

type Res<T> = Result<T, Box<EvalAltResult>>;

fn strings(key: &str, value: &Dynamic) -> Res<Vec<String>> {
    let bad = || {
        fail(format!(
            "dendrite::query: `{key}` must be an array of strings"
        ))
    };
    value
        .read_lock::<Array>()
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.is_string().then(|| v.to_string()).ok_or_else(bad))
        .collect()
}

/// The synapse map as a `PromptingSynapse`: `messages` (required), `roles` (one per
/// message; default `"user"` for each).
fn prompt(synapse: &Map) -> Res<PromptingSynapse> {
    if let Some(key) = synapse
        .keys()
        .find(|k| !matches!(k.as_str(), "messages" | "roles"))
    {
        return Err(fail(format!(
            "dendrite::query: unknown synapse field `{key}` (messages, roles)"
        )));
    }
    let messages = match synapse.get("messages") {
        Some(v) => strings("messages", v)?,
        None => return Err(fail("dendrite::query: the synapse needs `messages`")),
    };
    let roles = match synapse.get("roles") {
        Some(v) => strings("roles", v)?,
        None => vec!["user".to_string(); messages.len()],
    };
    if roles.len() != messages.len() {
        return Err(fail(format!(
            "dendrite::query: {} roles for {} messages",
            roles.len(),
            messages.len()
        )));
    }
    Ok(PromptingSynapse {
        roles,
        messages,
        completion: String::new(),
    })
}

fn uids(list: &Array) -> Res<Vec<u16>> {
    list.iter()
        .map(|v| {
            v.as_int()
                .ok()
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(|| fail(format!("dendrite::query: `{v}` is not a uid")))
        })
        .collect()
}

/// The timeout in seconds, never past the calling hook's wall-time deadline.
fn timeout(value: &Dynamic) -> Res<Duration> {
    let secs = number(value)
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| fail("dendrite::query: timeout must be a positive number of seconds"))?;
    let wanted = Duration::from_secs_f64(secs);
    Ok(sandbox::remaining().map_or(wanted, |left| wanted.min(left)))
}

fn query(c: &NativeCallContext, list: &Array, synapse: &Map, secs: &Dynamic) -> Res<Array> {
    let link = neuron_link(c, "dendrite")?;
    let (uids, prompt, timeout) = (uids(list)?, prompt(synapse)?, timeout(secs)?);
    let answers = link.prompt(&uids, &prompt, timeout).map_err(fail)?;
    Ok(uids
        .iter()
        .zip(answers)
        .map(|(&uid, (response, completion))| {
            let mut m = Map::new();
            m.insert("uid".into(), Dynamic::from_int(INT::from(uid)));
            m.insert("hotkey".into(), response.axon.hotkey.into());
            m.insert("completion".into(), completion.into());
            m.insert(
                "status_code".into(),
                Dynamic::from_int(INT::from(response.status_code)),
            );
            m.insert("status_message".into(), response.status_message.into());
            m.insert(
                "latency".into(),
                Dynamic::from_float(response.latency.as_secs_f64()),
            );
            m.into()
        })
        .collect())
}

pub(super) fn module() -> Module {
    let mut m = Module::new();
    def!(&mut m, "query", |c: NativeCallContext,
                           uids: Array,
                           synapse: Map,
                           timeout: Dynamic|
     -> Res<Array> {
        query(&c, &uids, &synapse, &timeout)
    });
    m
}
