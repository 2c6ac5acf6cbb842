//! `corpus`: offline datasets by name (`"wiki"`: the vital-articles summaries).

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, INT, ImmutableString, Map, Module};

use super::fail;
use crate::script::services::Services;
use crate::services::{Article, Corpus, DatedEvent};

type Res<T> = Result<T, Box<EvalAltResult>>;

fn open(services: &Services, name: &str) -> Res<Arc<Corpus>> {
    match name {
        "wiki" => services
            .wiki
            .get()
            .map_err(|e| fail(format!("corpus `wiki`: {e}"))),
        other => Err(fail(format!("unknown corpus `{other}` (known: wiki)"))),
    }
}

fn article(a: &Article) -> Map {
    let mut m = Map::new();
    m.insert("title".into(), a.title.clone().into());
    m.insert("extract".into(), a.extract.clone().into());
    m.insert("description".into(), a.description.clone().into());
    m.insert("topic".into(), a.topic.clone().into());
    m
}

fn event(e: &DatedEvent) -> Map {
    let mut m = Map::new();
    m.insert("title".into(), e.title.clone().into());
    m.insert("sentence".into(), e.sentence.clone().into());
    m.insert("event".into(), e.event.clone().into());
    m.insert("date".into(), e.date.clone().into());
    m
}

fn index(i: INT, len: usize, what: &str) -> Res<usize> {
    usize::try_from(i)
        .ok()
        .filter(|i| *i < len)
        .ok_or_else(|| fail(format!("{what} index {i} out of range 0..{len}")))
}

pub(super) fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    let s = services.clone();
    def!(&mut m, "size", move |name: ImmutableString| -> Res<INT> {
        Ok(open(&s, &name)?.len() as INT)
    });
    let s = services.clone();
    def!(&mut m, "article", move |name: ImmutableString,
                                  i: INT|
          -> Res<Map> {
        let c = open(&s, &name)?;
        Ok(article(
            c.article(index(i, c.len(), "article")?).expect("checked"),
        ))
    });
    let s = services.clone();
    def!(&mut m, "find", move |name: ImmutableString,
                               title: ImmutableString|
          -> Res<Dynamic> {
        Ok(open(&s, &name)?
            .find(&title)
            .map_or(Dynamic::UNIT, |a| article(a).into()))
    });
    let s = services.clone();
    def!(&mut m, "events", move |name: ImmutableString| -> Res<INT> {
        Ok(open(&s, &name)?.events().len() as INT)
    });
    let s = services.clone();
    def!(&mut m, "search", move |name: ImmutableString,
                                 query: ImmutableString,
                                 k: INT|
          -> Res<rhai::Array> {
        let c = open(&s, &name)?;
        let hits = c.search(&query, usize::try_from(k).unwrap_or(0));
        Ok(hits.into_iter().map(|a| article(a).into()).collect())
    });
    let s = services;
    def!(&mut m, "event", move |name: ImmutableString,
                                i: INT|
          -> Res<Map> {
        let c = open(&s, &name)?;
        let events = c.events();
        Ok(event(&events[index(i, events.len(), "event")?]))
    });
    m
}
